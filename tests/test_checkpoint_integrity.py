"""Checkpoints that are damaged, edited or unusable are refused naming the file, and writes
that run out of space say so in one line, leaving nothing half-written.

Checkpoints here hold timm's tiny test ResNet (1.5 MB), so most tests take about a second.
The disk-full tests write to a 1 MiB tmpfs when this process may mount one (root), and are
skipped otherwise; the file-size-limit tests need no privilege (RLIMIT_FSIZE in a child).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harness.networks.checkpoint import (DIGEST_METHOD, build_backbone, load_pretrained, read_checkpoint,
                                save_checkpoint, tensor_digest)
from harness.cli import app
from harness.api.errors import BadInputError
from harness.runtime.io import NoSpaceError, save_torch, write_array_pair
from tests.test_pretrain import tiny_config
from tests.test_reliability import make_clips

BACKBONE = "timm:test_resnet"
runner = CliRunner()


#: every test here runs torch on one thread (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def voc(voc_root) -> Path:
    """The VOC these tests evaluate on: conftest's ``voc_root`` at its default sizes."""
    return voc_root


def save_small(path: Path, *, fill: float | None = None) -> Path:
    """A checkpoint of a seeded tiny ResNet (every floating tensor set to ``fill`` if given)."""
    backbone = build_backbone(BACKBONE)
    torch.manual_seed(0)
    net = backbone.create(4)
    if fill is not None:
        with torch.no_grad():
            for t in net.state_dict().values():
                if t.is_floating_point():
                    t.fill_(fill)
    save_checkpoint(path, backbone_name=BACKBONE, backbone=backbone, net=net,
                    output_kind="classes", image_size=32, meta={"origin": "pretext"})
    return path


