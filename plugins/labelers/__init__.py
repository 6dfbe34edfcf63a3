"""Built-in labelers: ``kmeans`` (the paper's cluster ids) and ``pca_binary`` (Owens's codes).

Each turns a sound-feature matrix [N, D] into pretext targets; see :mod:`.kmeans`,
:mod:`.pca_binary`, the shared input checks and rescaling in :mod:`.preprocess`, and what
``harness label`` prints about the result in :mod:`harness.labels.diagnostics`.
"""

from harness.api.hookspecs import hookimpl

from .kmeans import KMeansLabeler
from .pca_binary import PcaBinaryLabeler

__all__ = ["KMeansLabeler", "PcaBinaryLabeler"]


@hookimpl
def harness_register_labelers(register):
    register(KMeansLabeler)
    register(PcaBinaryLabeler)
