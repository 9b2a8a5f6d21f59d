"""Benchmarks for agent-mesh: each script prints a table and writes JSON to ``bench/results/``.

Run one with ``python -m bench.<name> --help``, or all of them with ``python -m bench.run``; the
subpackages are parts, not scripts (``support``: what they share; ``kill``, ``ingestion``,
``frameworks``: the pieces of ``kill_latency``, ``ingest`` and ``integrations``).
Every figure is also reported as a ratio to the matching floor (raw nats-py on the same server,
same run), because absolute numbers on a shared 2-core machine are noisy. Nothing here asserts a
timing, and nothing sends traffic anywhere but loopback.
"""
