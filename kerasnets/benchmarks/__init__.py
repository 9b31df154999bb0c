"""Speed against the peers (torchvision, keras.applications): ``scripts/benchmark.py``."""

from kerasnets.benchmarks.runner import benchmark

__all__ = ["benchmark"]