def flip(path: Path, *offsets: int) -> None:
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def tensor_offset(path: Path) -> int:
    """An offset in the middle of the largest tensor record's data."""
    with zipfile.ZipFile(path) as archive:
        record = max((r for r in archive.infolist() if "/data/" in r.filename),
                     key=lambda r: r.file_size)
    with path.open("rb") as f:     # a local header: 30 bytes, then a name and an extra field
        f.seek(record.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
    return record.header_offset + 30 + int(name_len) + int(extra_len) + record.file_size // 2


def eval_refuses(checkpoint: Path, voc: Path, tmp_path: Path, *words: str) -> str:
    """``harness eval`` exits 2 with one error line holding ``words`` and the file name,
    before any evaluation work (no work folder, no metrics file)."""
    out, work = tmp_path / "m.json", tmp_path / "work"
    result = runner.invoke(app, ["eval", "--no-progress", "--device", "cpu", "--checkpoint",
                                 str(checkpoint), "--voc", str(voc), "--out", str(out),
                                 "--workdir", str(work)])
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error:"), err
    for w in (str(checkpoint), *words):
        assert w in err, err
    assert not out.exists() and not work.exists()
    return err


# ----------------------------------------------------------------------------- damage
def test_a_checkpoint_carries_a_digest_of_its_tensors_and_loads(tmp_path):
    path = save_small(tmp_path / "c.pt")
    ckpt = read_checkpoint(path)
    assert ckpt["digest"] == {"method": DIGEST_METHOD, "model": tensor_digest(ckpt["model"])}
    with zipfile.ZipFile(path) as archive:      # written with the zip records' CRC-32
        assert archive.testzip() is None
        assert all(r.CRC != 0 for r in archive.infolist() if r.file_size)
    assert load_pretrained(path).origin == "pretext"


def test_two_flipped_bytes_in_the_middle_of_a_checkpoint_are_refused_by_eval(tmp_path, voc):
    path = save_small(tmp_path / "c.pt")
    middle = path.stat().st_size // 2
    flip(path, middle, middle + 1)
    eval_refuses(path, voc, tmp_path, "damaged")


def test_a_flipped_byte_in_tensor_data_is_caught_by_the_digest_even_without_crcs(tmp_path, voc):
    path = save_small(tmp_path / "c.pt")
    # the same content rewritten without the zip CRCs: only the digest can notice
    crc = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(torch.load(path, weights_only=True), path)
    finally:
        torch.serialization.set_crc32_options(crc)
    with zipfile.ZipFile(path) as archive:
        assert all(r.CRC == 0 for r in archive.infolist())
    assert load_pretrained(path).origin == "pretext"
    flip(path, tensor_offset(path))
    with pytest.raises(BadInputError, match="does not match its digest"):
        read_checkpoint(path)                         # memory-mapped, as evaluators read
    with pytest.raises(BadInputError, match="does not match its digest"):
        read_checkpoint(path, mmap=False)
    eval_refuses(path, voc, tmp_path, "checkpoint content does not match its digest "
                                      "(damaged or edited)")


def test_a_flipped_byte_in_the_pickled_structure_fails_the_zip_crc(tmp_path):
    backbone = build_backbone(BACKBONE)
    net = backbone.create(4)
    path = tmp_path / "c.pt"
    save_checkpoint(path, backbone_name=BACKBONE, backbone=backbone, net=net,
                    output_kind="classes", image_size=32, meta={"note": "MARKER-TEXT"})
    flip(path, path.read_bytes().index(b"MARKER-TEXT") + 3)   # a byte of meta, not of weights
    with pytest.raises(BadInputError, match=r"c\.pt: damaged checkpoint file .*CRC"):
        read_checkpoint(path)


def test_a_truncated_checkpoint_is_one_line_naming_the_file(tmp_path, voc):
    path = save_small(tmp_path / "c.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    eval_refuses(path, voc, tmp_path, "damaged checkpoint file", "truncated")


def test_a_checkpoint_without_a_digest_still_loads_and_its_crcs_are_checked(tmp_path):
    path = save_small(tmp_path / "c.pt")
    old = torch.load(path, weights_only=True)
    del old["digest"]                       # as written before checkpoints had digests
    torch.save(old, path)
    model = load_pretrained(path)
    assert all(torch.equal(a, b) for a, b in zip(old["model"].values(),
                                                 model.net.state_dict().values()))
    flip(path, tensor_offset(path))
    with pytest.raises(BadInputError, match="damaged checkpoint file .*CRC"):
        load_pretrained(path)


def test_edited_weights_with_the_old_digest_are_refused(tmp_path):
    path = save_small(tmp_path / "c.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["head.0.weight"][0, 0] += 0.001
    torch.save(ckpt, path)                  # a valid file with valid CRCs, edited weights
    with pytest.raises(BadInputError, match="c.pt: checkpoint content does not match its "
                                            r"digest \(damaged or edited\)"):
        load_pretrained(path)


# ----------------------------------------------------------------------------- unusable content
def test_bad_backbone_parameters_in_a_checkpoint_name_the_file(tmp_path, voc):
    path = save_small(tmp_path / "c.pt")
    ckpt = torch.load(path, weights_only=True)
    torch.save({**ckpt, "backbone_params": {**ckpt["backbone_params"], "bogus": 1}}, path)
    eval_refuses(path, voc, tmp_path,
                 f"c.pt: backbone '{BACKBONE}' in this checkpoint: unknown parameter 'bogus'")


def test_non_finite_weights_are_refused_on_load_naming_the_file_and_the_tensor(tmp_path, voc):
    path = save_small(tmp_path / "nan.pt", fill=float("nan"))
    line = eval_refuses(path, voc, tmp_path, "NaN or infinite", "tensor 'head.0.bias'")
    assert "split" not in line
    inf = save_small(tmp_path / "inf.pt")
    ckpt = torch.load(inf, weights_only=True)
    ckpt["model"]["trunk.conv1.0.weight"][0, 0, 0, 0] = float("inf")
    ckpt["digest"]["model"] = tensor_digest(ckpt["model"])
    torch.save(ckpt, inf)
    with pytest.raises(BadInputError, match="inf.pt: .*tensor 'trunk.conv1.0.weight'"):
        load_pretrained(inf)


@pytest.fixture(scope="module")
def clips(make_labelled_clips):
    return make_labelled_clips(48)


def test_weights_that_become_non_finite_stop_pretraining_naming_the_epoch(clips, tmp_path):
    from harness.pretext.checkpoints import TrainingDiverged
    from harness.pretext.train import pretrain

    def poison_in_epoch_2(net, epoch, epochs):   # a finite loss, then NaN weights
        if epoch == 2:
            with torch.no_grad():
                net.state_dict()["head.0.weight"].fill_(float("nan"))
        return {}

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"weights \(tensor 'head.0.weight'\) became NaN "
                                               r"or infinite at epoch 2;.*epoch 1\), is kept"):
        pretrain(tiny_config(clips, out), monitor=poison_in_epoch_2)
    assert read_checkpoint(out / "last.pt")["train_state"]["epoch"] == 1


def test_an_edited_training_state_is_refused_when_resuming(clips, tmp_path):
    from harness.pretext.train import pretrain

    def stop_in_epoch_2(net, epoch, epochs):
        if epoch == 2:
            raise KeyboardInterrupt
        return {}

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_config(clips, out), monitor=stop_in_epoch_2)
    path = out / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt["digest"]) == {"method", "model", "train_state"}
    moments = ckpt["train_state"]["optimizer"]["state"][0]
    moments["exp_avg"].mul_(2)
    torch.save(ckpt, path)
    # the weights are intact: an evaluation may use them; resuming from the state may not
    assert load_pretrained(path).origin == "pretext"
    with pytest.raises(BadInputError, match="last.pt: checkpoint content does not match"):
        pretrain(tiny_config(clips, out))


