"""harness: a benchmark harness for visual learning supervised by ambient sound.

The pipeline (clips -> sound features -> pseudo-labels -> pretext network -> VOC07 metrics)
is assembled from plugins of four kinds, declared in :mod:`harness.api.hookspecs`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("harness")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
