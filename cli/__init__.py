"""The ``mesh`` command line: a thin terminal layer over the ``mesh`` operator API."""
