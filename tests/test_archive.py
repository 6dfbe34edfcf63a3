"""The frozen protocol, its fingerprints, and the archive of superseded records.

Every record is a synthetic fixture written to tmp_path by the test itself.
"""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from harness.leaderboard.writing import ARCHIVE_PAGE, INDEX
from harness.results import records
from harness.results.archive import move_to_archive
from harness.cli import app
from harness.api.errors import BadInputError
from harness.results.protocol import (PROTOCOL_FILE, current_protocol, read_frozen,
                                   record_fingerprints, write_frozen)

from .test_leaderboard_intervals import toy_record

runner = CliRunner()


@pytest.fixture(scope="module")
def frozen():
    """The protocol the code gives now for the toy profile (as --freeze writes it)."""
    return current_protocol("toy")


def current_record(frozen, init="sound", *, seed=0, world=0, with_scores=True, **changes):
    """A record made under ``frozen``: its evaluators' protocols and its data recipe."""
    record, scores = toy_record(init, seed=seed, world=world, quality=1.0,
                                with_scores=with_scores)
    record = copy.deepcopy(record)
    for name, m in record["metrics"].items():
        m["protocol"] = {**frozen.evaluators[name]["protocol"], "seed": seed}
    data = frozen.data
    record["downstream"].update({"world_version": data["world_version"],
                                 "n_trainval": data["n_trainval"], "n_test": data["n_test"],
                                 "toy_config": data["toy_config"],
                                 "test_seed": data["test_seed"] + world})
    for key, value in changes.items():
        record["downstream"][key] = value
    records.validate_record(record)
    return record, scores


def write(results, pair):
    record, scores = pair
    return records.write_record(record, results, test_scores=scores)


# --------------------------------------------------------------------------- fingerprints
def test_fingerprint_ignores_seeds_and_worlds_but_not_the_protocol(frozen):
    a, _ = current_record(frozen, seed=0, world=0)
    b, _ = current_record(frozen, seed=2, world=1)
    assert record_fingerprints(a) == record_fingerprints(b) == frozen.fingerprints()
    assert frozen.is_current(a) and frozen.is_current(b)
    longer = copy.deepcopy(a)
    longer["metrics"]["voc07_full"]["protocol"]["iterations"] += 1
    assert record_fingerprints(longer)["voc07_full"] != record_fingerprints(a)["voc07_full"]
    assert record_fingerprints(longer)["voc07_linear"] == record_fingerprints(a)["voc07_linear"]
    assert not frozen.is_current(longer)
    assert "voc07_full protocol: iterations" in frozen.why_superseded(longer)
    unsealed, _ = current_record(frozen, test_seed=None)
    assert not frozen.is_current(unsealed)
    assert "no sealed test split" in frozen.why_superseded(unsealed)
    other_seed, _ = current_record(frozen, test_seed=frozen.test_seed + 100)
    assert "test seed" in frozen.why_superseded(other_seed)
    new_world, _ = current_record(frozen, world_version=frozen.data["world_version"] + 1)
    assert "world_version" in frozen.why_superseded(new_world)
    other_profile = copy.deepcopy(a)
    other_profile["config"]["profile"] = "paper"
    assert not frozen.is_current(other_profile)


def test_only_the_frozen_toy_worlds_are_current_and_a_changed_preset_is_drift(frozen):
    """A sound record's clips must come from a frozen toy world (the oracle, the realistic
    preset or one of its frozen single-knob variants); a knob the protocol does not list is
    superseded and says which world it ran on."""
    import dataclasses

    from harness.results.protocol import code_drift

    def on(world):
        record, _ = current_record(frozen)
        record["config"]["overrides"] = {"toy_world": world} if world else {}
        return record

    for world in ({}, {"preset": "realistic"}, {"preset": "realistic", "offscreen_prob": 0.0}):
        assert frozen.is_current(on(world)), world
    other = on({"preset": "realistic", "event_share": 1.0})
    assert not frozen.is_current(other)
    assert "toy world 'realistic with event_share=1.0' is not a frozen one" in \
        frozen.why_superseded(other)
    # a protocol frozen before the presets admits the oracle alone
    before = dataclasses.replace(frozen, worlds={})
    assert before.is_current(on({})) and not before.is_current(on({"preset": "realistic"}))
    # the realistic preset's knobs are frozen by value, not by name
    edited = copy.deepcopy(frozen)
    edited.worlds["realistic"]["knobs"]["music_prob"] = 0.3
    assert any("toy worlds differ (realistic)" in p for p in code_drift(edited))
    assert code_drift(frozen) == []


