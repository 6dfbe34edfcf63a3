"""A result that disagrees with its own evidence is never published.

``harness leaderboard`` (and ``--check``) recompute every figure of every record from its
per-image test scores and its per-class figures (:mod:`harness.results.verify`), and a record
written now carries a digest of its content (:func:`harness.results.records.record_digest`). The
edited records here are copies, in tmp_path, of committed ones; the committed files are
only read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.results import records

from harness.results import verify
from harness.cli import app
from harness.api.errors import BadInputError

from .test_records import make

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "leaderboards" / "results"
ARCHIVE = REPO / "leaderboards" / "archive"


def committed_record_with_scores(folder: Path, source: Path = COMMITTED) -> Path:
    """A copy in ``folder`` of the first committed record that has per-image scores (and
    of its scores); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in sorted(source.glob("*.json")):
        record = json.loads(src.read_text("utf-8"))
        if record.get("test_scores"):
            shutil.copy2(src, folder / src.name)
            shutil.copy2(source / record["test_scores"]["file"], folder)
            return folder / src.name
    raise AssertionError(f"no record with scores in {source}")


def edit(path: Path, change) -> dict:
    """Apply ``change`` to the record in ``path`` and write it back as a hand would."""
    record = json.loads(path.read_text("utf-8"))
    change(record)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", "utf-8")
    return record


def leaderboard(*args) -> "object":
    return runner.invoke(app, ["leaderboard", *[str(a) for a in args]])


