"""The ``ttscale`` command line: one module per command group."""
