"""Benchmark suites (not tests), one module per suite; see :mod:`parties.bench`."""
