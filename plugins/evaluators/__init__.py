"""Built-in evaluators: PASCAL VOC 2007 classification, "Head" and "All".

``voc07_linear`` trains the fully connected layers on a frozen trunk, ``voc07_full``
fine-tunes everything; both follow one of two published protocols (``krahenbuhl``,
``deepcluster``; see :mod:`.protocol`) and report AP three ways (:mod:`harness.evaluation.ap`).
``linear_probe``, ``voc07_svm``, ``voc07_lowshot`` and ``knn`` score frozen features
(:mod:`.frozen_features`).
"""

from harness.api.hookspecs import hookimpl

from .frozen_features import KNN, LinearProbe, VOC07LowShot, VOC07SVM
from .voc07 import VOC07Full, VOC07Linear


@hookimpl
def harness_register_evaluators(register):
    register(VOC07Linear)
    register(VOC07Full)
    for cls in (LinearProbe, VOC07SVM, VOC07LowShot, KNN):
        register(cls)
