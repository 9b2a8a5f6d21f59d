"""Turning exceptions into one-line messages and exit codes (1 error, 2 usage); --debug keeps tracebacks."""

from __future__ import annotations

import sys

import typer

EXIT_ERROR = 1
EXIT_USAGE = 2


def _mesh_error_code(exc: BaseException) -> int | None:
    """The exit code for one of our errors, or None; imports ``mesh`` only once something failed."""
    from mesh.errors import ConfigError, InvalidTarget, MeshError

    if isinstance(exc, InvalidTarget | ConfigError):
        return EXIT_USAGE
    if isinstance(exc, MeshError):
        return EXIT_ERROR
    return None


def run_app(app: typer.Typer, *, debug: bool) -> int:
    while "--debug" in sys.argv:
        sys.argv.remove("--debug")
    try:
        rv = app(standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        print("mesh: aborted", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mesh: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # our errors, click's usage errors, and anything unforeseen
        # typer may vendor its own click: recognise its exceptions by shape, not by class.
        exit_code = getattr(exc, "exit_code", None)
        if isinstance(exit_code, int) and type(exc).__module__.split(".")[0] in ("click", "typer"):
            show = getattr(exc, "show", None)
            if callable(show):
                show()
            return exit_code
        if debug:
            raise
        code = _mesh_error_code(exc)
        if code is not None:
            print(f"mesh: error: {exc}", file=sys.stderr)
            return code
        print(
            f"mesh: unexpected error: {type(exc).__name__}: {exc} (run with --debug for a traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return rv if isinstance(rv, int) else 0
