"""The label-truth evidence: pseudo-labels of older sound records rebuilt and scored against
the toy clips' truth, each entry pinned to its record."""

import json
import shutil
from pathlib import Path

import pytest

from harness.api.errors import BadInputError
from harness.results.label_truth import (DEFAULT_EVIDENCE, check_evidence, entry_problem,
                                         evidence_entry, needs_evidence, read_evidence,
                                         rebuild_labels, record_pins, truth_of)
from harness.results.records import read_record_files

ROOT = Path(__file__).resolve().parents[1]
EVIDENCE = ROOT / DEFAULT_EVIDENCE
LIVE = ROOT / "leaderboards" / "results"
ARCHIVE = ROOT / "leaderboards" / "archive"


@pytest.fixture(scope="module")
def committed():
    """(live records, archived records) of the committed board, each read and verified."""
    return tuple([record for _, record in read_record_files(folder)] for folder in (LIVE, ARCHIVE))


def test_every_evidence_entry_pins_to_a_committed_record_and_its_labels(committed):
    entries = read_evidence(EVIDENCE)
    live, archived = committed
    problems, missing = check_evidence(entries, live, archived)
    assert problems == [] and missing == []     # every live sound record has its entry
    assert any(needs_evidence(r) for r in live)
    by_id = {r["run_id"]: r for r in [*live, *archived]}
    for run_id, entry in entries.items():
        record = by_id[run_id]
        # the entry's pins are what the record says about its clips and labels
        pins = record_pins(record)
        assert {k: entry[k] for k in pins} == pins
        assert entry["labels_key"] == record["labels"]["key"]
        truth = truth_of(record, entries)
        for column in ("objects", "sounding", "scene"):
            for key, value in truth[column].items():
                if key != "values":
                    assert 0.0 <= value <= 1.0, (run_id, column, key)


def _copy_evidence(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "label-truth.json"
    shutil.copyfile(EVIDENCE, path)
    return path, json.loads(path.read_text())


def test_an_entry_edited_by_hand_is_refused(tmp_path):
    path, data = _copy_evidence(tmp_path)
    run_id = sorted(data["entries"])[0]
    data["entries"][run_id]["truth"]["objects"]["nmi"] += 0.01
    path.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match=f"entry '{run_id}' does not match its digest"):
        read_evidence(path)


def test_the_check_command_refuses_an_edited_entry_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    path, data = _copy_evidence(tmp_path)
    run_id = sorted(data["entries"])[-1]
    data["entries"][run_id]["labels_sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["label-truth", "--check", "--evidence", str(path),
                                      "--results", str(LIVE), "--archive", str(ARCHIVE)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and run_id in lines[0]


def test_an_entry_does_not_pin_to_another_record(committed):
    entries = read_evidence(EVIDENCE)
    by_id = {r["run_id"]: r for r in [*committed[0], *committed[1]]}
    first, second = sorted(entries)[:2]
    assert entry_problem(entries[first], by_id[first]) is None
    problem = entry_problem(entries[first], by_id[second])
    assert problem is not None and "does not pin" in problem
    # a record changed after its entry was made (a figure edited) no longer takes it
    changed = json.loads(json.dumps(by_id[first]))
    changed["labels"]["diagnostics"]["sizes"][0] += 1
    with pytest.raises(BadInputError, match="does not pin to the record"):
        truth_of(changed, entries)


@pytest.fixture(scope="module")
def tiny_record(tmp_path_factory):
    """A sound record of a 24-clip toy world made the way a run makes one (a run's
    config, dataset and labels sections from the run's own stages), without the truth
    scores, like the records made before runs kept them; and the scores the run gave."""
    from harness.api.registry import default_registry
    from harness.data.clips import ClipDataset
    from harness.pipeline.config import RunConfig
    from harness.pipeline.data_stage import toy_clips
    from harness.pipeline.labels_stage import sound_labels
    from harness.results.records import dataset_identity, make_config

    # a module fixture runs before the per-test private cache is set: give it its own
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.mktemp("tiny-record-cache")))
    config = RunConfig(toy_clips=24, k=3, seed=1, world_seed=2, progress=False)
    dataset = ClipDataset(toy_clips(config.resolved_profile(), config.world_seed, False))
    _, info, rep, labeler = sound_labels(config, dataset, "cpu")
    backbone = default_registry().create("backbone", config.backbone)
    record = {"run_id": "tiny-sound-run",
              "config": make_config(init="sound", backbone=backbone, evaluators=[],
                                    profile=config.profile, seed=config.seed, device="cpu",
                                    repr=rep, labeler=labeler, k=3, size_param="k",
                                    world_seed=config.world_seed, overrides=config.overrides()),
              "dataset": dataset_identity(dataset, "toy"),
              "labels": json.loads(json.dumps(info))}
    truth = record["labels"]["diagnostics"].pop("truth")
    monkeypatch.undo()
    return record, truth


