"""The leaderboard package's own contract: Table 1's columns come from the frozen protocol,
the pages' prose comes from templates that cannot silently drop a value, the code names no
evaluator plugin, and building a board never needs torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from harness.leaderboard import prose
from harness.leaderboard.groups import group_records
from harness.leaderboard.pages import group_page
from harness.leaderboard.rows import table1_evaluators
from harness.profiles import DEFAULT_EVALUATORS
from harness.results.protocol import FrozenProtocol

from .test_records import make

PACKAGE = Path(__file__).resolve().parents[1] / "harness" / "leaderboard"


def frozen_with(modes: dict[str, str | None]) -> FrozenProtocol:
    """A frozen protocol whose evaluators record the given ``mode`` (None: no mode)."""
    evaluators = {name: {"params": {}, "fingerprint": "0" * 64,
                         "protocol": {} if mode is None else {"mode": mode}}
                  for name, mode in modes.items()}
    return FrozenProtocol(profile="toy", data={"kind": "toy-voc"}, evaluators=evaluators)


def renamed(record: dict, names: dict[str, str]) -> dict:
    """``record`` with its evaluators' results filed under other names."""
    out = dict(record)
    out["metrics"] = {names.get(k, k): v for k, v in record["metrics"].items()}
    config = dict(record["config"])
    config["evaluators"] = {names.get(k, k): {**v, "name": names.get(k, k)}
                            for k, v in record["config"]["evaluators"].items()}
    out["config"] = config
    return out


def test_table1_columns_are_the_evaluators_the_frozen_protocol_records_as_head_and_all():
    frozen = frozen_with({"knn": None, "probe_all": "all", "probe_head": "head"})
    assert table1_evaluators(frozen) == {"Head": "probe_head", "All": "probe_all"}


def test_without_a_frozen_head_and_all_pair_the_profiles_default_evaluators_are_table1():
    default = dict(zip(("Head", "All"), DEFAULT_EVALUATORS))
    assert table1_evaluators(None) == default
    # a frozen protocol with a Head evaluator but no All one names no pair
    assert table1_evaluators(frozen_with({"probe_head": "head", "knn": None})) == default


def test_the_frozen_protocols_evaluators_head_the_table1_page():
    names = {DEFAULT_EVALUATORS[0]: "probe_head", DEFAULT_EVALUATORS[1]: "probe_all"}
    recs = [renamed(make(init, head=h, all_=a), names)
            for init, h, a in (("sound", 40.0, 50.0), ("random", 30.0, 45.0),
                               ("supervised", 60.0, 70.0))]
    panels = table1_evaluators(frozen_with({"probe_head": "head", "probe_all": "all"}))
    (group,) = group_records(recs, panels=panels)
    assert group.key.evaluator == "" and group.panels == panels
    page = group_page(group, [])
    assert "Head = `probe_head` (frozen trunk), All = `probe_all`" in page
    assert "(`probe_head`)" in page and "(`probe_all`)" in page
    # without the protocol's pair the renamed evaluators are tables of their own
    assert sorted(g.key.evaluator for g in group_records(recs)) == ["probe_all", "probe_head"]


def test_a_prose_macro_renders_each_paragraph_as_one_line():
    built, supervised = prose.paragraphs(
        "group_page.md.j2", "toy_framing", clip_seconds=2.0, silent="no class is silent",
        sound_prob=0.9, gain_lo=6.0, gain_hi=18.0, owens_head="70%", owens_all="50%")
    for text in (built, supervised):
        assert "\n" not in text and "  " not in text and text == text.strip()
    assert "audible with probability 0.9, 6-18 dB above" in built
    assert supervised.endswith("compare rows with each other on this page only.")


def test_a_value_the_template_needs_but_is_not_given_is_an_error_not_an_empty_string():
    with pytest.raises(jinja2.UndefinedError):
        prose.say("provenance.md.j2", "voc07", folders="`eeeeeeee`")


def test_the_leaderboard_code_names_no_evaluator_plugin():
    """Table 1's evaluators come from the frozen protocol and the profile; no string in the
    package's code (docstrings aside) is the name of an evaluator plugin."""
    from harness.api.registry import default_registry

    evaluators = set(default_registry().names("evaluator")) | set(DEFAULT_EVALUATORS)
    assert evaluators >= set(DEFAULT_EVALUATORS) and len(evaluators) > 2
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        found += [(path.name, node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in docstrings and node.value in evaluators]
    assert found == []


def test_no_leaderboard_module_is_over_400_lines():
    lengths = {p.name: len(p.read_text(encoding="utf-8").splitlines())
               for p in PACKAGE.glob("*.py")}
    assert lengths and max(lengths.values()) <= 400, lengths


def test_building_a_board_imports_no_torch():
    code = ("import sys\n"
            "from tests.test_records import make\n"
            "from harness.leaderboard.board import build_leaderboard\n"
            "board = build_leaderboard([make(i) for i in ('sound', 'random', 'supervised')])\n"
            "assert len(board.markdown) == 2, board.markdown\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PACKAGE.parents[1], timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