# ----------------------------------------------------------------------------- out of space
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (skipped where this process may not mount one)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def take_all_space(folder: Path) -> None:
    """Take every free byte of ``folder``'s file system."""
    with (folder / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def leftovers(folder: Path) -> list[str]:
    """Hidden files and folders left behind, other than the cache's lock folder (whose
    advisory lock files stay by design: see harness/runtime/cache_lock.py)."""
    from harness.runtime.cache_lock import LOCKS_DIR

    return sorted(p.name for p in folder.rglob("*")
                  if p.name.startswith(".") and LOCKS_DIR not in p.relative_to(folder).parts)


def test_a_pretext_checkpoint_write_to_a_full_disk_is_one_line_exit_2(clips, tmp_path,
                                                                      small_disk):
    """The 1.5 MB checkpoint does not fit the 1 MiB disk; config.json before it does."""
    data, labels = clips
    out = small_disk / "run"
    result = runner.invoke(app, [
        "pretrain", "--backbone", BACKBONE, "--labels", str(labels), "--data", str(data),
        "--out", str(out), "--epochs", "1", "--batch-size", "16", "--image-size", "32",
        "--device", "cpu", "--threads", "1", "--no-progress"],
        env={"HARNESS_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.fullmatch(rf"error: no space left on device writing {re.escape(str(out))}/last.pt "
                        r"\(needs about [\d,]+ bytes, [\d,]+ free\)", err), err
    assert leftovers(small_disk) == [] and not (out / "last.pt").exists()


def test_a_checkpoint_write_to_a_full_disk_is_one_line_and_keeps_the_old_file(small_disk):
    path = small_disk / "last.pt"
    save_torch(path, {"old": torch.zeros(10)})
    with pytest.raises(NoSpaceError) as info:
        save_small(path)
    message = str(info.value)
    assert message.startswith(f"no space left on device writing {path} (needs about ")
    needed, free = (int(s.split()[0].replace(",", "")) for s in
                    message.split("(needs about ")[1].rstrip(")").split(" bytes, "))
    assert needed > 1_400_000 and 0 < free < 1 << 20 and "\n" not in message
    assert info.value.exit_code == 2
    assert leftovers(small_disk) == []
    assert torch.equal(torch.load(path, weights_only=True)["old"], torch.zeros(10))


@pytest.mark.parametrize("cached", [True, False])
def test_a_feature_write_to_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path,
                                                                            small_disk, cached):
    data = make_clips(tmp_path / "clips", n=3, rate=8000, seconds=4.0)
    out = small_disk / "f.npy"
    cache = small_disk / "cache" if cached else tmp_path / "cache"
    for folder in (cache, small_disk):
        folder.mkdir(exist_ok=True)
    take_all_space(small_disk)
    args = ["features", "--repr", "mfcc", "--data", str(data), "--no-progress", "--out", str(out)]
    result = runner.invoke(app, args, env={"HARNESS_CACHE": str(cache)})
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    where = str(cache) if cached else str(out)      # a shard in the cache, or the matrix
    assert err.startswith(f"error: no space left on device writing {where}"), err
    assert "needs about" in err and " free)" in err
    assert leftovers(small_disk) == [] and not out.exists()


_OVER_LIMIT = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np, torch
    from harness.api.errors import HarnessError
    from harness.runtime.io import write_array_pair, save_torch
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write over the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
    folder = sys.argv[1]
    for write in (lambda: save_torch(folder + "/big.pt", {"w": torch.zeros(100_000)}),
                  lambda: write_array_pair(folder + "/big.npy", np.zeros(100_000, np.float32),
                                           folder + "/big.json", {})):
        try:
            write()
            print("written")
        except HarnessError as exc:
            print(exc.exit_code, exc)
""")


def test_a_write_over_the_file_size_limit_is_one_line_and_leaves_no_temporary(tmp_path):
    """torch and numpy report a short write in their own words ("unexpected pos", "N
    requested and M written"); both become the one line naming the path."""
    done = subprocess.run([sys.executable, "-c", _OVER_LIMIT, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, lines
    for line, name in zip(lines, ("big.pt", "big.npy")):
        found = re.fullmatch(rf"2 file too large writing {re.escape(str(tmp_path / name))} "
                             r"\(needs about ([\d,]+) bytes; the file size limit is 200,000 "
                             r"bytes \(ulimit -f\)\)", line)
        assert found and int(found.group(1).replace(",", "")) >= 400_000, line
    assert list(tmp_path.iterdir()) == []


def test_a_pair_write_to_a_full_disk_keeps_the_previous_pair(small_disk):
    path, sidecar = small_disk / "v.npy", small_disk / "v.json"
    write_array_pair(path, np.arange(4, dtype=np.float32), sidecar, {"n": 4})
    with pytest.raises(NoSpaceError, match=f"writing {path} "):
        write_array_pair(path, np.zeros(1_000_000, np.float32), sidecar, {"n": 10 ** 6})
    assert np.array_equal(np.load(path), np.arange(4, dtype=np.float32))
    assert json.loads(sidecar.read_text())["n"] == 4 and leftovers(small_disk) == []
