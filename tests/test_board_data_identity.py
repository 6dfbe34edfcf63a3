"""The leaderboard keeps apart what differs: pretext clips, downstream folders, settings.

Every record is a synthetic fixture built here (in the shape ``harness run`` writes with
``--clips`` and ``--voc``), never a committed result.
"""

from __future__ import annotations

import re

import numpy as np

from harness.leaderboard import identity as board_identity
from harness.runtime.cache import hash_params as digest
from harness.leaderboard.board import build_leaderboard
from harness.leaderboard.cells import EXCLUDES_MARK, EXCLUDES_NOTE
from harness.leaderboard.groups import group_records
from harness.leaderboard.reported import ONLY_REPORTED, SOME_REPORTED
from harness.leaderboard.rows import _strip_seeds
from harness.leaderboard.writing import INDEX
from harness.results import records
from harness.evaluation.ap import HEADLINE, SplitScores, score_split
from harness.leaderboard.identity import VOC2007_SPLITS
from harness.leaderboard.paper_tables import VOC_CLASSES

from .test_leaderboard import table1_line
from .test_leaderboard_intervals import toy_record
from .test_records import FIXED_CODE, FIXED_ENV, config, metrics

#: what only a toy-world page may say
TOY_WORDING = ("world seeds", "made before the test split was sealed", "What this toy table",
               "Toy-world", "toy VOC", "world")


def real_record(init: str, *, seed: int = 0, clips: str = "a", voc: str = "e",
                sizes: tuple[int, int] = VOC2007_SPLITS, head: float = 40.0,
                all_: float = 50.0, overrides: dict | None = None,
                eval_params: dict | None = None, scores: dict | None = None,
                created: str = "2026-01-01T00:00:00.000000+00:00") -> dict:
    """A run on an ingested clip dataset (fingerprint ``clips`` * 64) evaluated on a real
    VOC folder (``voc`` * 64) whose splits hold ``sizes`` images, as the evaluators record
    them (the downstream section of such a run records no split sizes)."""
    cfg = {**config(init, seed=seed), "world_seed": 0, "overrides": dict(overrides or {})}
    for entry in cfg["evaluators"].values():
        entry["params"].update(eval_params or {})
    if scores is not None:
        entries = {name: _entry(s) for name, s in scores.items()}
    else:
        entries = {"voc07_linear": metrics(head), "voc07_full": metrics(all_)}
    for name, m in entries.items():
        m["protocol"].update({"train_split": "trainval", "test_split": "test"})
        m["protocol"]["overrides"] = sorted((eval_params or {}))
        m["details"].update({"n_train": sizes[0], "n_test": sizes[1]})
    ids = [f"clip{i:03d}" for i in range(14)]
    return records.build_record(
        config=cfg,
        downstream={"kind": "voc07", "fingerprint": voc * 64, "path": f"/data/voc-{voc}"},
        metrics=entries,
        dataset=None if init == "random" else {
            "kind": "clips", "fingerprint": clips * 64, "n_clips": len(ids), "clip_ids": ids,
            "path": f"/data/clips-{clips}"},
        labels={"sizes": [1]} if init == "sound" else None,
        pretext={"val_acc": 0.5} if init != "random" else None,
        environment=FIXED_ENV, code=FIXED_CODE, created=created,
        test_scores=scores)


def _entry(scores: SplitScores) -> dict:
    report = score_split(scores)
    return {"headline": "map", "formula": "f", "value": report.mean(),
            "breakdown": dict(report.ap[HEADLINE]),
            "protocol": {"preset": "krahenbuhl", "head_init": "pretext"}, "details": {}}


def pages(board) -> dict[str, str]:
    """The board's table pages (not the index)."""
    return {name: text for name, text in board.markdown.items() if name != INDEX}


def the_page(board) -> str:
    """The Table-1 page of a board with one table."""
    (page,) = [t for t in pages(board).values() if "## Table 1" in t]
    return page


# --------------------------------------------------------------------------- pretext clips
def test_runs_on_two_clip_datasets_are_two_rows_and_neither_supersedes_the_other():
    early = real_record("sound", clips="a", head=30.0, created="2026-01-01T00:00:00+00:00")
    late = real_record("sound", clips="b", head=44.0, created="2026-02-01T00:00:00+00:00")
    random = real_record("random", head=20.0)
    (group,) = group_records([early, late, random])
    sound = [row for row in group.rows if row.first.init == "sound"]
    assert len(sound) == 2 and all(row.superseded == 0 for row in sound)
    assert sorted(row.stat("voc07_linear").mean for row in sound) == [30.0, 44.0]
    page = the_page(build_leaderboard([early, late, random]))
    assert table1_line(page, "sound: mfcc k=15 alexnet [clips aaaaaaaa]")[2] == "30.0"
    assert table1_line(page, "sound: mfcc k=15 alexnet [clips bbbbbbbb]")[2] == "44.0"
    # both measured against the one random-init row, which trains on no clips
    assert table1_line(page, "sound: mfcc k=15 alexnet [clips aaaaaaaa]")[7] == "+10.0"
    assert "superseded" not in page
    assert "`aaaaaaaa` (14 clips, folder `clips-a`)" in page
    assert "`bbbbbbbb` (14 clips, folder `clips-b`)" in page


