"""The ``laser`` command line: a thin mirror of the Python API, one small function per subcommand."""
