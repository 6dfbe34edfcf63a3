"""The board's view of the toy world presets: realistic rows beside the oracle's against the
same random-init runs, what the realistic audio keeps, and the single-knob comparison.

Every record is a synthetic fixture built here (per-image scores drawn from a seeded
generator, the realistic rows made weaker on purpose), never a committed result.
"""

from __future__ import annotations

import statistics

import pytest

from harness.leaderboard import toy_worlds
from harness.leaderboard.groups import group_records
from harness.leaderboard.plots import render
from harness.leaderboard.writing import INDEX

from .test_leaderboard_intervals import board_of, toy_record

REALISTIC = {"preset": "realistic"}
NO_OFFSCREEN = {"preset": "realistic", "offscreen_prob": 0.0}
NO_BEDS = {"preset": "realistic", "music_prob": 0.0, "narration_prob": 0.0}


def _with_nmi(pair, nmi):
    record, scores = pair
    record["labels"]["diagnostics"] = {"truth": {"objects": {"nmi": nmi, "purity": 0.5}}}
    return record, scores


def world_pairs(*, realistic=True, knobs=True):
    """Random, supervised and oracle rows on worlds 0-2 (two seeds); the realistic row,
    weaker, on the same worlds; and the two single-knob variants on world 0 (three seeds)."""
    pairs = []
    for w in (0, 1, 2):
        for s in (0, 1):
            pairs.append(toy_record("random", seed=s, world=w, quality=0.3))
            pairs.append(toy_record("supervised", seed=s, world=w, quality=3.0))
            pairs.append(_with_nmi(toy_record("sound", seed=s, world=w, quality=2.0),
                                   0.6 + 0.01 * s))
            if realistic:
                pairs.append(_with_nmi(toy_record("sound", seed=s, world=w, quality=1.0,
                                                  tag=1, toy_world=REALISTIC), 0.3 + 0.01 * s))
    if knobs:
        for s in (0, 1, 2):
            pairs.append(toy_record("sound", seed=s, world=0, quality=1.6, tag=2,
                                    toy_world=NO_OFFSCREEN))
            pairs.append(toy_record("sound", seed=s, world=0, quality=1.2, tag=3,
                                    toy_world=NO_BEDS))
    return pairs


@pytest.fixture(scope="module")
def group():
    pairs = world_pairs()
    (g,) = group_records([r for r, _ in pairs], {r["run_id"]: s for r, s in pairs})
    return g


def _row(group, label):
    (row,) = [r for r in group.rows if r.label == label]
    return row


def test_each_world_preset_is_its_own_row_against_the_one_random_row(group):
    labels = [r.label for r in group.rows]
    assert labels.count("random init alexnet") == 1
    base = _row(group, "random init alexnet")
    for label in ("sound: mfcc k=15 alexnet", "sound: mfcc k=15 alexnet · realistic audio",
                  "sound: mfcc k=15 alexnet · realistic audio with offscreen_prob=0.0",
                  "sound: mfcc k=15 alexnet · realistic audio with narration_prob=0.0, "
                  "music_prob=0.0"):
        assert group.baseline(_row(group, label), "random") is base, label


def test_what_the_realistic_audio_keeps_is_computed_from_the_paired_world_means(group):
    rows = toy_worlds.survival_rows(group)
    assert [r[:2] for r in rows] == [["mfcc", "Head"], ["mfcc", "All"]]
    oracle = _row(group, "sound: mfcc k=15 alexnet")
    real = _row(group, "sound: mfcc k=15 alexnet · realistic audio")
    base = _row(group, "random init alexnet")
    for (_, panel, worlds, o_cell, r_cell, kept_cell, kept_ci, diff_ci) in rows:
        ev = group.panels[panel]
        keys = [w for w, _, _ in group.worlds]             # by world seed
        gains_o = [oracle.world_mean(ev, w) - base.world_mean(ev, w) for w in keys]
        gains_r = [real.world_mean(ev, w) - base.world_mean(ev, w) for w in keys]
        assert worlds == "worlds 0, 1, 2"
        assert o_cell == " / ".join(f"{g:+.1f}" for g in gains_o)
        assert r_cell == " / ".join(f"{g:+.1f}" for g in gains_r)
        assert kept_cell == " / ".join(f"{100 * r / o:.0f}%" for o, r in zip(gains_o, gains_r))
        # the realistic fixture is weaker: it keeps part of the gain, and the paired
        # difference is negative with an interval around it
        kept = 100 * statistics.fmean(gains_r) / statistics.fmean(gains_o)
        assert kept_ci.startswith(f"{kept:.0f}% [") and 0 < kept < 100
        diff = statistics.fmean(gains_r) - statistics.fmean(gains_o)
        assert diff_ci.startswith(f"{diff:+.1f} [") and diff < 0


