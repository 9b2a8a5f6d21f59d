"""The parts of :mod:`bench.integrations`: the timing, and one module per framework measured."""
