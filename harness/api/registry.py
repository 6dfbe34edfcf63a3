"""The plugin manager and the registry of what plugins provide.

Nothing is built at import time: :func:`get_plugin_manager` builds a pluggy manager,
loading every module of the entry-point group ``harness`` (built-in plugins included),
and :func:`build_registry` asks each hook for what it provides. Set
``HARNESS_BLOCK_PLUGINS=name,name`` to block plugins: a name is an entry point (a whole
plugin module, e.g. ``mfcc``) or a provided item, optionally with its kind (``repr:mfcc``).
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import os
from dataclasses import dataclass
from typing import Any, Iterable

import pluggy

from harness.api import hookspecs
from harness.api.errors import PluginError, UnknownPluginError
from harness.api.interfaces import KIND_CLASSES, Plugin

ENTRY_POINT_GROUP = "harness"
BLOCK_ENV = "HARNESS_BLOCK_PLUGINS"


def blocked_names() -> set[str]:
    """Names listed in ``$HARNESS_BLOCK_PLUGINS`` (comma or space separated)."""
    raw = os.environ.get(BLOCK_ENV, "")
    return {n.strip() for n in raw.replace(",", " ").split() if n.strip()}


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering which distribution provided each plugin."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        #: plugin name -> (distribution name, version); empty strings when not packaged
        self.distributions: dict[str, tuple[str, str]] = {}


def get_plugin_manager(*, entry_points: bool = True,
                       extra: Iterable[tuple[str, object]] = ()) -> PluginManager:
    """A fresh manager with the hook specs, the entry-point plugins and ``extra`` plugins.

    ``extra`` is (name, module-or-object) pairs, for tests and for programs that embed
    their own plugins without packaging them. A module that fails to import, or that
    implements a hook that does not exist (a misspelling), raises :class:`PluginError`
    naming it.
    """
    pm = PluginManager()
    blocked = blocked_names()
    for name in blocked:
        pm.set_blocked(name)
    if entry_points:
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in blocked or pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not be a traceback
                dist = ep.dist.name if ep.dist else "?"
                raise PluginError(f"plugin {ep.name!r} ({ep.value}, from {dist}) failed to "
                                  f"import: {type(exc).__name__}: {exc}") from exc
            _register(pm, plugin, ep.name, dist=ep.dist)
    for name, plugin in extra:
        if name not in blocked:
            _register(pm, plugin, name, dist=None)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} is broken: {exc}") from exc
    return pm


def _register(pm: PluginManager, plugin: object, name: str, dist: Any) -> None:
    try:
        pm.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from exc
    pm.distributions[name] = (dist.name, dist.version) if dist is not None else ("", "")


@dataclass(frozen=True)
class Entry:
    """One provided thing: its kind, name, class, and which plugin provided it."""

    kind: str
    name: str
    cls: type
    plugin: str
    distribution: str
    version: str

    @property
    def description(self) -> str:
        """The class's ``description``, else the first line of its docstring."""
        text = getattr(self.cls, "description", "") or self.cls.__doc__ or ""
        lines = text.strip().splitlines()
        return lines[0] if lines else ""


class Registry:
    """Everything the installed plugins provide, by kind and name."""

    def __init__(self, entries: Iterable[Entry]):
        self._by_kind: dict[str, dict[str, Entry]] = {k: {} for k in KIND_CLASSES}
        blocked = blocked_names()
        for e in entries:
            if e.name in blocked or f"{e.kind}:{e.name}" in blocked:
                continue
            table = self._by_kind[e.kind]
            if e.name in table:
                other = table[e.name]
                raise PluginError(f"duplicate {e.kind} name {e.name!r}: provided by plugin "
                                  f"{other.plugin!r} and by plugin {e.plugin!r}")
            table[e.name] = e

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(self._by_kind)
        return [e for k in kinds for _, e in sorted(self._by_kind[k].items())]

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[self._check_kind(kind)])

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name``; a family ``prefix:`` serves ``prefix:anything``."""
        table = self._by_kind[self._check_kind(kind)]
        if name in table:
            return table[name]
        if ":" in name:
            family = name.split(":", 1)[0] + ":"
            if family in table:
                return table[family]
        available = ", ".join(self.names(kind)) or "none installed"
        if name in blocked_names() or f"{kind}:{name}" in blocked_names():
            raise UnknownPluginError(f"{kind} {name!r} is blocked by ${BLOCK_ENV}; "
                                     f"available: {available}")
        raise UnknownPluginError(f"unknown {kind} {name!r}; available: {available}")

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Instantiate ``name`` with keyword parameters (a family gets ``variant=``).

        The parameters are first checked against the class's declared types and bounds
        (:func:`harness.api.params.check_params`): a bad one is a BadInputError naming it.
        """
        from harness.api.params import check_params

        entry = self.get(kind, name)
        if entry.name.endswith(":") and name != entry.name:
            params = {"variant": name.split(":", 1)[1], **params}
        params = check_params(entry.cls, f"{kind} {name!r}", params)
        try:
            return entry.cls(**params)
        except TypeError as exc:
            raise PluginError(f"{kind} {name!r}: bad parameters {sorted(params)}: {exc}") from exc

    @staticmethod
    def _check_kind(kind: str) -> str:
        if kind not in KIND_CLASSES:
            raise UnknownPluginError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KIND_CLASSES)}")
        return kind


def build_registry(pm: PluginManager) -> Registry:
    """Call every registration hook and collect what the plugins provide."""
    entries: list[Entry] = []
    dists = pm.distributions
    for kind, hook_name in hookspecs.KIND_HOOKS.items():
        hook = getattr(pm.hook, hook_name)
        base = KIND_CLASSES[kind]
        for impl in hook.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            dist, version = dists.get(plugin_name, ("", ""))

            def register(cls: type, _plugin=plugin_name, _dist=dist, _ver=version,
                         _kind=kind, _base=base) -> None:
                _check_provided(cls, _kind, _base, _plugin)
                entries.append(Entry(_kind, cls.name, cls, _plugin, _dist, _ver))

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin {plugin_name!r} failed in {hook_name}: "
                                  f"{type(exc).__name__}: {exc}") from exc
    return Registry(entries)


def _check_provided(cls: Any, kind: str, base: type, plugin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"plugin {plugin!r} registered {cls!r} as a {kind}, but it is not a "
                          f"subclass of harness.api.interfaces.{base.__name__}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin {plugin!r} registered {cls.__name__} without a name")


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of the installed plugins, built on first use and then reused."""
    return build_registry(get_plugin_manager())


def create(kind: str, name: str, **params: Any) -> Plugin:
    """Shortcut: ``create("repr", "mfcc", n_mfcc=20)`` on the default registry."""
    return default_registry().create(kind, name, **params)
