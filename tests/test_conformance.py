"""Every registered plugin passes harness.api.testing's checks, and the checks catch faults."""

import pytest

from harness.api.registry import default_registry
from harness.api.testing import ConformanceError, check_plugin
from tests.fakeplugins import (BatchDependentRepr, NoValidationRepr, RandomLabeler, TinyRepr,
                               WrongShapeRepr)

ENTRIES = default_registry().entries()


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e.kind}:{e.name}" for e in ENTRIES])
def test_registered_plugin_conforms(entry):
    check_plugin(entry.cls)


def test_a_good_plugin_passes():
    check_plugin(TinyRepr)


@pytest.mark.parametrize("faulty, message", [
    (WrongShapeRepr, "shape"),
    (NoValidationRepr, "was accepted"),
    (BatchDependentRepr, "differs from computing that clip alone"),
    (RandomLabeler, "same labels"),
])
def test_faulty_plugins_are_caught(faulty, message):
    with pytest.raises(ConformanceError, match=message):
        check_plugin(faulty)


def test_a_class_of_no_kind_is_rejected():
    with pytest.raises(ConformanceError, match="not a subclass"):
        check_plugin(dict)
