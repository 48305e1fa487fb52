"""Console scripts (see ``[options.entry_points]`` in setup.cfg)."""
