"""The plugin manager and registry rules."""

import types

import pytest

from harness.api.errors import BadInputError, PluginError
from harness.api.hookspecs import hookimpl
from harness.api.registry import build_registry, default_registry, get_plugin_manager
from tests.fakeplugins import TinyRepr, plugin_providing

BUILTIN = {
    "repr": {"sound_texture", "mfcc"},
    "labeler": {"kmeans", "pca_binary"},
    "backbone": {"alexnet", "resnet18", "timm:"},
    "evaluator": {"voc07_linear", "voc07_full"},
}


def registry_with(*plugins, entry_points=False):
    pm = get_plugin_manager(entry_points=entry_points,
                            extra=[(f"p{i}", p) for i, p in enumerate(plugins)])
    return build_registry(pm)


def test_builtins_are_found_through_entry_points():
    registry = default_registry()
    for kind, names in BUILTIN.items():
        assert names <= set(registry.names(kind)), kind
    entry = registry.get("repr", "mfcc")
    assert entry.distribution == "harness" and entry.version


def test_no_manager_is_built_at_import():
    import harness.api.registry as module

    assert not any(isinstance(v, type(get_plugin_manager(entry_points=False)))
                   for v in vars(module).values())


def test_registration_goes_through_the_callback():
    registry = registry_with(plugin_providing("harness_register_reprs", TinyRepr))
    rep = registry.create("repr", "tiny", scale=2.0)
    assert isinstance(rep, TinyRepr) and rep.scale == 2.0
    assert registry.get("repr", "tiny").plugin == "p0"


def test_duplicate_name_names_both_plugins():
    a = plugin_providing("harness_register_reprs", TinyRepr)
    b = plugin_providing("harness_register_reprs", TinyRepr)
    with pytest.raises(PluginError, match=r"duplicate repr name 'tiny'.*'p0'.*'p1'"):
        registry_with(a, b)


def test_unknown_name_lists_available():
    registry = registry_with(plugin_providing("harness_register_reprs", TinyRepr))
    with pytest.raises(PluginError, match=r"unknown repr 'nope'; available: tiny"):
        registry.get("repr", "nope")


def test_misspelled_hook_is_reported():
    broken = types.SimpleNamespace(harness_register_repr=hookimpl(lambda register: None))
    with pytest.raises(PluginError, match="harness_register_repr"):
        get_plugin_manager(entry_points=False, extra=[("broken", broken)])


def test_registering_a_non_plugin_class_is_reported():
    with pytest.raises(PluginError, match="not a subclass"):
        registry_with(plugin_providing("harness_register_reprs", dict))


def test_environment_variable_blocks_plugins(monkeypatch):
    monkeypatch.setenv("HARNESS_BLOCK_PLUGINS", "mfcc, labeler:kmeans")
    registry = build_registry(get_plugin_manager())
    assert "mfcc" not in registry.names("repr")
    assert "kmeans" not in registry.names("labeler")
    assert "sound_texture" in registry.names("repr")


def test_family_names_pass_the_variant():
    class Family(TinyRepr):
        name = "fam:"

        def __init__(self, *, variant: str = "x"):
            self.variant = variant

    registry = registry_with(plugin_providing("harness_register_reprs", Family))
    assert registry.create("repr", "fam:abc").variant == "abc"


def test_bad_parameters_are_one_clear_error():
    registry = registry_with(plugin_providing("harness_register_reprs", TinyRepr))
    with pytest.raises(BadInputError, match=r"repr 'tiny': unknown parameter 'colour'; parameters: scale"):
        registry.create("repr", "tiny", colour="red")


def test_parameters_forwarded_to_a_base_are_declared_and_checked():
    """A constructor that passes ``**shared`` to its base declares the base's parameters:
    they are type- and range-checked, and a name neither declares is refused."""
    from typing import Annotated

    from harness.api.interfaces import Bounds
    from harness.api.params import check_params, declared_params

    class Base:
        def __init__(self, *, views: Annotated[int, Bounds(1, 8)] = 1):
            self.views = views

    class Child(Base):
        def __init__(self, *, k: int = 3, **shared):
            super().__init__(**shared)

    assert list(declared_params(Child)) == ["k", "views"]
    assert check_params(Child, "evaluator 'child'", {"views": 2.0, "k": 4}) == {"views": 2, "k": 4}
    with pytest.raises(BadInputError, match=r"parameter views must be <= 8"):
        check_params(Child, "evaluator 'child'", {"views": 9})
    with pytest.raises(BadInputError, match=r"unknown parameter 'colour'; parameters: k, views"):
        check_params(Child, "evaluator 'child'", {"colour": "red"})


@pytest.mark.parametrize("name, params, message", [
    ("knn", {"views": 0}, r"evaluator 'knn': parameter views must be >= 1"),
    ("knn", {"temperature": "warm"}, r"parameter temperature must be a number"),
    ("voc07_lowshot", {"on_short": "maybe"}, r"parameter on_short must be one of skip, error"),
    ("voc07_svm", {"layerz": ["conv1"]}, r"unknown parameter 'layerz'"),
])
def test_frozen_feature_evaluators_check_their_shared_parameters(name, params, message):
    with pytest.raises(BadInputError, match=message):
        default_registry().create("evaluator", name, **params)
