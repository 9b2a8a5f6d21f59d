"""The parts of :mod:`bench.ingest`: publishers, the raw floor, the controller phase, scrapes, table."""