def test_supervised_rows_on_two_clip_datasets_are_each_compared_with_their_own():
    recs = [real_record("random", head=20.0),
            real_record("supervised", clips="a", head=60.0),
            real_record("supervised", clips="b", head=40.0),
            real_record("sound", clips="a", head=40.0),
            real_record("sound", clips="b", head=30.0)]
    page = the_page(build_leaderboard(recs))
    # (40 - 20) / (60 - 20) on clips a, (30 - 20) / (40 - 20) on clips b
    assert table1_line(page, "sound: mfcc k=15 alexnet [clips aaaaaaaa]")[5] == "50%"
    assert table1_line(page, "sound: mfcc k=15 alexnet [clips bbbbbbbb]")[5] == "50%"


def test_the_toy_worlds_own_clips_still_pool_into_one_row():
    """Each toy world draws its own clips: a toy row pools its worlds as before."""
    pairs = []
    for world in (0, 1):
        record, scores = toy_record("sound", seed=0, world=world, quality=1.0)
        record["dataset"]["fingerprint"] = f"{world + 10:x}" * 64
        pairs.append((record, scores))
    (group,) = group_records([r for r, _ in pairs])
    (row,) = group.rows
    assert len(row.runs) == 2 and row.superseded == 0 and row.label == "sound: mfcc k=15 alexnet"
    # the row's identity is its configuration's, as it was before clips were part of it
    config = {k: v for k, v in pairs[0][0]["config"].items() if k != "device"}
    assert row.first.row_key == digest(_strip_seeds(config))


# --------------------------------------------------------------------------- downstream
def test_a_folder_without_voc2007_splits_gets_its_own_name_no_reported_rows_no_toy_text():
    recs = [real_record("sound", sizes=(40, 30), head=35.0),
            real_record("random", sizes=(40, 30), head=25.0)]
    board = build_leaderboard(recs)
    (name,) = [n for n, t in pages(board).items() if "## Table 1" in t]
    page = board.markdown[name]
    assert name.startswith("voc-eeeeeeee_") and "# voc-eeeeeeee · preset krahenbuhl" in page
    assert "40 trainval and 30 test images" in page and "not PASCAL VOC2007's" in page
    table = page.split("## Table 1")[1].split("\n## ")[0]
    assert "reported" not in table and "Owens" not in page and "ImageNet" not in page
    assert ONLY_REPORTED not in page and SOME_REPORTED not in page
    for text in pages(board).values():
        for words in TOY_WORDING:
            assert words.lower() not in text.lower(), words
    # the index lists it under its own name, never as voc07
    assert "voc-eeeeeeee" in board.markdown[INDEX]
    assert "| voc07 " not in board.markdown[INDEX]


def test_only_voc2007_sized_splits_are_tabled_beside_the_papers_rows():
    recs = [real_record("sound", head=50.0), real_record("random", head=29.0)]
    page = the_page(build_leaderboard(recs))
    assert "# voc07 · preset krahenbuhl" in page
    assert ("PASCAL VOC2007 (`eeeeeeee`, folder `voc-e`; 5,011 trainval and 4,952 test "
            "images)") in page
    assert table1_line(page, "Ambient sound (Owens et al. 2016/2018)")[1] == "reported"
    assert table1_line(page, "sound: mfcc k=15 alexnet")[1] == "measured"
    # the reported rows are said to be reported, the measured ones measured
    assert ONLY_REPORTED not in page and SOME_REPORTED in page
    for words in TOY_WORDING:
        assert words.lower() not in page.lower(), words


def test_a_real_folders_record_holds_its_split_sizes(tmp_path):
    """``harness run --voc`` records the folder's split sizes, so that a run whose
    evaluators record no counts of their own is still told VOC2007 or not."""
    from harness.pipeline.run import downstream_identity

    voc = tmp_path / "VOCdevkit" / "VOC2007"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True)
    (voc / "ImageSets/Main/trainval.txt").write_text("".join(f"{i:06d}\n" for i in range(7)))
    (voc / "ImageSets/Main/test.txt").write_text("".join(f"{i:06d}\n" for i in range(7, 12)))
    down = downstream_identity("voc07", tmp_path / "VOCdevkit", "e" * 64, None)
    assert (down["n_trainval"], down["n_test"]) == (7, 5)
    record = real_record("sound", sizes=VOC2007_SPLITS)
    record["downstream"].update(n_trainval=7, n_test=5)     # the folder's own count wins
    assert board_identity.downstream_name(record) == "voc-eeeeeeee"


