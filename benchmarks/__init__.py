"""Benchmarks of jaxdd (not part of the package): run as ``python -m benchmarks.bench_datm``."""
