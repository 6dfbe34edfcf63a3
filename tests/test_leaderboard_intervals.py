"""The leaderboard's bootstrap intervals: the AP under resampling, pairing, worlds, plots.

Every record is a synthetic fixture built here (per-image scores drawn from a seeded
generator), never a committed result.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.leaderboard import bootstrap
from harness.leaderboard.board import build_leaderboard
from harness.leaderboard.groups import group_records
from harness.leaderboard.writing import INDEX
from harness.results import records
from harness.evaluation.ap import HEADLINE, SplitScores, score_split

from .test_leaderboard import table1_line
from .test_records import FIXED_CODE, FIXED_ENV, config

CLASSES = tuple(f"c{i}" for i in range(4))


def world_labels(world: int, n: int) -> np.ndarray:
    """The test labels of a world: the same for every run on it (1 / 0 / -1 difficult)."""
    rng = np.random.default_rng([7, world])
    labels = (rng.random((n, len(CLASSES))) < 0.3).astype(np.int8)
    labels[:2] = 1
    labels[2, 0] = -1
    return labels


def run_scores(world: int, key: tuple, quality: float, n: int) -> SplitScores:
    """Scores that separate positives by ``quality`` standard deviations, plus noise."""
    labels = world_labels(world, n)
    rng = np.random.default_rng([11, world, *key])
    scores = quality * (labels == 1) + rng.normal(size=labels.shape)
    return SplitScores("test", "trainval", tuple(f"{i:06d}" for i in range(n)), CLASSES,
                       scores, labels)


def entry(scores: SplitScores) -> dict:
    report = score_split(scores)
    return {"headline": "map", "formula": "f", "value": report.mean(),
            "breakdown": dict(report.ap[HEADLINE]),
            "protocol": {"preset": "krahenbuhl", "head_init": "pretext"}, "details": {}}


def toy_record(init: str, *, seed: int, world: int, quality: float, n: int = 60,
               with_scores: bool = True, rep: str = "mfcc", k: int = 15, tag: int = 0,
               backbone: str = "alexnet", toy_world: dict | None = None):
    """A record of a run on toy world ``world`` (and its per-image scores); ``toy_world``
    is its clips' preset and knobs, as ``config.overrides.toy_world`` records them."""
    key = ({"random": 1, "supervised": 2, "sound": 3}[init], seed, tag, k, len(rep),
           len(backbone))
    scores = {"voc07_linear": run_scores(world, (*key, 0), quality, n),
              "voc07_full": run_scores(world, (*key, 1), quality + 0.5, n)}
    cfg = {**config(init, seed=seed, k=k, repr_name=rep, backbone=backbone), "world_seed": world}
    if toy_world:
        cfg["overrides"] = {**(cfg.get("overrides") or {}), "toy_world": toy_world}
    if cfg["pretrain"]:                       # as in real records: the recipe names its net
        cfg["pretrain"] = {**cfg["pretrain"], "backbone": backbone}
    record = records.build_record(
        config=cfg,
        downstream={"kind": "toy-voc", "fingerprint": f"{world + 1:x}" * 64, "path": None,
                    "world_seed": world, "test_seed": 20261202 + world, "voc_seed": world + 9,
                    "world_version": 1, "n_trainval": 100, "n_test": n, "toy_config": "c" * 64},
        metrics={name: entry(s) for name, s in scores.items()},
        dataset=None if init == "random" else {
            "kind": "toy", "fingerprint": "f" * 64, "n_clips": 1, "clip_ids": ["a"],
            "path": None},
        pretext=None if init == "random" else {"val_acc": 0.5},
        labels={"sizes": [1]} if init == "sound" else None,
        environment=FIXED_ENV, code=FIXED_CODE,
        created=f"2026-01-01T00:00:{seed:02d}.{world:06d}+00:00",
        test_scores=scores if with_scores else None)
    return record, (scores if with_scores else None)


def board_of(pairs):
    recs = [r for r, _ in pairs]
    return build_leaderboard(recs, scores={r["run_id"]: s for r, s in pairs if s})


def page_of(board) -> str:
    (page,) = [t for n, t in board.markdown.items() if n != INDEX]
    return page


def _cell(cell: str):
    from .test_leaderboard import _interval

    return _interval(cell)


