"""The W&B logger writes an offline run that holds every figure and the configuration.

Runs with ``WANDB_MODE=offline`` (no network, no account). The offline run file is read
back record by record: a W&B run file is a sequence of protobuf records in LevelDB's log
framing (a 7-byte file header, 32 KiB blocks, each record chunk behind a 7-byte header
of CRC-32, length and chunk type).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

pytest.importorskip("wandb", reason="the wandb package is not installed")

from harness_wandb_logger import WandbLogger  # noqa: E402

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:                # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == FULL:
            whole = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            whole = pending + chunk
        else:
            break
        record = wandb_internal_pb2.Record()
        record.ParseFromString(whole)
        yield record


def test_an_offline_run_holds_every_figure_at_its_step_and_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    folder = tmp_path / "logs"
    folder.mkdir()
    logger = WandbLogger(project="harness-test")
    logger.start(folder, "tiny-run")
    logger.log_config({"backbone": {"name": "alexnet"}, "seed": 3})
    for epoch in (1, 2, 3):
        logger.log_metrics(epoch, {"train_loss": 1.0 / epoch, "lr": 0.01 * epoch}, "pretext")
    logger.log_metrics(0, {"map": 42.5}, "final/voc07_linear")
    logger.close()

    [run_file] = sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))
    assert run_file in logger.files()
    rows, config = [], {}
    for record in _records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in record.config.update})
    pretext = [r for r in rows if "pretext/step" in r]
    assert [r["pretext/step"] for r in pretext] == [1, 2, 3]
    assert [r["pretext/train_loss"] for r in pretext] == pytest.approx([1.0, 0.5, 1 / 3])
    assert [r["pretext/lr"] for r in pretext] == pytest.approx([0.01, 0.02, 0.03])
    final = [r for r in rows if "final/voc07_linear/map" in r]
    assert final and final[0]["final/voc07_linear/map"] == pytest.approx(42.5)
    assert config["backbone"] == {"name": "alexnet"} and config["seed"] == 3