def test_two_real_folders_are_two_tables():
    recs = [real_record("sound", voc="e", head=50.0),
            real_record("sound", voc="c", head=20.0, sizes=(40, 30))]
    names = sorted(n for n, t in pages(build_leaderboard(recs)).items() if "## Table 1" in t)
    assert len(names) == 2
    assert names[0].startswith("voc-cccccccc_") and names[1].startswith("voc07_")


# --------------------------------------------------------------------------- overrides
def test_every_override_is_named_on_the_page():
    short = real_record("sound", overrides={"pretext_epochs": 3},
                        eval_params={"iterations": 20})
    plain = real_record("sound", clips="a", seed=1)
    board = build_leaderboard([short, plain])
    page = the_page(board)
    assert "`pretext_epochs=3`" in page
    assert "`voc07_linear.iterations=20`" in page and "`voc07_full.iterations=20`" in page
    # two configurations: the one without overrides says so
    assert re.search(r"^- sound: mfcc k=15 alexnet \[cfg \w+\]: none$", page, re.M)
    only = the_page(build_leaderboard([short]))
    assert ("Overrides: every run changed the profile's values or the evaluators' default "
            "parameters: `pretext_epochs=3`, `voc07_full.iterations=20`, "
            "`voc07_linear.iterations=20`.") in only
    none = the_page(build_leaderboard([plain]))
    assert "(no override)" in none


# --------------------------------------------------------------------------- intervals
N_TEST = 40


def last_ranked(quality: int) -> dict[str, SplitScores]:
    """Scores on a 40-image test set where class c's only positive is image c, scored
    below every negative: the AP of each class is 1/40 as measured, and at least that in
    every image resample that draws its positive (drawn k times: k/40), so nearly every
    resample sits above the measured mAP. ``quality`` varies the negatives' scores."""
    rng = np.random.default_rng([5, quality])
    labels = np.zeros((N_TEST, len(VOC_CLASSES)), dtype=np.int8)
    labels[np.arange(len(VOC_CLASSES)), np.arange(len(VOC_CLASSES))] = 1
    out = {}
    for i, name in enumerate(("voc07_linear", "voc07_full")):
        scores = rng.normal(size=labels.shape) + quality
        scores[labels == 1] = -100.0
        out[name] = SplitScores("test", "trainval", tuple(f"{j:06d}" for j in range(N_TEST)),
                                VOC_CLASSES, scores, labels)
    return out


INTERVAL = re.compile(r"([+-]?\d+\.\d) \[([+-]?\d+\.\d), ([+-]?\d+\.\d)\]([^\s|)]*)")


def test_every_printed_interval_contains_its_point_or_carries_the_explained_mark():
    recs, scores = [], {}
    for init, seeds in (("random", (0,)), ("sound", (0, 1, 2))):
        for seed in seeds:
            s = last_ranked(seed)
            record = real_record(init, seed=seed, sizes=(60, N_TEST), scores=s)
            recs.append(record)
            scores[record["run_id"]] = s
    for seed in (0, 1):        # runs without per-image scores: intervals over runs only
        recs.append(real_record("supervised", seed=seed, sizes=(60, N_TEST), head=9.0 + seed,
                                all_=8.0 + seed))
    board = build_leaderboard(recs, scores=scores)
    marked = 0
    for name, text in board.markdown.items():
        for m in INTERVAL.finditer(text):
            point, lo, hi = (float(x) for x in m.groups()[:3])
            if lo <= point <= hi:
                continue
            assert EXCLUDES_MARK in m[4], f"{name}: {m[0]} excludes its point unmarked"
            assert EXCLUDES_NOTE in text, f"{name}: {m[0]} marked but not explained"
            marked += 1
    # the single run's interval sits below its point: the case is exercised
    cells = table1_line(the_page(board), "random init alexnet")
    assert EXCLUDES_MARK in cells[2] and EXCLUDES_MARK in cells[3]
    assert marked >= 2
    # the mark is never put on an interval that holds its point strictly inside
    for text in board.markdown.values():
        for m in INTERVAL.finditer(text):
            point, lo, hi = (float(x) for x in m.groups()[:3])
            assert not (EXCLUDES_MARK in m[4] and lo < point < hi), m[0]