# --------------------------------------------------------------------------- the AP
def test_weighted_ap_is_sklearns_ap_with_the_counts_as_weights():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    n = 80
    for trial in range(25):
        y = (rng.random(n) < 0.25).astype(np.int8)
        y[rng.random(n) < 0.1] = -1
        y[0] = 1
        s = np.round(rng.normal(size=n), 1)         # many exact ties
        counts = rng.multinomial(n, np.full(n, 1 / n), size=6)
        got = bootstrap.weighted_ap(y, s, np.ascontiguousarray(counts.T))
        keep = y >= 0
        yy = y[keep].astype(int)
        for b in range(len(counts)):
            w = counts[b, keep]
            if (w * yy).sum() == 0:
                assert np.isnan(got[b])
                continue
            want = average_precision_score(yy, s[keep] - 1e-5 * yy, sample_weight=w)
            assert got[b] == pytest.approx(want, abs=1e-12)


def test_weighted_map_with_unit_weights_is_the_recorded_map():
    scores = run_scores(0, (1,), 1.0, 60)
    ones = np.ones((60, 1), dtype=np.int16)
    assert bootstrap.weighted_map(scores, ones)[0] == pytest.approx(
        score_split(scores).mean(), abs=1e-9)


# --------------------------------------------------------------------------- the table
def core_pairs(worlds=(0, 1), seeds=(0, 1, 2)):
    pairs = []
    for w in worlds:
        for s in seeds:
            pairs.append(toy_record("random", seed=s, world=w, quality=0.3))
            pairs.append(toy_record("supervised", seed=s, world=w, quality=2.5))
            pairs.append(toy_record("sound", seed=s, world=w, quality=1.5))
    return pairs


def test_rows_pool_worlds_and_show_paired_intervals_over_runs_and_images():
    pairs = core_pairs()
    board = board_of(pairs)
    page = page_of(board)
    assert "world seeds: 0, 1; test seeds: 20261202, 20261203" in page
    sound = table1_line(page, "sound: mfcc k=15 alexnet")
    assert sound[4] == "6"                                    # 2 worlds x 3 seeds, one row
    mean, lo, hi, mark = _cell(sound[2])
    values = [r["metrics"]["voc07_linear"]["value"] for r, _ in pairs
              if r["config"]["init"] == "sound"]
    assert mean == round(float(np.mean(values)), 1) and lo < mean < hi and mark == ""
    gap = _cell(sound[7])
    assert gap[1] > 0                     # sound is well above random here: CI excludes 0
    assert "resamples runs only" not in page
    assert "resamples, in this order, the table's 2 worlds" in page     # worlds, runs, images
    # the per-world table: one column per world, the difference to random on that world
    per_world = page.split("## Per world")[1].split("\n## ")[0]
    assert "world 0" in per_world and "world 1" in per_world
    line = next(l for l in per_world.splitlines() if l.startswith("| sound: mfcc"))
    assert line.count("(+") == 2 and "3/3" in line
    # ... with the paired interval on that world, which excludes 0 here
    for cell in line.split("|")[2:4]:
        gap = _cell(cell.split("(", 1)[1].rstrip(") "))
        assert 0 < gap[1] < gap[0] < gap[2]


def test_identical_rows_differ_by_exactly_zero_because_they_share_image_resamples():
    """Two rows whose runs are the same scores (one run per world) differ by 0 in every
    replicate only if both are scored on the same resampled images."""
    pairs = []
    for w in (0, 1):
        a, sa = toy_record("sound", seed=0, world=w, quality=1.0, rep="mfcc", tag=1)
        pairs.append((a, sa))
        b = records.build_record(
            **{k: a[k] for k in ("downstream", "metrics", "dataset", "timings", "labels",
                                 "pretext", "environment", "code", "created")},
            config={**a["config"], "repr": {"name": "sound_texture", "params": {}}},
            test_scores=sa)
        pairs.append((b, sa))
    group = group_records([r for r, _ in pairs], {r["run_id"]: s for r, s in pairs})[0]
    row_a, row_b = group.rows
    diff = group.difference(row_a, row_b, "voc07_linear")
    assert diff.covers == "runs and test images" or diff.covers == "test images"
    assert diff.mean == pytest.approx(0) and diff.lo == pytest.approx(0)
    assert diff.hi == pytest.approx(0)
    assert group.interval(row_a, "voc07_linear").hi > group.interval(row_a, "voc07_linear").lo


def test_single_runs_and_rows_without_scores_are_marked():
    pairs = [toy_record("random", seed=s, world=0, quality=0.3, with_scores=False)
             for s in range(3)]
    pairs += [toy_record("sound", seed=0, world=0, quality=1.5)]                 # one run
    pairs += [toy_record("sound", seed=0, world=0, quality=1.5, rep="sound_texture",
                         with_scores=False)]                                      # bare
    page = page_of(board_of(pairs))
    assert _cell(table1_line(page, "random init alexnet")[2])[3] == "†"
    assert _cell(table1_line(page, "sound: mfcc k=15 alexnet")[2])[3] == "‡"
    bare = table1_line(page, "sound: sound_texture k=15 alexnet")[2]
    assert "[" not in bare and bare == f"{float(bare):.1f}"
    for note in ("resamples runs only", "test images only", "nothing to resample"):
        assert note in page
    # random lacks scores: the gap falls back to runs only for both rows
    assert _cell(table1_line(page, "sound: mfcc k=15 alexnet")[7])[3] == "†"


