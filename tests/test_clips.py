"""The clip dataset format: reading, writing, path confinement, every bad-input case."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from harness.data.clips import COLUMNS, ClipDataset, write_dataset
from harness.api.errors import BadInputError

RATE = 8000


def _files(root, n=2, stereo=False):
    """Write n frames and audio windows; return manifest rows for them."""
    rows = []
    (root / "f").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 6), (10 * i, 20, 30)).save(root / "f" / f"{i}.png")
        t = np.arange(RATE // 4) / RATE
        mono = (0.1 * (i + 1) * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
        data = np.stack([mono, mono], axis=1) if stereo else mono
        sf.write(root / "f" / f"{i}.wav", data, RATE, subtype="PCM_16")
        rows.append({"clip_id": f"c{i}", "video": "v.mp4", "timestamp": 1.5 + i,
                     "frame": f"f/{i}.png", "audio": f"f/{i}.wav", "sample_rate": RATE,
                     "scene": "water", "objects": "boat;person"})
    return rows


def _manifest(root, lines, meta=None):
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    (root / "dataset.json").write_text(json.dumps(meta if meta is not None else {"a": 1}))


HEADER = ",".join(COLUMNS)


def test_roundtrip(tmp_path):
    ds = write_dataset(tmp_path, _files(tmp_path, 3), {"generator": "test"})
    assert len(ds) == 3 and ds.metadata["generator"] == "test"
    assert ds.metadata["num_clips"] == 3
    clip = ds.clips[1]
    assert clip.clip_id == "c1" and clip.timestamp == 2.5 and clip.sample_rate == RATE
    assert clip.frame == (tmp_path / "f" / "1.png").resolve() and clip.frame.is_absolute()
    assert clip.extra == {"scene": "water", "objects": "boat;person"}
    assert ds.extra_columns == ["scene", "objects"]
    assert ds.column("objects") == ["boat;person"] * 3
    item = ds[2]
    assert item["image"].mode == "RGB" and item["image"].size == (8, 6)
    assert item["waveform"].dtype == np.float32 and item["waveform"].shape == (RATE // 4,)
    assert abs(np.abs(item["waveform"]).max() - 0.3) < 0.01
    assert item["clip"] is ds.clips[2]


def test_stereo_mixed_down(tmp_path):
    ds = write_dataset(tmp_path, _files(tmp_path, 1, stereo=True), {})
    w = ds.load_audio(0)
    assert w.ndim == 1 and abs(np.abs(w).max() - 0.1) < 0.01


def test_fingerprint_is_cheap_and_tracks_manifest_and_metadata(tmp_path):
    rows = _files(tmp_path, 2)
    fp1 = write_dataset(tmp_path, rows, {"seed": 0}).fingerprint()
    assert ClipDataset(tmp_path).fingerprint() == fp1
    assert write_dataset(tmp_path, rows, {"seed": 1}).fingerprint() != fp1
    assert write_dataset(tmp_path, rows[:1], {"seed": 0}).fingerprint() != fp1
    assert write_dataset(tmp_path, rows, {"seed": 0}).fingerprint() == fp1


@pytest.mark.parametrize("path, message", [
    ("../outside.png", "leaves the dataset folder"),
    ("f/../../outside.png", "leaves the dataset folder"),
    ("/etc/passwd", "absolute path"),
    ("f\\0.png", "must use '/'"),
    ("C:/x.png", "must use '/'"),
    ("", "empty path"),
])
def test_manifest_paths_are_confined(tmp_path, path, message):
    _files(tmp_path, 1)
    _manifest(tmp_path, [HEADER, f"c0,v,0,{path},f/0.wav,{RATE}"])
    with pytest.raises(BadInputError, match=message) as err:
        ClipDataset(tmp_path)
    assert "manifest.csv:2" in str(err.value)


def test_symlink_leaving_the_folder_is_rejected(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "x.png")
    root = tmp_path / "ds"
    _files(root, 1)
    os.symlink(outside, root / "link")
    _manifest(root, [HEADER, f"c0,v,0,link/x.png,f/0.wav,{RATE}"])
    with pytest.raises(BadInputError, match="resolves outside"):
        ClipDataset(root)


@pytest.mark.parametrize("lines, message", [
    (["clip_id,video,frame,audio,sample_rate", "c0,v,f/0.png,f/0.wav,8000"], "missing column"),
    ([HEADER, "c0,v,0,f/0.png,f/0.wav,8000", "c0,v,1,f/1.png,f/1.wav,8000"], "duplicate clip_id"),
    ([HEADER, "c0,v,soon,f/0.png,f/0.wav,8000"], "not numbers"),
    ([HEADER, "c0,v,-1,f/0.png,f/0.wav,8000"], ">= 0"),
    ([HEADER, "c0,v,0,f/0.png,f/0.wav,0"], "sample_rate > 0"),
    ([HEADER, "c0,v,0,f/0.png,f/0.wav"], "expected 6 fields"),
    ([HEADER, "c0,v,0,f/0.png,f/0.wav,8000,extra"], "expected 6 fields"),
    ([HEADER, ",v,0,f/0.png,f/0.wav,8000"], "empty clip_id"),
    ([HEADER, "c0,v,0,f/9.png,f/0.wav,8000"], "missing file"),
    ([HEADER + ",scene,scene", "c0,v,0,f/0.png,f/0.wav,8000,a,b"], "duplicate column"),
])
def test_bad_manifests_name_the_file(tmp_path, lines, message):
    _files(tmp_path, 2)
    _manifest(tmp_path, lines)
    with pytest.raises(BadInputError, match=message) as err:
        ClipDataset(tmp_path)
    assert "manifest.csv" in str(err.value)


def test_missing_or_malformed_metadata(tmp_path):
    rows = _files(tmp_path, 1)
    write_dataset(tmp_path, rows, {})
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(BadInputError, match="dataset.json: malformed JSON"):
        ClipDataset(tmp_path)
    (tmp_path / "dataset.json").write_text('{"format": "other/9"}')
    with pytest.raises(BadInputError, match="format"):
        ClipDataset(tmp_path)
    (tmp_path / "dataset.json").unlink()
    with pytest.raises(BadInputError, match="dataset.json: missing"):
        ClipDataset(tmp_path)
    with pytest.raises(BadInputError, match="no such directory"):
        ClipDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "dataset.json").write_text("{}")
    with pytest.raises(BadInputError, match="manifest.csv: missing"):
        ClipDataset(tmp_path / "empty")


def test_unreadable_files_are_named_on_load(tmp_path):
    ds = write_dataset(tmp_path, _files(tmp_path, 2), {})
    (tmp_path / "f" / "0.png").write_bytes(b"not an image")
    (tmp_path / "f" / "1.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(BadInputError, match="0.png: cannot read frame"):
        ds.load_frame(0)
    with pytest.raises(BadInputError, match="1.wav: cannot read audio"):
        ds.load_audio(1)


def test_sample_rate_must_match_manifest(tmp_path):
    rows = _files(tmp_path, 1)
    rows[0]["sample_rate"] = 16000
    ds = write_dataset(tmp_path, rows, {})
    with pytest.raises(BadInputError, match="sample rate 8000 Hz, but the manifest says 16000"):
        ds.load_audio(0)


def test_write_dataset_refuses_bad_rows_and_leaves_no_manifest(tmp_path):
    rows = _files(tmp_path, 2)
    bad = [rows[0], {**rows[1], "audio": "f/missing.wav"}]
    with pytest.raises(BadInputError, match="does not exist"):
        write_dataset(tmp_path, bad, {})
    assert not (tmp_path / "manifest.csv").exists()
    with pytest.raises(BadInputError, match="leaves the dataset folder"):
        write_dataset(tmp_path, [{**rows[0], "frame": "../x.png"}], {})
    with pytest.raises(BadInputError, match="missing field"):
        write_dataset(tmp_path, [rows[0], {k: v for k, v in rows[1].items() if k != "scene"}], {})
    assert not (tmp_path / "manifest.csv").exists()


def test_unknown_column_is_reported(tmp_path):
    ds = write_dataset(tmp_path, _files(tmp_path, 1), {})
    with pytest.raises(BadInputError, match="no column 'label'"):
        ds.column("label")


def test_works_with_a_torch_dataloader(tmp_path):
    import torch.utils.data

    ds = write_dataset(tmp_path, _files(tmp_path, 3), {})
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=lambda items: items)
    batches = list(loader)
    assert [len(b) for b in batches] == [2, 1]
