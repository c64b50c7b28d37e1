"""gitcoord's benchmark suite: `.venv/bin/python -m benchmarks [--quick]` (see run.py).

Benchmarks, not tests: they measure and report, and never assert timings.
"""