def test_the_single_knob_rows_are_on_the_world_they_share_with_their_intervals(group):
    worlds, chosen = toy_worlds.knob_rows(group)
    assert group.world_names(worlds) == "world 0"
    assert [name for name, _ in chosen] == [
        "oracle", "realistic", "realistic with narration_prob=0.0, music_prob=0.0",
        "realistic with offscreen_prob=0.0"]
    lines = toy_worlds.knob_lines(group, "knobs.png")
    table = [line for line in "\n".join(lines).splitlines() if line.startswith("| sound:")]
    assert len(table) == 4 and "![knobs.png](knobs.png)" in lines
    (real_line,) = [t for t in table if "(reference)" in t]
    assert "(reference)" in real_line and "0.305 [" in real_line   # NMI of seeds 0, 1
    assert "†" not in "\n".join(table)     # every row has per-image test scores
    (no_off,) = [t for t in table if "offscreen_prob" in t]
    assert "not recorded" in no_off and no_off.rstrip(" |").endswith("3")


def test_the_board_shows_both_presets_in_the_headline_and_draws_the_knob_plot():
    board = board_of(world_pairs())
    index = board.markdown[INDEX]
    headline = index.split("## Headline")[1].split("## What the realistic audio keeps")[0]
    assert "| sound: mfcc k=15 alexnet · realistic audio " in headline
    assert "| realistic " in headline and "| oracle " in headline
    assert "offscreen_prob" not in headline            # a variant is not a headline row
    assert "## What the realistic audio keeps" in index
    (page,) = [t for n, t in board.markdown.items() if n != INDEX]
    assert "## The realistic audio one knob at a time" in page
    (name,) = [n for n, (kind, _) in board.plots.items() if kind == "knobs"]
    assert f"![{name}]({name})" in page and page.count(f"({name})") == 1
    kind, data = board.plots[name]
    png = render(kind, data)
    assert png.startswith(b"\x89PNG")
    assert [v is not None for v in data["values"]["Head"]] == [True] * 4


def test_an_oracle_only_board_has_neither_section():
    board = board_of(world_pairs(realistic=False, knobs=False))
    assert "audio keeps" not in board.markdown[INDEX]
    assert not any(kind == "knobs" for kind, _ in board.plots.values())
    assert all("one knob at a time" not in t for t in board.markdown.values())


def test_the_page_names_each_preset_of_the_clips_and_every_kind_of_machine():
    """Rows made on another kind of CPU are named under the page's title (a seed repeats
    its figures only on its own kind), and the clips of each preset are told apart."""
    import copy

    from harness.leaderboard.provenance import datasets_line, machines_line

    pairs = world_pairs(knobs=False)
    for record, _ in pairs:
        if (record["config"].get("overrides") or {}).get("toy_world"):
            record["environment"] = copy.deepcopy(record["environment"])
            record["environment"]["machine"]["cpu_model"] = "Xeon"
            record["environment"]["device"]["torch_threads"] = 1
            record["dataset"] = {**record["dataset"], "fingerprint": "e" * 64}
    (g,) = group_records([r for r, _ in pairs], {r["run_id"]: s for r, s in pairs})
    line = machines_line(g)
    assert line.startswith("Machines: Xeon, 1 torch thread (sound: mfcc k=15 alexnet · "
                           "realistic audio); every other run on ?.")
    assert "`eeeeeeee` (realistic audio)" in datasets_line(g)
    (same,) = group_records([r for r, _ in world_pairs(realistic=False, knobs=False)])
    assert machines_line(same) == "Machine: every run on ?."
