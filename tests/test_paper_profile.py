"""The paper profile's pretext settings: the linear warm-up, frames stored larger than the
crop, `harness run` reaching them, and the time a CPU run announces before it starts.

The toy profile must keep every setting (and so every cache key and leaderboard row) it
had: the tests below check that the additions leave it alone.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.api.errors import BadInputError
from harness.data.clips import ClipDataset
from harness.data.framestore import store_path
from harness.pretext.config import PretrainConfig
from harness.pretext.train import WarmOneCycleLR, pretrain
from harness.profiles import cpu_estimate, get_profile, pretrain_settings

REPO = Path(__file__).resolve().parents[1]
#: PretrainConfig fields the pipeline leaves out of a record's ``config.pretrain``
UNRECORDED = {"out", "progress", "data", "labels", "checkpoint_seconds", "profile", "overrides"}


@pytest.fixture(scope="module")
def clips(make_labelled_clips):
    """40 colour-coded 32-px clips and their class labels."""
    return make_labelled_clips(40)


#: every test here runs torch on one thread (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def _schedules(warmup: int, total: int = 20):
    """(learning rates, first betas) of each step of a one-cycle and a warmed-up one."""
    runs = []
    for cls, extra in ((torch.optim.lr_scheduler.OneCycleLR, {}),
                       (WarmOneCycleLR, {"warmup_steps": warmup})):
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=0.01)
        sched = cls(opt, max_lr=0.01, total_steps=total, pct_start=0.3, **extra)
        lrs, betas = [], []
        for _ in range(total):
            lrs.append(opt.param_groups[0]["lr"])
            betas.append(opt.param_groups[0]["betas"][0])
            opt.step()
            sched.step()
        runs.append((np.array(lrs), np.array(betas)))
    return runs


def test_warm_up_scales_the_first_steps_linearly_then_follows_the_one_cycle():
    (plain, plain_betas), (warm, warm_betas) = _schedules(warmup=4)
    steps = np.arange(4)
    np.testing.assert_allclose(warm[:4], plain[:4] * (steps + 1) / 5, rtol=1e-12)
    np.testing.assert_array_equal(warm[4:], plain[4:])
    np.testing.assert_array_equal(warm_betas, plain_betas)   # momentum cycles as before
    assert np.all(np.diff(warm[:6]) > 0)                     # still rising into the cycle


def test_a_warm_schedule_resumed_from_its_state_gives_the_same_rates():
    def fresh():
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=0.01)
        return opt, WarmOneCycleLR(opt, warmup_steps=6, max_lr=0.01, total_steps=12,
                                   pct_start=0.3)

    opt, sched = fresh()
    rates = []
    for step in range(12):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        if step == 2:                         # what a checkpoint after 3 steps holds
            state = (opt.state_dict(), sched.state_dict())
    opt2, sched2 = fresh()
    opt2.load_state_dict(state[0])
    sched2.load_state_dict(state[1])
    resumed = []
    for _ in range(3, 12):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    np.testing.assert_allclose(resumed, rates[3:], rtol=1e-12)


def test_the_toy_profile_keeps_the_pretext_settings_its_records_were_made_with():
    """Every toy record's ``config.pretrain`` has exactly the keys a toy run writes now, and
    the profile's values: no added setting changes a toy run's cache key or board row."""
    settings = pretrain_settings(get_profile("toy"), "alexnet")
    assert settings["warmup_steps"] == 0 and settings["store_size"] is None
    config = PretrainConfig(backbone="alexnet", labels=Path("l.npy"), data=Path("d"),
                            out=Path("o"), **settings).to_json()
    recorded = [json.loads(p.read_text())["config"]["pretrain"]
                for p in sorted((REPO / "leaderboards" / "results").glob("*.json"))]
    recorded = [r for r in recorded if r and r["backbone"] == "alexnet"]
    assert recorded, "no committed toy record with a pretext stage"
    for pre in recorded:
        assert set(config) - UNRECORDED == set(pre)
        for key in ("epochs", "batch_size", "lr", "image_size", "store_size", "pct_start",
                    "weight_decay", "val_fraction", "backbone_params"):
            assert config[key] == pre[key], key


def test_warm_up_is_recorded_only_when_used():
    base = PretrainConfig(backbone="alexnet", labels=Path("l.npy"), data=Path("d"),
                          out=Path("o"))
    assert "warmup_steps" not in base.to_json()
    assert replace(base, warmup_steps=5).to_json()["warmup_steps"] == 5
    with pytest.raises(BadInputError, match="warm-up steps"):
        replace(base, warmup_steps=-1)


def test_the_paper_profile_stores_frames_larger_than_its_crops():
    paper = get_profile("paper")
    settings = pretrain_settings(paper, "alexnet")
    assert settings["store_size"] > settings["image_size"] == paper.image_size
    assert settings["lr"] == paper.pretext_lr and settings["warmup_steps"] == paper.pretext_warmup_steps


def test_a_store_smaller_than_the_crop_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="store size 48 is smaller than the image size 64"):
        PretrainConfig(backbone="alexnet", labels=tmp_path, data=tmp_path, out=tmp_path,
                       image_size=64, store_size=48)


def test_pretraining_crops_from_a_store_of_the_store_size_and_warms_up(clips, tmp_path):
    """A run with store 40 for 32-px crops decodes a 40-px store, and its first epoch ends
    on the warmed-up rate of :class:`WarmOneCycleLR` (fewer steps than the warm-up)."""
    data, labels = clips
    config = PretrainConfig(backbone="timm:test_resnet", labels=labels, data=data,
                            out=tmp_path / "run", epochs=2, batch_size=16, image_size=32,
                            store_size=40, warmup_steps=4, val_fraction=0.25, lr=3e-3,
                            device="cpu", precision="fp32", progress=False)
    pretrain(config)
    store = np.load(store_path(ClipDataset(data), 40), mmap_mode="r")
    assert store.shape == (40, 40, 40, 3)
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n") if r]
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    steps = recorded["steps_per_epoch"]
    assert recorded["config"]["warmup_steps"] == 4 and 2 <= steps < 4
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
    sched = WarmOneCycleLR(opt, warmup_steps=4, max_lr=3e-3, total_steps=2 * steps,
                           pct_start=0.3)
    for _ in range(steps):
        opt.step()
        sched.step()
    assert rows[0]["lr"] == pytest.approx(sched.get_last_lr()[0], rel=1e-12)


def test_run_passes_the_store_size_and_compile_and_says_how_long_on_a_cpu(monkeypatch,
                                                                          tmp_path):
    import harness.pipeline.run
    from harness.pipeline.config import RunResult

    seen = []
    monkeypatch.setattr(harness.pipeline.run, "run", lambda config, echo=print:
                        seen.append(config) or RunResult({}, tmp_path / "r.json"))
    runner = CliRunner()
    outputs = []
    for argv in (["run", "--profile", "paper", "--device", "cpu"],
                 ["run", "--profile", "paper", "--device", "cpu", "--store-size", "288",
                  "--compile"],
                 ["run", "--device", "cpu"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    default, given, toy = seen
    assert default.store_size is None and default.compile is False
    assert pretrain_settings(default.resolved_profile(), "alexnet")["store_size"] == 256
    assert given.compile is True and given.overrides()["pretext_store_size"] == 288
    assert pretrain_settings(given.resolved_profile(), "alexnet")["store_size"] == 288
    # the paper profile's 1,000 generated clips, announced before the pipeline is called
    first = outputs[0].splitlines()[0]
    assert first.startswith("paper profile on CPU: about ") and "x 900 training clips" in first
    assert "on CPU" not in outputs[2]                   # the toy profile runs without a word


def _seconds(line: str) -> float:
    number, unit = re.search(r"about ([\d.]+) (days|hours|minutes|seconds)", line).groups()
    return float(number) * {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}[unit]


def test_the_cpu_estimate_is_training_images_over_the_declared_rate():
    paper = get_profile("paper")
    line = cpu_estimate(paper, "alexnet", clips=55000, threads=1)
    train = round(55000 * 0.9)
    assert line.startswith("paper profile on CPU: about ") and line.endswith("use a GPU or --epochs")
    assert f"{paper.pretext_epochs} epochs x {train:,} training clips" in line
    expected = paper.pretext_epochs * train / paper.cpu_images_per_s["alexnet"]
    assert _seconds(line) == pytest.approx(expected, rel=0.05)
    assert _seconds(cpu_estimate(paper, "alexnet", clips=55000, threads=2)) == pytest.approx(
        expected / 2, rel=0.05)
    assert _seconds(cpu_estimate(paper, "alexnet", clips=55000, epochs=2, threads=1)) == \
        pytest.approx(expected / 100, rel=0.05)
    assert "not measured for timm:x" in cpu_estimate(paper, "timm:x", clips=100, threads=1)
    assert cpu_estimate(get_profile("toy"), "alexnet", clips=1000) is None


def test_a_cpu_pretrain_of_the_paper_profile_says_how_long_and_goes_on(clips, tmp_path):
    data, labels = clips
    common = ["--backbone", "timm:test_resnet", "--labels", str(labels), "--data", str(data),
              "--epochs", "1", "--batch-size", "16", "--image-size", "32", "--device", "cpu",
              "--precision", "fp32", "--threads", "1", "--no-progress"]
    result = CliRunner().invoke(app, ["pretrain", "--profile", "paper", "--store-size", "32",
                                      "--out", str(tmp_path / "run"), *common])
    assert result.exit_code == 0, result.output
    estimate = [line for line in result.output.splitlines()
                if line.startswith("paper profile on CPU: ")]
    assert len(estimate) == 1 and "1 epochs x 36 training clips" in estimate[0]
    assert (tmp_path / "run" / "last.pt").is_file()         # the run went on
    toy = CliRunner().invoke(app, ["pretrain", "--out", str(tmp_path / "toy"), *common])
    assert toy.exit_code == 0, toy.output
    assert "on CPU" not in toy.output


def _doc_commands(path: Path) -> list[list[str]]:
    """The ``harness`` command lines of a markdown file's bash blocks (after ``torchrun
    ... -m`` or ``.venv/bin/``), continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "harness" in words:
                start = words.index("harness")
                if start == 0 or words[start - 1] == "-m" or words[start - 1].endswith("/"):
                    commands.append(words[start + 1:])
            elif words and words[0].endswith("/harness"):
                commands.append(words[1:])
    return commands


def test_every_command_the_real_data_guide_shows_parses_with_the_cli():
    """Each ``harness`` line of docs/real-data.md names a command and options the CLI has
    (parsed by typer's click without running anything)."""
    import typer.main

    group = typer.main.get_command(app)
    commands = _doc_commands(REPO / "docs" / "real-data.md")
    assert len(commands) >= 8
    for argv in commands:
        cmd, name, rest, ctx = group, "harness", list(argv), None
        while hasattr(cmd, "get_command"):                  # a command group
            ctx = cmd.context_class(cmd, info_name=name, parent=ctx)
            name, rest = rest[0], rest[1:]
            cmd = cmd.get_command(ctx, name)
            assert cmd is not None, f"docs/real-data.md: no command {name!r} in {argv}"
        cmd.make_context(name, rest, parent=ctx)           # raises on an unknown option