def test_runs_on_different_worlds_without_scores_get_an_interval_over_worlds_only():
    """Runs are resampled within each world: one run per world and no per-image scores
    leave only the worlds to resample, and the interval is marked as missing the rest."""
    pairs = [toy_record("random", seed=0, world=w, quality=0.3 + 0.1 * w, with_scores=False)
             for w in range(2)]
    page = page_of(board_of(pairs))
    mean, lo, hi, mark = _cell(table1_line(page, "random init alexnet")[2])
    assert lo <= mean <= hi and lo < hi and mark == "†"
    assert "but not test images" in page


def test_one_run_per_world_is_marked_as_covering_test_images_only():
    """Three worlds with one run each: runs are resampled within a world, so the interval
    says nothing about another seed and must not claim to."""
    pairs = core_pairs(worlds=(0, 1, 2), seeds=(0,))
    page = page_of(board_of(pairs))
    sound = table1_line(page, "sound: mfcc k=15 alexnet")
    assert sound[4] == "3" and _cell(sound[2])[3] == "‡" and _cell(sound[7])[3] == "‡"
    assert "a single run on each world" in page
    # a second seed on one world makes the interval cover runs as well
    page = page_of(board_of(pairs + [toy_record("sound", seed=1, world=0, quality=1.5)]))
    assert _cell(table1_line(page, "sound: mfcc k=15 alexnet")[2])[3] == ""


