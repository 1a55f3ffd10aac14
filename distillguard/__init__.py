"""distillguard: catch LLM-API distillation harvesting from account-level prompt distributions.

The Python API (see README, "Python API"): `load_detector` opens a registered model with its embedder,
`score_events` scores a pandas DataFrame of events in the traffic contract. Both import their heavy
dependencies when called, so `import distillguard` stays cheap.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("distillguard")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

from distillguard.api import load_detector, score_events

__all__ = ["__version__", "load_detector", "score_events"]
