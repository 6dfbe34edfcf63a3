"""The five plugin kinds, declared once as pluggy hook specifications.

A plugin is a module (or object) with one or more functions decorated with
:data:`hookimpl`, named after the hooks below. Each hook receives a ``register`` callback
from the core; the plugin calls it once per thing it provides. Plugins never touch global
state: everything they provide reaches the core through that callback.

Example (a complete sound-representation plugin)::

    from harness.api.hookspecs import hookimpl

    @hookimpl
    def harness_register_reprs(register):
        register(MyRepresentation)      # a class satisfying harness.api.interfaces.SoundRepresentation

Entry points of the group ``harness`` point at such modules; the built-in plugins are
registered the same way, in this project's own ``pyproject.toml``.
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "harness"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def harness_register_reprs(register: Callable[[type], None]) -> None:
    """Provide sound representations (plugin kind ``repr``).

    Call ``register(cls)`` for each class. The class must satisfy
    :class:`harness.api.interfaces.SoundRepresentation`: a ``name``, a one-line
    ``description``, keyword-only constructor parameters with defaults, and
    ``compute(waveforms) -> float32 [B, D]``.
    """


@hookspec
def harness_register_labelers(register: Callable[[type], None]) -> None:
    """Provide labelers that turn a feature matrix into pseudo-labels (kind ``labeler``).

    Call ``register(cls)`` for each class satisfying :class:`harness.api.interfaces.Labeler`.
    """


@hookspec
def harness_register_backbones(register: Callable[[type], None]) -> None:
    """Provide network architectures (kind ``backbone``).

    Call ``register(cls)`` for each class satisfying :class:`harness.api.interfaces.Backbone`.
    A class whose ``name`` ends in ``:`` (for example ``timm:``) is a family: it serves
    every name ``timm:<model>`` and receives the part after the colon as ``variant``.
    """


@hookspec
def harness_register_evaluators(register: Callable[[type], None]) -> None:
    """Provide downstream evaluators (kind ``evaluator``).

    Call ``register(cls)`` for each class satisfying :class:`harness.api.interfaces.Evaluator`.
    """


@hookspec
def harness_register_loggers(register: Callable[[type], None]) -> None:
    """Provide loggers that write a run's figures where people watch them (kind ``logger``).

    Call ``register(cls)`` for each class satisfying :class:`harness.api.interfaces.Logger`.
    """


#: Plugin kind -> the hook that provides it. The single place the kinds are listed.
KIND_HOOKS: dict[str, str] = {
    "repr": "harness_register_reprs",
    "labeler": "harness_register_labelers",
    "backbone": "harness_register_backbones",
    "evaluator": "harness_register_evaluators",
    "logger": "harness_register_loggers",
}