def test_a_small_records_truth_is_rebuilt_from_a_fresh_toy_world(tiny_record, tmp_path,
                                                                 monkeypatch):
    record, truth = tiny_record
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "fresh-cache"))  # nothing reused
    assert needs_evidence(record)
    entry = evidence_entry(record)
    assert entry["truth"] == truth
    assert entry_problem(entry, record) is None
    assert truth_of(record, {record["run_id"]: entry}) == truth


def test_labels_that_are_not_the_records_are_refused(tiny_record):
    record, _ = tiny_record
    other = json.loads(json.dumps(record))
    sizes = other["labels"]["diagnostics"]["sizes"]
    sizes[0], sizes[1] = sizes[0] + 1, sizes[1] - 1
    with pytest.raises(BadInputError, match="not the ones the record used.*sizes"):
        rebuild_labels(other)
    other = json.loads(json.dumps(record))
    other["config"]["labeler"]["params"]["seed"] = 7     # another clustering of the clips
    with pytest.raises(BadInputError, match="tiny-sound-run"):
        rebuild_labels(other)


def test_a_forged_entry_is_refused_when_its_labels_are_rebuilt(tiny_record, tmp_path):
    """An entry edited with its digest made again passes the reading, not the rebuild."""
    from harness.results.label_truth import _entry_digest, regenerate, write_evidence

    record, _ = tiny_record
    path = tmp_path / "label-truth.json"
    assert regenerate(path, [record], echo=lambda line: None)["made"] == 1
    assert regenerate(path, [record], recompute=True, echo=lambda line: None)["confirmed"] == 1
    entry = dict(read_evidence(path)[record["run_id"]])
    entry["truth"] = {**entry["truth"], "objects": {**entry["truth"]["objects"], "nmi": 0.99}}
    entry["digest"] = _entry_digest(entry)
    write_evidence(path, {record["run_id"]: entry})
    assert read_evidence(path)[record["run_id"]]["truth"]["objects"]["nmi"] == 0.99
    with pytest.raises(BadInputError, match="not what its labels give when rebuilt.*truth"):
        regenerate(path, [record], recompute=True, echo=lambda line: None)


def test_the_leaderboard_shows_the_evidence_and_refuses_an_edited_entry(tmp_path, committed):
    """`harness leaderboard` reads its board's evidence folder: sound rows without their own
    truth scores get them from it, and an entry edited by hand stops the board with one
    line (exit 2)."""
    from typer.testing import CliRunner

    from harness.cli import app

    live, _ = committed
    chosen = sorted(r["run_id"] for r in live if needs_evidence(r))[:2]
    out = tmp_path / "board"
    (out / "results").mkdir(parents=True)
    for run_id in chosen:
        for f in LIVE.glob(f"{run_id}.*"):
            shutil.copyfile(f, out / "results" / f.name)
    path = out / DEFAULT_EVIDENCE.relative_to(DEFAULT_EVIDENCE.parents[1])
    path.parent.mkdir()
    data = json.loads(EVIDENCE.read_text())
    data["entries"] = {k: data["entries"][k] for k in chosen}
    path.write_text(json.dumps(data))
    args = ["leaderboard", "--results", str(out / "results"), "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    page = (out / "README.md").read_text() + "".join(p.read_text() for p in out.glob("toy-*.md"))
    told = page.split("How much the sound told")[1]
    table = [line for line in told.split("##")[0].splitlines() if line.startswith("| sound")]
    assert table and not any("not recorded" in line for line in table)
    assert f"{data['entries'][chosen[0]]['truth']['objects']['nmi']:.3f}"[:4] in told

    data["entries"][chosen[0]]["truth"]["objects"]["purity"] = 0.99
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(app, [*args, "--check"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and chosen[0] in lines[0]
