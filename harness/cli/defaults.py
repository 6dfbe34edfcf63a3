"""Where the command line's option defaults come from, and how ``--help`` shows them.

An option never writes a default of its own. It takes it from :mod:`harness.profiles`
(the one home of every default: ``DEFAULT_*`` for the plugins, seeds and folders, a
:class:`~harness.profiles.Profile` for the schedule) or from a typed config's field (e.g.
:class:`harness.data.ingest.IngestConfig`). An option whose value depends on ``--profile``
defaults to None (the profile decides when the command runs) and shows the default
profile's value in ``--help``, marked as coming from the profile.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from harness.profiles import DEFAULT_PROFILE, ProfileName, get_profile

#: the ``--profile`` option's default
PROFILE = ProfileName(DEFAULT_PROFILE)


def field_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``cls``."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            break
    raise KeyError(f"{cls.__name__}.{name} has no default")


def param_default(func: Callable[..., Any], name: str) -> Any:
    """The default of the keyword parameter ``name`` of ``func``."""
    default = inspect.signature(func).parameters[name].default
    if default is inspect.Parameter.empty:
        raise KeyError(f"{func.__name__}({name}) has no default")
    return default


def from_profile(attr: str) -> str:
    """``--help``'s default for an option the profile sets: the default profile's value of
    its field ``attr``, e.g. ``"90 from the toy profile"``."""
    return f"{getattr(get_profile(DEFAULT_PROFILE), attr)} from the {DEFAULT_PROFILE} profile"
