"""What a reviewer reads on the leaderboard: a declared headline, one world set per table,
intervals over worlds, every mark explained, per-image scores from frozen-feature
evaluators.

Records are synthetic fixtures (per-image scores from a seeded generator), never the
committed results.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from harness.leaderboard import presentation as bp
from harness.leaderboard.cells import EXCLUDES_MARK
from harness.leaderboard.groups import group_records
from harness.leaderboard.index import index_page
from harness.leaderboard.rows import Run, base_label
from harness.leaderboard.writing import INDEX
from harness.evaluation.ap import HEADLINE, score_split
from harness.evaluation.stage import metrics_dict
from harness.api.interfaces import EvalMetrics

from .test_leaderboard import table1_line
from .test_leaderboard_intervals import _cell, board_of, toy_record

MARKS = ("†", "‡", "§", EXCLUDES_MARK)


def with_knn(pair, value: float):
    """The record with a frozen-feature ``knn`` entry (no per-image scores, as committed
    records have)."""
    record, scores = pair
    record["metrics"]["knn"] = metrics_dict(EvalMetrics(
        headline=f"map_{'pooled' if 'resnet18' in record['run_id'] else 'pool5'}",
        formula="f", value=value, breakdown={"pool5": value}, protocol={},
        details={"headline_layer": "pool5"}))
    return record, scores


def mixed_world_pairs():
    """The core rows on worlds 0-2 (two seeds), a k sweep row, a single run without scores
    and a single run with them on world 0 only: rows on two world sets."""
    pairs = []
    for w in (0, 1, 2):
        for s in (0, 1):
            pairs.append(toy_record("random", seed=s, world=w, quality=0.3))
            pairs.append(toy_record("supervised", seed=s, world=w, quality=2.5))
            pairs.append(toy_record("sound", seed=s, world=w, quality=1.0 + 0.8 * w))
            pairs.append(toy_record("sound", seed=s, world=w, quality=0.9, rep="sound_texture"))
    pairs += [toy_record("sound", seed=s, world=0, quality=2.0, k=30) for s in (0, 1)]
    pairs.append(toy_record("sound", seed=0, world=0, quality=1.2, k=50, with_scores=False))
    pairs.append(toy_record("sound", seed=0, world=0, quality=1.1, k=10))       # a single run
    return [with_knn(p, 20.0 + i % 7) for i, p in enumerate(pairs)]


@pytest.fixture(scope="module")
def mixed_board():
    pairs = mixed_world_pairs()
    return pairs, board_of(pairs)


def _tables(page: str):
    """(heading, [row cells]) of every markdown table on the page (header rows left out)."""
    heading, rows, out = "", [], []
    for line in page.splitlines() + [""]:
        if line.startswith("#"):
            heading = line
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            out.append((heading, rows[2:]))
            rows = []
    return out


def test_a_board_of_rows_on_different_world_sets_has_no_table_mixing_them(mixed_board):
    pairs, board = mixed_board
    worlds: dict[str, set[int]] = {}
    for record, _ in pairs:
        label = base_label(Run.from_record(record))
        worlds.setdefault(label, set()).add(record["downstream"]["world_seed"])
    assert {frozenset(v) for v in worlds.values()} == {frozenset({0, 1, 2}), frozenset({0})}
    checked = 0
    for name, page in board.markdown.items():
        for heading, rows in _tables(page):
            # one run per line, or one world per column: no mean over worlds to mix
            if heading in ("## Runs",) or heading.endswith("per world"):
                continue
            sets = set()
            for cells in rows:
                label = cells[0] if name != INDEX else cells[1]
                if label not in worlds and " · its " not in label:
                    continue             # a reported row, or an index link
                own = (frozenset(int(x) for x in re.findall(r"\d+", label.split(" · its ")[1]))
                       if " · its " in label else frozenset(worlds[label]))
                sets.add(own)
            assert len(sets) <= 1, f"{name} {heading}: rows on world sets {sets}"
            checked += bool(sets)
    assert checked >= 6       # Table 1 (x2), Table 2 (x4), the knn headline (x2), the index
    page = next(t for n, t in board.markdown.items() if "krahenbuhl" in n)
    # the world-0 rows sit beside the core rows' world-0 runs, recomputed on world 0 alone
    k30 = table1_line(page, "sound: mfcc k=30 alexnet")
    core0 = table1_line(page, "random init alexnet · its world 0 runs")
    head0 = np.mean([r["metrics"]["voc07_linear"]["value"] for r, _ in pairs
                     if r["config"]["init"] == "random" and r["downstream"]["world_seed"] == 0])
    assert _cell(core0[2])[0] == round(float(head0), 1)
    assert k30[5].endswith("]") and "%" in k30[5]          # a recovered share with its interval


def test_every_mark_used_on_a_page_is_explained_on_that_page(mixed_board):
    _, board = mixed_board
    used_somewhere = set()
    for name, page in board.markdown.items():
        tables = "\n".join(l for l in page.splitlines() if l.startswith("|"))
        prose = "\n".join(l for l in page.splitlines() if not l.startswith("|"))
        for mark in MARKS:
            if mark in tables:
                used_somewhere.add(mark)
                assert re.search(rf"(^|[.(;] ?){re.escape(mark)}[ :]", prose, re.M), (
                    f"{name}: {mark} is used but not explained")
    # the fixture exercises the marks a reviewer meets: runs only and test images only
    assert {"†", "‡"} <= used_somewhere


def test_the_headline_is_the_declared_comparison_even_when_another_row_is_larger(mixed_board):
    pairs, board = mixed_board
    index = board.markdown[INDEX]
    section = index.split("## Headline")[1].split("\n## ")[0]
    lines = [l for l in section.splitlines() if l.startswith("| [")]
    labels = [[c.strip() for c in l.strip("|").split("|")][1] for l in lines]
    assert labels == ["sound: mfcc k=15 alexnet", "sound: sound_texture k=15 alexnet"]
    # k = 30 is the largest sound row here, and is not the headline
    page = next(t for n, t in board.markdown.items() if "krahenbuhl" in n)
    k30 = _cell(table1_line(page, "sound: mfcc k=30 alexnet")[2])[0]
    k15 = _cell(table1_line(page, "sound: mfcc k=15 alexnet")[2])[0]
    assert k30 > k15 and "k=30" not in section
    # its Head − random is the mean over worlds of the per-world differences
    head = {}
    for r, _ in pairs:
        c = r["config"]
        if c["init"] == "random" or (c["init"] == "sound" and c["repr"]["name"] == "mfcc"
                                     and c["labeler"]["params"].get("k", 15) == 15):
            head.setdefault((c["init"], r["downstream"]["world_seed"]), []).append(
                r["metrics"]["voc07_linear"]["value"])
    gap = np.mean([np.mean(head["sound", w]) - np.mean(head["random", w]) for w in (0, 1, 2)])
    cells = [c.strip() for c in lines[0].strip("|").split("|")]
    mean, lo, hi, _ = _cell(cells[5])
    assert mean == round(float(gap), 1) and lo < mean < hi and cells[3] == "worlds 0, 1, 2"
    assert cells[2] == "oracle"                 # the toy world preset of the row's clips
    each = [np.mean(head["sound", w]) - np.mean(head["random", w]) for w in (0, 1, 2)]
    assert cells[4] == " / ".join(f"{g:+.1f}" for g in each)
    assert bp.HEADLINE.matches(Run.from_record(pairs[2][0]))


def test_intervals_over_worlds_resample_the_worlds(mixed_board):
    """The sound row's gain differs by world (its quality grows with the world): the
    interval that resamples worlds is wider than one over the same worlds' runs and images
    alone, and a single world's interval resamples no world."""
    _, board = mixed_board
    pairs = mixed_world_pairs()
    group = next(g for g in group_records([r for r, _ in pairs],
                                             {r["run_id"]: s for r, s in pairs if s})
                 if not g.key.evaluator)
    (worlds, full), *_ = bp.views(group)
    sound = next(r for r in full.rows if r.label == "sound: mfcc k=15 alexnet")
    base = full.baseline(sound, "random")
    over = bp.gain(full, sound, base, "voc07_linear", sorted(worlds))
    assert over.covers == "worlds, runs and test images"
    fixed = full.difference(sound, base, "voc07_linear")       # runs and images, worlds fixed
    assert fixed.mean == pytest.approx(over.mean)
    assert over.hi - over.lo > fixed.hi - fixed.lo
    for w in worlds:
        assert bp.gain(full, sound, base, "voc07_linear", [w]).covers == "runs and test images"
    draws = bp.world_draws(sorted(worlds))
    assert draws.shape == (bp.bootstrap.REPLICATES, 3) and len(np.unique(draws)) == 3