def test_plots_draw_intervals_and_bare_single_runs():
    pairs = core_pairs(worlds=(0,), seeds=(0, 1))
    pairs += [toy_record("sound", seed=s, world=0, quality=1.0, k=5) for s in (0, 1)]
    pairs += [toy_record("sound", seed=0, world=0, quality=1.2, k=30)]
    board = board_of(pairs)
    _, data = next(v for n, v in board.plots.items() if n.endswith("k-sweep.png"))
    points = {p["k"]: p for p in data["series"][0]["points"]["Head"]}
    assert points[30]["lo"] is None and points[30]["n"] == 1          # a bare marker
    assert points[5]["lo"] < points[5]["mean"] < points[5]["hi"]
    assert "95% bootstrap intervals" in data["title"]
    from harness.leaderboard import plots

    assert plots.render("k_sweep", data)[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_compare_rows_on_the_worlds_they_all_ran():
    """k = 15 and the baselines ran worlds 0 and 1, k = 5 and ResNet-18 world 0 only: each
    plot draws every figure on world 0, where world 1 (an easy one here) cannot tilt it."""
    pairs = []
    for w, easy in ((0, 0.0), (1, 2.0)):
        for s in (0, 1):
            pairs.append(toy_record("random", seed=s, world=w, quality=0.3 + easy))
            pairs.append(toy_record("supervised", seed=s, world=w, quality=2.5 + easy))
            pairs.append(toy_record("sound", seed=s, world=w, quality=1.5 + easy))
    pairs += [toy_record("sound", seed=s, world=0, quality=1.0, k=5) for s in (0, 1)]
    pairs += [toy_record(init, seed=s, world=0, quality=q, backbone="resnet18")
              for s in (0, 1) for init, q in (("random", 0.2), ("supervised", 2.0),
                                              ("sound", 1.2))]
    head = {}
    for r, _ in pairs:
        cfg = r["config"]
        key = (cfg["init"], cfg["labeler"]["params"]["k"] if cfg["labeler"] else None,
               cfg["backbone"]["name"], cfg["world_seed"])
        head.setdefault(key, []).append(r["metrics"]["voc07_linear"]["value"])
    board = board_of(pairs)

    _, sweep = next(v for n, v in board.plots.items() if n.endswith("k-sweep.png"))
    (series,) = [s for s in sweep["series"] if "alexnet" in s["label"]]
    points = {p["k"]: p for p in series["points"]["Head"]}
    assert points[15]["mean"] == pytest.approx(np.mean(head["sound", 15, "alexnet", 0]))
    assert points[15]["n"] == 2 and points[15]["lo"] < points[15]["mean"] < points[15]["hi"]
    random_line = next(b for b in sweep["baselines"] if b["init"] == "random")
    assert random_line["values"]["Head"] == pytest.approx(
        np.mean(head["random", None, "alexnet", 0]))
    assert "on world 0, which every row ran" in sweep["title"]

    _, compare = next(v for n, v in board.plots.items() if n.endswith("backbone.png"))
    assert compare["settings"] == [f"{name}\n(world 0)"
                                   for name in ("supervised", "random init", "mfcc k=15")]
    bars = compare["values"]["Head"]
    for setting, key in zip(compare["settings"], (("supervised", None), ("random", None),
                                                  ("sound", 15))):
        for backbone in ("alexnet", "resnet18"):
            assert bars[f"{setting}|{backbone}"]["mean"] == pytest.approx(
                np.mean(head[(*key, backbone, 0)]))
    # the table still shows each row over all its runs
    page = page_of(board)
    sound = table1_line(page, "sound: mfcc k=15 alexnet")
    assert _cell(sound[2])[0] == round(float(np.mean(
        head["sound", 15, "alexnet", 0] + head["sound", 15, "alexnet", 1])), 1)


def test_intervals_are_reproducible_bytes():
    pairs = core_pairs(worlds=(0,), seeds=(0, 1))
    a, b = board_of(pairs), board_of(list(reversed(pairs)))
    assert a.markdown == b.markdown
    assert {n: plots_data for n, (_, plots_data) in a.plots.items()} == {
        n: plots_data for n, (_, plots_data) in b.plots.items()}


def test_image_bootstrap_interval_is_centred_on_the_observed_map_despite_aps_resampling_bias():
    """AP on resampled images is biased upwards; the basic interval reflects the
    percentiles about the observed figure so that the interval brackets it."""
    import numpy as np

    from harness.leaderboard import bootstrap
    from harness.evaluation.ap import SplitScores

    rng = np.random.default_rng(3)
    n, c = 400, 5
    labels = (rng.random((n, c)) < 0.2).astype(np.int8)
    scores = labels + rng.normal(0, 1.0, (n, c))
    sc = SplitScores(split="test", trained_on="trainval", image_ids=tuple(map(str, range(n))),
                     class_names=tuple(f"c{i}" for i in range(c)), scores=scores, labels=labels)
    observed = bootstrap.weighted_map(sc, np.ones((n, 1), dtype=np.int16))[0]
    reps = bootstrap.weighted_map(sc, bootstrap.ImageResamples("w", n, 400).weights)
    assert reps.mean() > observed                      # the bias the interval corrects
    lo, hi = bootstrap.interval(observed, reps, images=True)
    assert lo < observed < hi
    p_lo, p_hi = bootstrap.percentile_interval(reps)
    assert hi - lo == pytest.approx(p_hi - p_lo)          # same width, reflected about it
    assert (lo + hi) / 2 < observed < (p_lo + p_hi) / 2


def test_differences_and_shares_are_taken_on_the_worlds_both_rows_ran():
    """A row missing a world its baseline ran is compared on the shared worlds only (and
    marked), so a baseline's extra world cannot shift "row − random"."""
    pairs = [toy_record("random", seed=0, world=w, quality=q)
             for w, q in ((0, 0.3), (1, 0.3), (2, 2.0))]          # world 2: an easy world
    pairs += [toy_record("supervised", seed=0, world=w, quality=2.5) for w in (0, 1, 2)]
    pairs += [toy_record("sound", seed=0, world=w, quality=1.5) for w in (0, 1)]
    head = {(r["config"]["init"], r["config"]["world_seed"]): r["metrics"]["voc07_linear"]["value"]
            for r, _ in pairs}
    shared = np.mean([head["sound", w] - head["random", w] for w in (0, 1)])
    pooled = np.mean([head["sound", w] for w in (0, 1)]) - np.mean(
        [head["random", w] for w in (0, 1, 2)])
    assert round(shared, 1) != round(pooled, 1)                   # the test can tell them apart
    page = page_of(board_of(pairs))
    sound = table1_line(page, "sound: mfcc k=15 alexnet")
    mean, lo, hi, _ = _cell(sound[7])
    assert not sound[7].endswith("§") and mean == round(float(shared), 1) and lo < mean < hi
    share = np.mean([head["sound", w] - head["random", w] for w in (0, 1)]) / np.mean(
        [head["supervised", w] - head["random", w] for w in (0, 1)])
    assert sound[5].startswith(f"{100 * share:.0f}% [")
    # the baselines appear beside it with their runs on the sound row's worlds only
    assert "random init alexnet · its worlds 0, 1 runs" in page
    # the supervised row ran every world random ran: no mark
    assert not table1_line(page, "supervised alexnet")[7].endswith("§")
