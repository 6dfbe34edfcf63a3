"""``harness pretrain`` under torchrun: two CPU processes (gloo) train like one process.

The network is timm's tiny ConvNeXt (LayerNorm, no dropout), so nothing depends on the
split of a batch across processes: per-process BatchNorm statistics would (SyncBatchNorm
needs a GPU). (A ViT would not do either: its attention key biases get gradients that are
zero up to rounding, which Adam turns into steps of random sign.) Both runs use fp32; the global batch, its augmentation and the schedule are the
same, so the weights agree up to floating-point summation order.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from harness.networks.checkpoint import read_checkpoint
from harness.pretext.config import PretrainConfig
from harness.pretext.train import pretrain
from harness.profiles import get_profile
from tests.test_pretrain import CLASSES, make_clip_dataset, write_labels

ARGS = {"backbone": "timm:test_convnext", "epochs": 2, "batch_size": 16, "image_size": 32,
        "val_fraction": 0.478, "lr": 3e-3}


#: every test here runs torch on one thread (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_gloo_processes_match_one_process(tmp_path):
    # 69 clips: 36 for training, 18 per rank; 33 for validation, which ranks score in
    # batches of 16: rank 0 has 17 clips (2 batches), rank 1 has 16 (1 batch)
    classes = make_clip_dataset(tmp_path / "data", 69)
    labels = write_labels(tmp_path / "labels.npy", classes, {"kind": "classes",
                                                            "num_outputs": CLASSES})
    env = {**os.environ, "HARNESS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1",
           "HARNESS_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "harness", "pretrain", "--backbone", ARGS["backbone"],
           "--labels", str(labels), "--data", str(tmp_path / "data"),
           "--out", str(tmp_path / "ddp"), "--epochs", str(ARGS["epochs"]),
           "--batch-size", str(ARGS["batch_size"]), "--image-size", "32",
           "--val-fraction", str(ARGS["val_fraction"]), "--lr", str(ARGS["lr"]), "--device", "cpu",
           "--precision", "fp32", "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("pretrain: timm:test_convnext ->") == 1      # rank 0 alone reports

    # `harness pretrain` takes the augmentation from its profile (toy by default)
    single = pretrain(PretrainConfig(
        backbone=ARGS["backbone"], labels=labels, augment=get_profile("toy").pretext_augment,
        data=tmp_path / "data", out=tmp_path / "one", epochs=ARGS["epochs"],
        batch_size=ARGS["batch_size"], image_size=32, val_fraction=ARGS["val_fraction"], lr=ARGS["lr"],
        device="cpu", precision="fp32", progress=False))

    ddp_ckpt, one_ckpt = read_checkpoint(tmp_path / "ddp" / "last.pt"), read_checkpoint(single)
    assert ddp_ckpt["meta"]["world_size"] == 2 and one_ckpt["meta"]["world_size"] == 1
    rows = lambda p: [json.loads(line) for line in (p / "metrics.jsonl").read_text().splitlines()]
    ddp_rows, one_rows = rows(tmp_path / "ddp"), rows(tmp_path / "one")
    assert [r["epoch"] for r in ddp_rows] == [1, 2]                  # written once, by rank 0
    for a, b in zip(ddp_rows, one_rows):
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    assert ddp_rows[-1]["train_loss"] < ddp_rows[0]["train_loss"]     # training proceeds
    compared = 0
    for name, w in one_ckpt["model"].items():
        if w.is_floating_point():
            assert torch.allclose(ddp_ckpt["model"][name], w, rtol=1e-4, atol=1e-5), name
            compared += 1
    assert compared > 10