def test_a_record_missing_a_frozen_evaluator_is_not_current(tmp_path, frozen):
    """A record with fewer evaluators than the frozen protocol would leave a hole in the
    missing evaluator's table: it is superseded, and says which it lacks; a run writing
    to the leaderboard's results folder gets the frozen evaluators by default."""
    from harness.cli.run import default_evaluators

    wider = copy.deepcopy(frozen)
    wider.evaluators["knn"] = {"params": {}, "protocol": {"k": 20}, "fingerprint": "0" * 64}
    record, _ = current_record(frozen)
    assert frozen.is_current(record) and not wider.is_current(record)
    assert "no knn" in wider.why_superseded(record)
    write_frozen(tmp_path / PROTOCOL_FILE, wider)
    assert default_evaluators(tmp_path / "results") == ("voc07_linear", "voc07_full", "knn")
    assert default_evaluators(tmp_path / "elsewhere" / "results") == ("voc07_linear",
                                                                      "voc07_full")


def test_the_archived_records_are_superseded_and_say_why(frozen):
    """Every archived record differs from any freeze of today's protocol: those made
    before the sealed test split say so; the later ones name what changed since."""
    from pathlib import Path

    from harness.results.protocol import data_recipe

    archived = records.read_records(Path(__file__).parents[1] / "leaderboards" / "archive")
    unsealed = [r for r in archived if data_recipe(r["downstream"])["test_seed"] is None]
    assert len(unsealed) >= 16
    for record in archived:
        assert not frozen.is_current(record)
        why = frozen.why_superseded(record)
        assert why
        assert ("no sealed test split" in why) == (record in unsealed)


def test_protocol_file_round_trips_and_bad_files_are_one_line_errors(tmp_path, frozen):
    path = tmp_path / PROTOCOL_FILE
    assert read_frozen(path) is None
    write_frozen(path, frozen)
    assert read_frozen(path).fingerprints() == frozen.fingerprints()
    path.write_text('{"schema": "other"}')
    with pytest.raises(BadInputError, match="PROTOCOL.json: not a frozen protocol"):
        read_frozen(path)
    path.write_text("{")
    with pytest.raises(BadInputError, match="PROTOCOL.json: cannot read"):
        read_frozen(path)


# --------------------------------------------------------------------------- the archive
def test_archive_move_keeps_files_byte_identical_and_finishes_an_interrupted_move(
        tmp_path, frozen):
    results, archive = tmp_path / "results", tmp_path / "archive"
    record, scores = current_record(frozen)
    path = write(results, (record, scores))
    sidecar = results / record["test_scores"]["file"]
    before = {p.name: p.read_bytes() for p in (path, sidecar)}
    # an interrupted move: the sidecar already linked into the archive
    archive.mkdir()
    (archive / sidecar.name).write_bytes(before[sidecar.name])
    moved = move_to_archive(path, record, archive)
    assert sorted(p.name for p in moved) == sorted(before)
    assert {p.name: p.read_bytes() for p in archive.iterdir()} == before
    assert list(results.iterdir()) == []
    assert records.read_test_scores(archive / path.name, record) is not None
    # a different file of the same name in the archive is never replaced
    again = write(results, (record, scores))
    (archive / path.name).write_bytes(b"{}")
    with pytest.raises(BadInputError, match="other content"):
        move_to_archive(again, record, archive)
    assert again.is_file()