@pytest.mark.parametrize("name", ["linear_probe", "voc07_svm", "knn"])
def test_frozen_feature_evaluators_return_the_headline_layers_test_scores(name, voc_root,
                                                                          tmp_path):
    from harness_plugins.evaluators.frozen_features import KNN, LinearProbe, VOC07SVM

    from .test_frozen_features import context, model

    ev = {"linear_probe": LinearProbe(weight_decays=(1e-3,), n_jobs=1),
          "voc07_svm": VOC07SVM(costs=(1.0,), folds=2, n_jobs=1),
          "knn": KNN(k=5, n_jobs=1)}[name]
    metrics = ev.evaluate(model(), voc_root, context(tmp_path))
    scores = metrics.test_scores
    assert scores is not None and scores.split == "test" and scores.trained_on == "trainval"
    assert score_split(scores).mean(HEADLINE) == pytest.approx(metrics.value, abs=1e-9)
    assert metrics.details["n_test"] == len(scores.image_ids)
    # a record holding them passes the leaderboard's check of every figure against them
    from harness.results.verify import record_disagreements

    record = {"metrics": {name: metrics_dict(metrics)}, "test_scores": {"evaluators": [name]}}
    assert record_disagreements(record, {name: scores}) == []


# --------------------------------------------------------------------------- what the sound told
def test_sound_rows_show_nmi_with_runs_interval_and_unscored_records_read_not_recorded():
    pairs = []
    for s in range(3):
        pairs.append(toy_record("random", seed=s, world=0, quality=0.3))
        pairs.append(toy_record("supervised", seed=s, world=0, quality=2.5))
        record, scores = toy_record("sound", seed=s, world=0, quality=1.5)
        record["labels"] = {"diagnostics": {"truth": {"objects": {"nmi": 0.30 + 0.05 * s,
                                                                  "purity": 0.5 + 0.1 * s}}}}
        pairs.append((record, scores))
        pairs.append(toy_record("sound", seed=s, world=0, quality=1.2, rep="sound_texture"))
    page = page_of_krahenbuhl(board_of(pairs))
    section = page.split("## How much the sound told")[1].split("\n## ")[0]
    mfcc = next(l for l in section.splitlines() if l.startswith("| sound: mfcc"))
    cells = [c.strip() for c in mfcc.strip("|").split("|")]
    mean, lo, hi = (float(x) for x in re.findall(r"[\d.]+", cells[1])[:3])
    assert mean == pytest.approx(0.35, abs=5e-4) and lo < mean < hi and cells[3] == "3 of 3"
    texture = next(l for l in section.splitlines() if l.startswith("| sound: sound_texture"))
    assert "not recorded" in texture and "0 of 3" in texture
    assert "not zero" in section


