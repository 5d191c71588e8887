"""One small plugin per extension point, registered from outside the package: tests/test_plugins.py installs them
as a third-party distribution would (a dist-info with an entry_points.txt on sys.path), nothing else."""
