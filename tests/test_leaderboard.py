"""``harness leaderboard``: grouping, statistics, determinism, --check, reported rows.

Every record is a synthetic fixture written to tmp_path by the test itself.
"""

from __future__ import annotations

import statistics

import pytest
from typer.testing import CliRunner

from harness.leaderboard import identity as board_identity
from harness.leaderboard.board import build_leaderboard
from harness.leaderboard.cells import DASH
from harness.leaderboard.groups import group_records
from harness.leaderboard.reported import ONLY_REPORTED, SOME_REPORTED
from harness.leaderboard.rows import headline_ap
from harness.leaderboard.writing import INDEX, MARKER, check_leaderboard, write_leaderboard
from harness.leaderboard import paper_tables
from harness.results import records
from harness.cli import app
from harness.api.errors import HarnessError

from .test_records import make

runner = CliRunner()


def write(results, *recs):
    for r in recs:
        records.write_record(r, results)


def table1_line(page: str, label: str) -> list[str]:
    """The cells of the Table 1 row whose method is ``label``."""
    section = page.split("## Table 1")[1].split("\n## ")[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{section}")


@pytest.fixture
def table1_records():
    """3 seeds each of random, supervised, and MFCC k=15 on the toy world."""
    heads = {"random": [27.0, 28.0, 29.5], "supervised": [44.0, 45.0, 46.0],
             "sound": [33.0, 34.0, 35.5]}
    alls = {"random": [36.0, 36.5, 37.0], "supervised": [51.0, 52.0, 52.5],
            "sound": [42.0, 42.5, 43.5]}
    return [make(init, seed=s, head=heads[init][s], all_=alls[init][s])
            for init in heads for s in range(3)], heads, alls


def _interval(cell: str) -> tuple[float, float, float, str]:
    """(mean, low, high, mark) of a cell ``34.2 [33.0, 35.5]†``."""
    import re

    m = re.fullmatch(r"([+-]?[\d.]+) \[([+-]?[\d.]+), ([+-]?[\d.]+)\](\S*)", cell)
    assert m, cell
    return float(m[1]), float(m[2]), float(m[3]), m[4]


def test_table1_mean_interval_runs_and_recovered_share(table1_records):
    recs, heads, alls = table1_records
    board = build_leaderboard(recs)
    pages = [n for n in board.markdown if n != INDEX]
    assert len(pages) == 1
    page = board.markdown[pages[0]]
    # the fixture's per-class APs average exactly to the requested value
    cells = table1_line(page, "sound: mfcc k=15 alexnet")
    assert cells[1] == "measured"
    mean, lo, hi, mark = _interval(cells[2])
    assert mean == round(statistics.fmean(heads["sound"]), 1)
    # no per-image scores: the interval resamples the 3 runs only, so it lies within them
    assert min(heads["sound"]) - 0.05 <= lo < mean < hi <= max(heads["sound"]) + 0.05
    assert mark == "†" and "resamples runs only" in page
    assert "± " not in page
    assert cells[4] == "3"
    mean = {k: statistics.fmean(v) for k, v in heads.items()}
    share = (mean["sound"] - mean["random"]) / (mean["supervised"] - mean["random"])
    assert cells[5] == f"{100 * share:.0f}%"
    mean_all = {k: statistics.fmean(v) for k, v in alls.items()}
    share_all = ((mean_all["sound"] - mean_all["random"])
                 / (mean_all["supervised"] - mean_all["random"]))
    assert cells[6] == f"{100 * share_all:.0f}%"
    gap = _interval(cells[7])
    assert gap[0] == round(mean["sound"] - mean["random"], 1) and gap[1] < gap[0] < gap[2]
    assert _interval(cells[8])[0] == round(mean_all["sound"] - mean_all["random"], 1)
    assert table1_line(page, "random init alexnet")[5] == "(baseline)"
    assert table1_line(page, "random init alexnet")[7] == "+0.0"
    assert table1_line(page, "supervised alexnet")[2].startswith("45.0 [")


def test_recovered_share_math():
    assert paper_tables.recovered_share(52.3, 29.0, 78.9) == pytest.approx(0.4669, abs=1e-4)
    assert paper_tables.recovered_share(29.0, 29.0, 78.9) == 0
    assert paper_tables.recovered_share(78.9, 29.0, 78.9) == 1
    assert paper_tables.recovered_share(40.0, 30.0, 30.0) is None
    assert paper_tables.recovered_share(None, 30.0, 40.0) is None
    owens = paper_tables.table1_row(paper_tables.OWENS_METHOD)
    head, all_ = paper_tables.reported_recovered_share(owens)
    assert round(100 * head) == 47 and round(100 * all_) == 60


def test_recovered_share_needs_matching_baselines():
    """A ResNet row is not measured against AlexNet's random and supervised rows."""
    recs = [make("random", head=20.0), make("supervised", head=40.0),
            make("sound", head=30.0, backbone="resnet18")]
    page = next(t for n, t in build_leaderboard(recs).markdown.items() if n != INDEX)
    assert table1_line(page, "sound: mfcc k=15 resnet18")[5] == DASH


def test_a_newer_run_with_the_same_seed_supersedes_the_older():
    old = make("sound", seed=0, head=30.0, created="2025-01-01T00:00:00+00:00")
    new = make("sound", seed=0, head=32.0, created="2025-02-01T00:00:00+00:00")
    groups = group_records([new, old])
    (row,) = groups[0].rows
    assert row.superseded == 1 and row.stat("voc07_linear").mean == pytest.approx(32.0)


def test_seed_parameters_do_not_split_rows():
    """Seeds inside plugin params (k-means seed, pretrain seed) are still 'seeds'."""
    groups = group_records([make("sound", seed=s) for s in range(3)])
    assert len(groups[0].rows) == 1 and groups[0].rows[0].seeds == [0, 1, 2]


def voc2007(record: dict) -> dict:
    """``record`` with a downstream folder of PASCAL VOC2007's split sizes."""
    trainval, test = board_identity.VOC2007_SPLITS
    record["downstream"].update({"n_trainval": trainval, "n_test": test})
    return record


def test_toy_and_voc07_are_never_mixed():
    recs = [make("sound", downstream="toy-voc", head=30.0),
            voc2007(make("sound", downstream="voc07", head=50.0)),
            voc2007(make("random", downstream="voc07", head=29.0))]
    board = build_leaderboard(recs)
    toy = [t for n, t in board.markdown.items() if n.startswith("toy-voc")]
    voc = [t for n, t in board.markdown.items() if n.startswith("voc07")]
    assert len(toy) == 1 and len(voc) == 1
    assert table1_line(toy[0], "sound: mfcc k=15 alexnet")[2] == "30.0"
    assert table1_line(voc[0], "sound: mfcc k=15 alexnet")[2] == "50.0"
    assert "random init" not in toy[0] and "random init alexnet" in voc[0]
    for page, kind in ((toy[0], "toy-voc"), (voc[0], "voc07")):
        for r in recs:
            assert (r["run_id"] in page) == (r["downstream"]["kind"] == kind)
    # reported paper rows sit beside measured ones only for real VOC07
    assert "reported" in voc[0] and "reported" not in toy[0].split("## Table 1")[1]
    # beside the reported rows: how their AP formula may differ from the measured one
    assert "trapezoidal" in voc[0] and "trapezoidal" in board.markdown[INDEX]
    assert "sklearn_pessimistic" in voc[0]
    # measured rows stand in that table too: it never calls all of its rows reported
    assert ONLY_REPORTED not in voc[0] and SOME_REPORTED in voc[0]
    assert ONLY_REPORTED in board.markdown[INDEX]
    # the toy page says what makes sound informative there, from the generator's numbers
    from harness.data.toy import ToyConfig

    cfg = ToyConfig()
    assert f"probability {cfg.sound_prob}" in toy[0]
    assert f"{cfg.object_gain_db[0]:g}-{cfg.object_gain_db[1]:g} dB" in toy[0]
    assert "not ImageNet" in toy[0] and "What this toy table" not in voc[0]


def test_presets_and_profiles_are_separate_tables():
    recs = [make("sound", preset="krahenbuhl"), make("sound", preset="deepcluster"),
            make("sound", profile="paper")]
    assert len([n for n in build_leaderboard(recs).markdown if n != INDEX]) == 3


def test_reported_rows_present_and_marked_with_zero_records():
    board = build_leaderboard([])
    assert list(board.markdown) == [INDEX] and board.plots == {}
    index = board.markdown[INDEX]
    assert "No result records yet" in index
    assert paper_tables.CITATION in index
    for row in paper_tables.table1() + paper_tables.table2():
        line = next(l for l in index.splitlines() if l.startswith(f"| {row.method} "))
        assert "| reported |" in line
    assert "frozen-feature" in index  # the Table 2 caveat
    assert "47%" in index and "60%" in index  # the target, computed from the data


def test_reported_table2_means_match_the_readme_caveat():
    rows = {r.method: r for r in paper_tables.table2()}
    assert round(rows["Ambient sound"].mean, 1) == 45.7
    assert round(rows["Sound texture statistics (Mahadev and Lu)"].mean, 1) == 53.5
    assert len(paper_tables.table1()) == 14 and len(rows) == 11


def test_paper_classes_match_voc_module():
    voc = pytest.importorskip("harness.data.voc")
    assert tuple(voc.CLASSES) == paper_tables.VOC_CLASSES


def test_headline_ap_picks_the_kind_matching_map():
    good = {c: 50.0 for c in paper_tables.VOC_CLASSES}
    other = {c: 10.0 for c in paper_tables.VOC_CLASSES}
    assert headline_ap({"map": 50.0, "ap": {"voc07_11pt": other, "sklearn": good}}) == good
    assert headline_ap({"map": 50.0, "ap": good}) == good
    with pytest.raises(HarnessError, match="cannot tell"):
        headline_ap({"map": 30.0, "ap": {"a": good, "b": other}})


def sweep_records():
    recs = [make("random", seed=s, head=27.0 + s) for s in range(2)]
    recs += [make("supervised", seed=s, head=44.0 + s) for s in range(2)]
    for k in (5, 15, 30):
        for rep in ("mfcc", "sound_texture"):
            recs += [make("sound", seed=s, k=k, repr_name=rep, head=30 + k / 10 + s)
                     for s in range(2)]
    recs += [make("sound", seed=s, backbone="resnet18", head=31.0 + s) for s in range(2)]
    return recs


def test_sweep_plots_exist_when_records_hold_a_sweep():
    board = build_leaderboard(sweep_records())
    names = sorted(board.plots)
    assert len(names) == 3
    assert [n for n in names if not n.endswith(("-backbone.png", "-k-sweep.png", "-repr.png"))] == []
    kind, data = next(v for n, v in board.plots.items() if n.endswith("k-sweep.png"))
    assert kind == "k_sweep" and len(data["series"]) == 2
    assert [p["k"] for p in data["series"][0]["points"]["Head"]] == [5, 15, 30]
    assert {b["init"] for b in data["baselines"]} == {"random", "supervised"}
    _, repr_data = next(v for n, v in board.plots.items() if n.endswith("repr.png"))
    assert repr_data["variants"] == ["mfcc", "sound_texture"]
    assert repr_data["settings"] == ["alexnet k=5", "alexnet k=15", "alexnet k=30"]
    page = next(t for n, t in board.markdown.items() if n != INDEX)
    for name in names:
        assert f"]({name})" in page
    # a single configuration gives no plot
    assert build_leaderboard([make("sound")]).plots == {}


def test_output_is_deterministic_bytes(tmp_path):
    recs = sweep_records()
    a, b = tmp_path / "a", tmp_path / "b"
    write_leaderboard(build_leaderboard(recs), a)
    write_leaderboard(build_leaderboard(list(reversed(recs))), b)
    files_a = sorted(p.name for p in a.iterdir())
    assert files_a == sorted(p.name for p in b.iterdir())
    assert any(n.endswith(".png") for n in files_a)
    for name in files_a:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_cli_writes_then_check_passes_then_detects_staleness(tmp_path):
    results, out = tmp_path / "results", tmp_path / "board"
    write(results, *sweep_records()[:6])
    args = ["leaderboard", "--results", str(results), "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0

    # a new record makes the committed files stale
    write(results, make("sound", seed=7, head=39.0))
    res = runner.invoke(app, [*args, "--check"])
    assert res.exit_code == 1 and "out of date" in res.output
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0

    # a hand edit is stale too
    page = next(p for p in out.glob("*.md") if p.name != "README.md")
    page.write_text(page.read_text() + "edited\n")
    assert runner.invoke(app, [*args, "--check"]).exit_code == 1


def test_check_flags_missing_and_leftover_files(tmp_path):
    results, out = tmp_path / "results", tmp_path / "board"
    recs = sweep_records()
    write(results, *recs)
    args = ["leaderboard", "--results", str(results), "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    png = sorted(out.glob("*.png"))[0]
    data = png.read_bytes()
    png.unlink()
    res = runner.invoke(app, [*args, "--check"])
    assert res.exit_code == 1 and "missing" in res.output
    png.write_bytes(data)
    # removing the sweep's records leaves generated files behind: stale, then cleaned up
    for p in results.glob("*.json"):
        if "-sound-" in p.name:
            p.unlink()
    res = runner.invoke(app, [*args, "--check"])
    assert res.exit_code == 1 and "no longer produced" in res.output
    assert runner.invoke(app, args).exit_code == 0
    assert not list(out.glob("*.png"))
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0


def test_cli_with_no_records_and_bad_records(tmp_path):
    results, out = tmp_path / "results", tmp_path / "board"
    results.mkdir()
    args = ["leaderboard", "--results", str(results), "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert (out / "README.md").read_text().startswith(MARKER)
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0
    (results / "bad.json").write_text('{"schema": "harness-record/1"}')
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "bad.json" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["leaderboard", "--results", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope" in res.output


def test_hand_written_files_are_left_alone(tmp_path):
    out = tmp_path / "board"
    out.mkdir()
    (out / "NOTES.md").write_text("my notes\n")
    write_leaderboard(build_leaderboard([]), out)
    assert (out / "NOTES.md").read_text() == "my notes\n"
    assert check_leaderboard(build_leaderboard([]), out) == []


def test_a_binary_labeler_row_names_its_bits():
    rec = make("sound")
    rec["config"]["labeler"] = {"name": "pca_binary", "params": {"bits": 15, "seed": 0}}
    page = next(t for n, t in build_leaderboard([rec]).markdown.items() if n != INDEX)
    assert "sound: mfcc pca_binary bits=15 alexnet" in page and "k=15" not in page
    # ... and so does the representation plot's setting, MFCC beside texture statistics
    other = make("sound", repr_name="sound_texture", head=35.0)
    other["config"]["labeler"] = rec["config"]["labeler"]
    _, data = next(v for n, v in build_leaderboard([rec, other]).plots.items()
                   if n.endswith("repr.png"))
    assert data["settings"] == ["alexnet bits=15 pca_binary"]


def test_another_evaluator_gets_a_generic_table_and_voc07_pages_are_unchanged():
    from .test_records import metrics

    plain = make("sound")
    both = make("sound", seed=1)
    both["metrics"]["probe"] = {**metrics(30.0), "headline": "top1", "formula": "accuracy"}
    board = build_leaderboard([plain, both])
    generic = [n for n in board.markdown if "eval-probe" in n]
    assert len(generic) == 1
    text = board.markdown[generic[0]]
    assert "top1" in text and "accuracy" in text and "sound: mfcc k=15 alexnet" in text
    assert "## Other evaluators" in board.markdown[INDEX]
    assert "## Other evaluators" not in build_leaderboard([plain]).markdown[INDEX]