def refused(result, *words: str) -> str:
    """The command exited 2 with one ``error:`` line holding every word; that line."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- committed records
def test_every_committed_record_agrees_with_its_evidence():
    checked = 0
    for folder in (COMMITTED, ARCHIVE):
        for path, record in records.read_record_files(folder):
            scores = records.read_test_scores(path, record)
            assert verify.record_disagreements(record, scores) == [], path
            checked += 1
    assert checked >= 78


def test_an_edited_headline_of_a_committed_record_is_refused_naming_the_file(tmp_path):
    results, board = tmp_path / "results", tmp_path / "board"
    path = committed_record_with_scores(results)
    res = leaderboard("--results", results, "--out", board, "--check")
    assert res.exit_code == 1 and "missing" in res.output       # accepted: only pages missing
    head = json.loads(path.read_text())["metrics"]["voc07_linear"]["value"]

    def raise_head(record):
        record["metrics"]["voc07_linear"]["value"] = head + 44.0
    edit(path, raise_head)
    for check in (["--check"], []):
        line = refused(leaderboard("--results", results, "--out", board, *check),
                       path.name, "voc07_linear map says", "but its scores give",
                       f"{head:.10g}")
        assert f"{head + 44.0:.10g}" in line
    assert not board.exists()                                  # nothing was written


def test_an_edited_per_class_ap_is_refused_even_with_the_headline_kept_consistent(tmp_path):
    results = tmp_path / "results"
    path = committed_record_with_scores(results)

    def raise_one_class(record):
        m = record["metrics"]["voc07_full"]
        m["breakdown"]["cat"] += 1e-6 * 20                   # invisible at one decimal
        m["value"] += 1e-6                                   # mean of the breakdown kept
    edit(path, raise_one_class)
    refused(leaderboard("--results", results, "--out", tmp_path / "board", "--check"),
            path.name, "voc07_full breakdown['cat'] says", "but its scores give")


def test_an_edited_devkit_ap_is_refused_from_the_scores(tmp_path):
    results = tmp_path / "results"
    path = committed_record_with_scores(results)

    def change(record):
        d = record["metrics"]["voc07_linear"]["details"]
        d["ap_voc10"]["dog"] += 20.0
        d["map_voc10"] += 1.0                                # consistent with its classes
    edit(path, change)
    refused(leaderboard("--results", results, "--out", tmp_path / "board"),
            path.name, "voc07_linear details.ap_voc10['dog'] says", "but its scores give")


@pytest.mark.parametrize("change, figure", [
    (lambda r: r["metrics"]["knn"].__setitem__("value", 40.0),
     "knn map_pool5 says 40"),
    (lambda r: r["metrics"]["linear_probe"]["details"]["ap"]["conv1"]["sklearn_pessimistic"]
     .__setitem__("cat", 99.0),
     "linear_probe breakdown['conv1'] says"),
    (lambda r: r["metrics"]["voc07_svm"]["details"]["headline_ap"].__setitem__("dog", 99.0),
     "voc07_svm details.headline_ap['dog'] says"),
    (lambda r: r["metrics"]["voc07_lowshot"]["details"]["per_sample"]["k=1"].__setitem__(0, 50.0),
     "voc07_lowshot breakdown['k=1'] says"),
    (lambda r: r["metrics"]["voc07_lowshot"].__setitem__("value", 50.0),
     "voc07_lowshot lowshot_mean_map says 50"),
])
def test_an_edited_frozen_feature_figure_is_refused_from_its_per_class_figures(
        tmp_path, change, figure):
    results = tmp_path / "results"
    path = committed_record_with_scores(results)
    edit(path, change)
    refused(leaderboard("--results", results, "--out", tmp_path / "board", "--check"),
            path.name, figure)


def test_an_edited_archived_record_is_refused_too(tmp_path):
    results, board = tmp_path / "results", tmp_path / "board"
    results.mkdir()
    path = committed_record_with_scores(board / "archive", ARCHIVE)

    def change(record):
        record["metrics"]["voc07_full"]["value"] = 55.19
    edit(path, change)
    refused(leaderboard("--results", results, "--out", board, "--check"),
            str(Path("archive") / path.name), "voc07_full map says 55.19")


def test_a_tampered_record_is_not_archived(tmp_path):
    results, board = tmp_path / "results", tmp_path / "board"
    path = committed_record_with_scores(results, ARCHIVE)     # superseded: would be moved
    board.mkdir()
    shutil.copy2(REPO / "leaderboards" / "PROTOCOL.json", board / "PROTOCOL.json")

    def change(record):
        record["metrics"]["voc07_full"]["value"] = 55.19
    edit(path, change)
    refused(leaderboard("--results", results, "--out", board, "--archive-superseded"),
            path.name, "voc07_full map says 55.19")
    assert path.is_file() and not (board / "archive").exists()


# --------------------------------------------------------------------------- the digest
def test_a_record_is_written_with_the_digest_of_its_content(tmp_path):
    record = make()
    path = records.write_record(record, tmp_path)
    on_disk = json.loads(path.read_text())
    assert on_disk["digest"] == records.record_digest(record) == records.record_digest(on_disk)
    assert on_disk["digest"].startswith("sha256:") and len(on_disk["digest"]) == 7 + 64
    # the digest is of the content, not of the file's layout
    path.write_text(json.dumps(on_disk, indent=4))
    assert records.read_record(path) == on_disk
    # a different record has a different digest
    assert records.record_digest(make(head=41.0)) != on_disk["digest"]


def test_a_record_changed_after_it_was_written_fails_its_digest(tmp_path):
    results = tmp_path / "results"
    path = records.write_record(make(), results)

    def change(record):                  # no figure: only the digest can tell
        record["timings"]["pretrain"] = 1.0
    edit(path, change)
    with pytest.raises(BadInputError, match="its digest says .* but its content gives"):
        records.read_record(path)
    refused(leaderboard("--results", results, "--out", tmp_path / "board", "--check"),
            path.name, "digest", "changed after it was written")


def test_a_record_written_with_a_stale_digest_gets_its_own(tmp_path):
    record = {**make(), "digest": "sha256:" + "0" * 64}
    path = records.write_record(record, tmp_path)
    assert records.read_record(path)["digest"] == records.record_digest(record)


def test_a_malformed_digest_is_refused_by_the_schema(tmp_path):
    path = records.write_record(make(), tmp_path)
    edit(path, lambda r: r.__setitem__("digest", "md5:abc"))
    with pytest.raises(BadInputError, match="at digest"):
        records.read_record(path)


# --------------------------------------------------------------------------- the output folder
def test_no_live_records_beside_an_archive_keep_the_leaderboard_pages(tmp_path):
    results, board, empty = tmp_path / "results", tmp_path / "board", tmp_path / "empty"
    empty.mkdir()
    for init in ("random", "sound"):
        records.write_record(make(init), results)
    records.write_record(make("supervised"), board / "archive")
    assert leaderboard("--results", results, "--out", board).exit_code == 0
    before = {p: p.read_bytes() for p in sorted(board.rglob("*")) if p.is_file()}
    assert any(p.parent == board and p.name != "README.md" for p in before)  # a table page
    assert (board / "archive" / "README.md") in before
    refused(leaderboard("--results", empty, "--out", board), "no live result records",
            "refusing to delete")
    assert {p: p.read_bytes() for p in sorted(board.rglob("*")) if p.is_file()} == before


@pytest.mark.parametrize("check", [[], ["--check"], ["--freeze"]])
def test_leaderboard_out_an_existing_file_is_refused(tmp_path, check):
    results, out = tmp_path / "results", tmp_path / "board.md"
    records.write_record(make(), results)
    out.write_text("my notes\n")
    refused(leaderboard("--results", results, "--out", out, *check), f"--out {out}",
            "is a file")
    refused(leaderboard("--results", results, "--out", out / "sub", *check),
            f"{out} is a file")
    assert out.read_text() == "my notes\n"


# --------------------------------------------------------------------------- exact scores
def test_scores_are_kept_exactly_so_a_new_record_recomputes_exactly(tmp_path):
    import numpy as np

    from harness.evaluation.ap import SplitScores, score_split

    rng = np.random.default_rng(0)
    n, classes = 200, make()["metrics"]["voc07_linear"]["breakdown"]
    labels = (rng.random((n, len(classes))) < 0.3).astype(np.int8)
    labels[0] = 1
    # scores a few float32 units in the last place apart: float32 would tie many of them
    values = 50.0 + rng.normal(size=labels.shape) * 4e-6 + labels * 2e-6
    scores = SplitScores("test", "trainval", tuple(f"{i:06d}" for i in range(n)),
                         tuple(classes), values, labels)
    figures = score_split(scores).to_metrics()
    base = make()
    entry = {"headline": "map", "formula": "sklearn_pessimistic AP, mean over classes",
             "value": figures["map"], "breakdown": figures["ap"],
             "protocol": base["metrics"]["voc07_linear"]["protocol"],
             "details": {k: v for k, v in figures.items() if k not in ("map", "ap")}}
    record = records.build_record(
        **{k: base[k] for k in ("config", "downstream", "dataset", "timings", "labels",
                                "pretext", "environment", "code", "created")},
        metrics={"voc07_linear": entry}, test_scores={"voc07_linear": scores})
    path = records.write_record(record, tmp_path, test_scores={"voc07_linear": scores})
    back = records.read_test_scores(path, records.read_record(path))
    assert verify.record_disagreements(records.read_record(path), back) == []
    # what float32 scores would have given instead: other APs, a refused record
    rounded = SplitScores("test", "trainval", scores.image_ids, scores.class_names,
                          values.astype(np.float32).astype(np.float64), labels)
    assert verify.record_disagreements(record, {"voc07_linear": rounded})
