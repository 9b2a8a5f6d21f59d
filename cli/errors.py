"""Turning exceptions into one-line messages and exit codes (1 error, 2 usage); --debug keeps tracebacks."""

from __future__ import annotations

import sys

import typer

EXIT_ERROR = 1
EXIT_USAGE = 2


def run_app(app: typer.Typer, *, debug: bool) -> int:
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    from mesh.errors import ConfigError, InvalidTarget, MeshError

    try:
        rv = app(standalone_mode=False)
    except (InvalidTarget, ConfigError) as exc:
        if debug:
            raise
        print(f"mesh: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MeshError as exc:
        if debug:
            raise
        print(f"mesh: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        print("mesh: aborted", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mesh: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # click's usage errors and anything unforeseen
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if debug:
            raise
        print(
            f"mesh: unexpected error: {type(exc).__name__}: {exc} (run with --debug for a traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return rv if isinstance(rv, int) else 0
