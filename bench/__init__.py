"""The concurrency lab: every serving configuration measured side by side.

`make bench` (or `.venv/bin/python -m bench`) runs it; docs/benchmarks/
README.md explains the method and reads the figures.
"""
