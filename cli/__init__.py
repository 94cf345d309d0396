"""The ``cxhealth`` command line: one module per sub-command, ``main`` dispatches (see :mod:`cxhealth.cli.main`)."""
