"""Built-in evaluators: PASCAL VOC 2007 classification, "Head" and "All".

``voc07_linear`` trains the fully connected layers on a frozen trunk, ``voc07_full``
fine-tunes everything; both follow one of two published protocols (``krahenbuhl``,
``deepcluster``; see :mod:`.protocol`) and report AP three ways (:mod:`harness.ap`).
"""

from harness.hookspecs import hookimpl

from .voc07 import VOC07Full, VOC07Linear


@hookimpl
def harness_register_evaluators(register):
    register(VOC07Linear)
    register(VOC07Full)