def test_cli_freeze_archive_check(tmp_path, frozen):
    results, out = tmp_path / "results", tmp_path / "board"
    args = ["leaderboard", "--results", str(results), "--out", str(out)]
    old_pair = current_record(frozen, test_seed=None)
    old = write(results, old_pair)
    current = [current_record(frozen, init, seed=s, world=w)
               for init in ("random", "sound") for s in (0, 1) for w in (0, 1)]
    for pair in current:
        write(results, pair)

    res = runner.invoke(app, ["leaderboard", "--out", str(out), "--freeze"])
    assert res.exit_code == 0, res.output
    protocol = json.loads((out / PROTOCOL_FILE).read_text())
    assert protocol["test_seed"] == frozen.test_seed and protocol["commit"] is not None
    assert {k: v["fingerprint"] for k, v in protocol["evaluators"].items()} == \
        frozen.fingerprints()

    # the superseded record is not shown, and --check says it must be archived
    assert runner.invoke(app, args).exit_code == 0
    index = (out / INDEX).read_text()
    assert "1 record(s) in `results/` were made under another protocol" in index
    res = runner.invoke(app, [*args, "--check"])
    assert res.exit_code == 1 and "not under the frozen protocol" in res.output

    res = runner.invoke(app, [*args, "--archive-superseded"])
    assert res.exit_code == 0, res.output
    assert f"archived {old.name}: no sealed test split" in res.output
    assert not old.exists() and (out / "archive" / old.name).is_file()
    assert (out / "archive" / old_pair[0]["test_scores"]["file"]).is_file()
    assert len(list(results.glob("*.json"))) == len(current)
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0
    page = (out / ARCHIVE_PAGE).read_text()
    assert old_pair[0]["run_id"] in page and "no sealed test split" in page
    assert "archive/README.md" in (out / INDEX).read_text()
    live = next(p for p in out.glob("toy-voc*.md")).read_text()
    assert old_pair[0]["run_id"] not in live and current[0][0]["run_id"] in live

    # a stale archive page, and a frozen protocol the code no longer gives, fail --check
    (out / ARCHIVE_PAGE).write_text(page + "edited\n")
    res = runner.invoke(app, [*args, "--check"])
    assert res.exit_code == 1 and "archive/README.md: out of date" in res.output
    assert runner.invoke(app, args).exit_code == 0
    protocol["evaluators"]["voc07_full"]["protocol"]["iterations"] = 1
    protocol["evaluators"]["voc07_full"]["fingerprint"] = "0" * 64
    (out / PROTOCOL_FILE).write_text(json.dumps(protocol))
    res = runner.invoke(app, [*args, "--check"])
    assert res.exit_code == 1 and "voc07_full's protocol differs (iterations)" in res.output

    # a refreeze keeps the frozen evaluators and the notes (the history outlives a freeze)
    wider = current_protocol("toy", ["voc07_linear", "voc07_full", "knn"])
    wider.notes = ["first freeze"]
    write_frozen(out / PROTOCOL_FILE, wider)
    assert runner.invoke(app, ["leaderboard", "--out", str(out), "--freeze"]).exit_code == 0
    again = read_frozen(out / PROTOCOL_FILE)
    assert again.fingerprints() == wider.fingerprints() and again.notes == ["first freeze"]
    assert set(again.worlds) == set(wider.worlds) and "realistic" in again.worlds


def test_archiving_everything_empties_the_live_tables_but_keeps_the_archive(tmp_path, frozen):
    results, out = tmp_path / "results", tmp_path / "board"
    args = ["leaderboard", "--results", str(results), "--out", str(out)]
    write(results, current_record(frozen, test_seed=None))
    assert runner.invoke(app, args).exit_code == 0            # no protocol: all live
    assert list(out.glob("toy-voc*.md"))
    write_frozen(out / PROTOCOL_FILE, frozen)
    res = runner.invoke(app, [*args, "--archive-superseded"])
    assert res.exit_code == 0, res.output
    assert not list(out.glob("toy-voc*.md"))                   # the old page is removed
    assert "No result records under the frozen protocol yet" in (out / INDEX).read_text()
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0
