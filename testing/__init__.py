"""Helpers shared by the test suite (tests/) and the benchmarks (benchmarks/).

Not part of the installed package (setuptools ships `gitcoord*` only): importable
from the repository root, which `python -m benchmarks` puts on sys.path and pytest
adds through `pythonpath` in pyproject.toml.
"""
