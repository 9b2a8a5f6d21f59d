"""The parts of :mod:`bench.kill_latency`: fleet start-up, the observer, the cycles, summary and table."""