def page_of_krahenbuhl(board) -> str:
    return next(t for n, t in board.markdown.items() if "krahenbuhl" in n)


def test_the_labels_stage_scores_toy_clusters_against_the_clips_true_objects(tmp_path):
    from harness.pipeline.labels_stage import clip_truth
    from harness.data.toy import generate_clips

    dataset = generate_clips(tmp_path / "toy", 12, 0, jobs=1, progress=False)
    rows = np.array([0, 2, 5, 11])
    truth = clip_truth(dataset, rows)
    assert set(truth) == {"objects", "sounding", "scene"}
    assert truth["objects"] == [dataset.clips[i].extra["objects"] for i in rows]


def test_toy_pages_say_what_the_networks_are_and_which_layers_head_trains(mixed_board):
    _, board = mixed_board
    page = page_of_krahenbuhl(board)
    section = page.split("## The networks")[1].split("\n## ")[0]
    assert '"Head" trains fc6-fc8' in section and "`fc_units` 1024 (default 4096)" in section
    assert "BatchNorm" in section and "64 px" in section
    assert "upper bound" not in page and "in-domain reference" in page


# --------------------------------------------------------------------------- protocol history
def test_protocol_notes_are_shown_and_change_no_fingerprint(tmp_path):
    import dataclasses

    from harness.results.protocol import read_frozen, write_frozen

    frozen = read_frozen("leaderboards/PROTOCOL.json")
    assert frozen.notes                                   # the committed history is there
    bare = dataclasses.replace(frozen, notes=[])
    assert bare.fingerprints() == frozen.fingerprints()
    index = index_page([], frozen)
    for note in frozen.notes:
        assert f"- {note}" in index
    assert "### History of the protocol" not in index_page([], bare)
    # notes round-trip through the file and leave the fingerprints as they were
    path = tmp_path / "PROTOCOL.json"
    write_frozen(path, dataclasses.replace(frozen, notes=["another note"]))
    assert read_frozen(path).fingerprints() == frozen.fingerprints()
    assert read_frozen(path).notes == ["another note"]


def test_a_new_freeze_keeps_the_protocols_history(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from harness.cli import app
    from harness.results.protocol import read_frozen

    shutil.copy("leaderboards/PROTOCOL.json", tmp_path / "PROTOCOL.json")
    before = read_frozen(tmp_path / "PROTOCOL.json").notes
    result = CliRunner().invoke(app, ["leaderboard", "--freeze", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert before and read_frozen(tmp_path / "PROTOCOL.json").notes == before
