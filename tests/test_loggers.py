"""Loggers, the fifth plugin kind: TensorBoard and CSV files of a run, read back.

Tiny runs only (timm's test network on 48 colour-coded 32-px clips, a few epochs), so the
file takes well under a minute on one CPU thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.api.errors import BadInputError
from harness.api.interfaces import Logger
from harness.api.registry import default_registry
from harness.api.testing import ConformanceError, check_plugin
from harness_plugins.loggers.csv_logger import read_metrics

runner = CliRunner()
EPOCHS = 3
#: the per-epoch figures every pretext epoch logs
EPOCH_FIGURES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                 "images_per_s", "epoch_seconds")
WANDB_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "harness-wandb-logger"


#: every test here runs torch on one thread (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clips(make_labelled_clips):
    return make_labelled_clips(48)


#: Images per split of the ``voc_root`` fixture (tests/conftest.py) in this module.
VOC_IMAGES_PER_SPLIT = {"train": 20, "val": 20, "test": 20}


def _pretrain_args(clips, out: Path, *extra: str) -> list[str]:
    data, labels = clips
    return ["pretrain", "--backbone", "timm:test_resnet", "--labels", str(labels), "--data",
            str(data), "--out", str(out), "--epochs", str(EPOCHS), "--batch-size", "16",
            "--image-size", "32", "--device", "cpu", "--precision", "fp32", "--threads", "1",
            "--no-progress", *extra]


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``folder``, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- pretrain
def test_pretrain_logs_every_epochs_figures_to_tensorboard_and_csv(clips, voc_root, tmp_path):
    out = tmp_path / "run"
    args = _pretrain_args(clips, out, "--logger", "tensorboard", "--logger", "csv",
                          "--monitor", "knn", "--monitor-voc", str(voc_root),
                          "--monitor-every", "2")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"logs in {out / 'logs'}" in result.stdout
    history = _history(out)
    assert [row["epoch"] for row in history] == [1, 2, 3]

    scalars = _scalars(out / "logs")
    for figure in EPOCH_FIGURES:
        points = scalars[f"pretext/{figure}"]
        assert [step for step, _ in points] == [1, 2, 3], figure
        for (_, value), row in zip(points, history):
            assert value == pytest.approx(row[figure], rel=1e-6), figure
    # the monitor's probe, on the epochs it ran (every 2nd and the last)
    probe = scalars["pretext/monitor_knn_val_map"]
    assert [step for step, _ in probe] == [2, 3]
    assert [v for _, v in probe] == pytest.approx(
        [row["monitor_knn_val_map"] for row in history if "monitor_knn_val_map" in row])

    rows = read_metrics(out / "logs" / "metrics.csv")
    for row in history:
        logged = {r["name"]: r["value"] for r in rows
                  if r["prefix"] == "pretext" and r["step"] == row["epoch"]}
        assert logged == {k: float(v) for k, v in row.items()
                          if k != "epoch" and isinstance(v, (int, float))}
    config = json.loads((out / "logs" / "config.json").read_text())
    assert config["backbone"] == "timm:test_resnet" and config["epochs"] == EPOCHS

    # run again: the finished run logs its history once more, never twice over
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len(list((out / "logs").glob("events.out.tfevents.*"))) == 1
    assert [s for s, _ in _scalars(out / "logs")["pretext/train_loss"]] == [1, 2, 3]
    assert len(read_metrics(out / "logs" / "metrics.csv")) == len(rows)


def test_logging_changes_no_weight(clips, tmp_path):
    from harness.networks.checkpoint import read_checkpoint

    plain = runner.invoke(app, _pretrain_args(clips, tmp_path / "a"))
    logged = runner.invoke(app, _pretrain_args(clips, tmp_path / "b", "--logger", "csv",
                                               "--logger", "tensorboard"))
    assert plain.exit_code == 0 and logged.exit_code == 0, plain.output + logged.output
    a = read_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = read_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "a" / "logs").exists()


def test_an_unknown_logger_is_refused_in_one_line_before_training(clips, tmp_path):
    result = runner.invoke(app, _pretrain_args(clips, tmp_path / "run", "--logger", "nope"))
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert "unknown logger 'nope'" in err and "csv" in err and "tensorboard" in err
    assert not (tmp_path / "run" / "last.pt").exists()


# ----------------------------------------------------------------------------- harness run
def test_a_run_logs_pretext_evaluation_and_config_and_its_record_names_the_files(
        tmp_path, monkeypatch):
    from harness.pipeline.config import RunConfig
    from harness.pipeline.run import run
    from harness.results.records import read_record

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    config = RunConfig(backbone="timm:test_resnet", toy_clips=48, toy_voc_images=(160, 120),
                       epochs=2, k=4, evaluators=("voc07_linear",),
                       eval_params={"iterations": 80}, progress=False,
                       results=tmp_path / "results", loggers=("tensorboard", "csv"))
    path = run(config).path
    record = read_record(path)
    logs = record["logs"]
    assert logs["folder"] == f"{record['run_id']}.logs" and logs["loggers"] == ["tensorboard",
                                                                                "csv"]
    folder = path.parent / logs["folder"]
    assert "metrics.csv" in logs["files"] and "config.json" in logs["files"]
    assert any(f.startswith("events.out.tfevents.") for f in logs["files"])
    assert all((folder / f).is_file() for f in logs["files"])

    scalars = _scalars(folder)
    assert [s for s, _ in scalars["pretext/val_accuracy"]] == [1, 2]
    assert scalars["pretext/train_loss"][-1][1] == pytest.approx(
        record["pretext"]["final"]["train_loss"], rel=1e-6)
    metrics = record["metrics"]["voc07_linear"]
    curve = metrics["details"]["train_loss_curve"]
    assert len(curve) > 1
    assert scalars["eval/voc07_linear/train_loss"] == [(s, pytest.approx(v, rel=1e-6))
                                                       for s, v in curve]
    assert scalars["final/voc07_linear/map"][0][1] == pytest.approx(metrics["value"], rel=1e-6)
    assert json.loads((folder / "config.json").read_text()) == record["config"]


# ----------------------------------------------------------------------------- the plugin kind
def test_harness_plugins_lists_the_logger_kind():
    result = runner.invoke(app, ["plugins", "--kind", "logger"])
    assert result.exit_code == 0, result.output
    assert "csv" in result.stdout and "tensorboard" in result.stdout
    assert {"csv", "tensorboard"} <= set(default_registry().names("logger"))


@pytest.mark.parametrize("name", ["csv", "tensorboard"])
def test_the_built_in_loggers_conform(name):
    check_plugin(default_registry().get("logger", name).cls)


class _StrayLogger(Logger):
    """Writes beside the folder it is given."""

    name = "stray"
    description = "writes outside its folder"

    def params(self):
        return {}

    def start(self, folder, run_name):
        self.path = Path(folder).parent / "stray.txt"

    def log_metrics(self, step, metrics, prefix=""):
        self.path.write_text(json.dumps(metrics))

    def log_config(self, config):
        pass

    def close(self):
        pass

    def files(self):
        return [self.path]


class _SilentLogger(_StrayLogger):
    """Writes nothing at all."""

    name = "silent"

    def log_metrics(self, step, metrics, prefix=""):
        pass

    def files(self):
        return []


@pytest.mark.parametrize("faulty, message", [(_StrayLogger, "outside the folder"),
                                             (_SilentLogger, "names no file")])
def test_the_conformance_kit_catches_a_faulty_logger(faulty, message):
    with pytest.raises(ConformanceError, match=message):
        check_plugin(faulty)


def test_tensorboard_without_its_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    logger = default_registry().create("logger", "tensorboard")
    with pytest.raises(BadInputError, match=r"pip install 'harness\[tensorboard\]'"):
        logger.start(tmp_path, "run")


# ----------------------------------------------------------------------------- W&B example
@pytest.fixture(scope="module")
def installed_wandb_example(pip_install_example):
    """The example W&B logger, pip-installed into a private folder (conftest.py)."""
    pytest.importorskip("wandb", reason="the wandb package is not installed here")
    return pip_install_example(WANDB_EXAMPLE)


def _run_with(target: Path, *args: str, cwd: Path | None = None):
    env = {**os.environ, "PYTHONPATH": str(target), "HARNESS_NO_PROGRESS": "1",
           "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd)


def test_the_wandb_example_is_listed_and_conforms(installed_wandb_example, tmp_path):
    proc = _run_with(installed_wandb_example, "-m", "harness", "plugins", "--kind", "logger",
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wandb" in proc.stdout and "harness-wandb-logger" in proc.stdout
    code = ("from harness.api.registry import default_registry; from harness.api.testing import "
            "check_plugin; check_plugin(default_registry().get('logger', 'wandb').cls); "
            "print('conforms')")
    proc = _run_with(installed_wandb_example, "-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "conforms" in proc.stdout


def test_the_wandb_examples_own_test_logs_offline(installed_wandb_example, tmp_path):
    proc = _run_with(installed_wandb_example, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                     str(WANDB_EXAMPLE / "tests"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_command_of_the_watching_guide_parses_with_the_cli():
    from tests.test_foreign_checkpoints import _parses

    assert _parses(Path(__file__).resolve().parents[1] / "docs" / "watching-runs.md") >= 2
