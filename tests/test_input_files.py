"""Input files the harness reads: image bit depths, hostile frames and names, manifests and
CSVs from spreadsheets, ingest leftovers, and what the cache keys notice.

Every image is decoded by :mod:`harness.data.images`; these tests make real files (PNG, TIFF,
videos with PyAV) and check what the clip dataset, the frame store and the VOC readers get.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from typer.testing import CliRunner

from harness.cli import app
from harness.data.clips import ClipDataset, write_dataset
from harness.api.errors import BadInputError
from harness.data.images import load_rgb
from tests.media import write_corrupt, write_video

runner = CliRunner()


def invoke(*args, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def one_line_exit_2(result, *words: str) -> str:
    """The result failed with exit code 2 and one ``error:`` line holding every word."""
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), result.stderr
    for w in words:
        assert w in err[0], err[0]
    return err[0]


def write_png(path: Path, pixels: np.ndarray | None, *, colour_type: int, size=None) -> Path:
    """A PNG written byte by byte: 16-bit samples (``pixels`` uint16 [H, W, C]), which PIL
    cannot save for colour images; with ``pixels`` None, only a header claiming ``size``
    (W, H) and a few bytes of image data, as a decompression bomb's first bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if pixels is not None:
        h, w = pixels.shape[:2]
        rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels.reshape(h, w, -1))
        data, depth = zlib.compress(rows), 16
    else:
        (w, h), data, depth = size, zlib.compress(b"\0" * 64), 8
    header = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))
    return path


def make_clips(root: Path, frames: list[Path | None] | None = None, n: int = 3,
               rate: int = 1000) -> Path:
    """A clip dataset of ``n`` noise WAVs; frame ``i`` is ``frames[i]`` (copied) or an 8-bit PNG."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "frames").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        wave = np.random.default_rng(i).normal(0, 0.1, rate // 2).astype(np.float32)
        sf.write(root / f"audio/{i:03d}.wav", wave, rate, subtype="PCM_16")
        source = frames[i] if frames and i < len(frames) else None
        name = f"frames/{i:03d}{source.suffix if source else '.png'}"
        if source is not None:
            (root / name).write_bytes(source.read_bytes())
        else:
            Image.new("RGB", (16, 16), (i * 40 % 255, 80, 0)).save(root / name)
        rows.append({"clip_id": f"c{i:03d}", "video": "synthetic", "timestamp": 1.0 + i,
                     "frame": name, "audio": f"audio/{i:03d}.wav", "sample_rate": rate})
    write_dataset(root, rows, {"source": "test"})
    return root


# ----------------------------------------------------------------------------- bit depths
GRADIENT16 = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)
EXPECTED8 = np.rint(GRADIENT16 / 257).astype(np.uint8)   # round(v * 255 / 65535)


def test_a_16_bit_grey_frame_is_scaled_not_clipped_to_white(tmp_path):
    from harness.data.framestore import frame_store

    png = tmp_path / "grey16.png"
    Image.fromarray(GRADIENT16).save(png)
    with Image.open(png) as im:
        assert im.mode.startswith("I;16")            # PIL reads it as 16-bit samples
    ds = ClipDataset(make_clips(tmp_path / "ds", [png]))
    frame = np.asarray(ds.load_frame(0))
    assert frame.dtype == np.uint8 and frame.shape == (16, 16, 3)
    for c in range(3):
        np.testing.assert_array_equal(frame[..., c], EXPECTED8)
    assert (frame == 255).mean() < 0.01               # clipping made nearly all of it 255
    store = frame_store(ds, 16, progress=False)
    np.testing.assert_array_equal(store.images[0], frame)


@pytest.mark.parametrize("colour_type, channels", [(2, 3), (6, 4), (4, 2)],
                         ids=["rgb16", "rgba16", "grey-alpha16"])
def test_16_bit_colour_and_alpha_pngs_keep_their_brightness(tmp_path, colour_type, channels):
    pixels = np.stack([GRADIENT16, GRADIENT16[::-1], np.full_like(GRADIENT16, 30000),
                       np.full_like(GRADIENT16, 65535)][:channels], axis=-1)
    png = write_png(tmp_path / "x.png", pixels, colour_type=colour_type)
    rgb = np.asarray(load_rgb(png)).astype(int)
    colour = pixels[..., :3] if channels >= 3 else pixels[..., :1].repeat(3, axis=-1)
    # each 16-bit sample lands within one step of its scaled value, never at 255 by clipping
    assert np.abs(rgb - colour.astype(float) * 255 / 65535).max() <= 1


def test_32_bit_integer_and_float_images_are_scaled_on_their_documented_range(tmp_path):
    as_int = tmp_path / "int32.tif"
    Image.fromarray(GRADIENT16.astype(np.int32)).save(as_int)
    np.testing.assert_array_equal(np.asarray(load_rgb(as_int))[..., 0], EXPECTED8)
    as_float = tmp_path / "float.tif"
    Image.fromarray((GRADIENT16 / 65535).astype(np.float32)).save(as_float)
    assert np.abs(np.asarray(load_rgb(as_float))[..., 1].astype(int) - EXPECTED8).max() <= 1


@pytest.mark.parametrize("values, message", [
    (np.full((4, 4), 70000, np.int32), "32-bit integer image with values in [70000, 70000]"),
    (np.full((4, 4), 3.5, np.float32), "float image with values [3.5, 3.5]"),
    (np.full((4, 4), np.nan, np.float32), "NaN"),
], ids=["int-beyond-16-bit", "float-beyond-1", "float-nan"])
def test_high_depth_values_outside_their_range_are_refused_naming_the_file(tmp_path, values,
                                                                            message):
    path = tmp_path / "odd.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(BadInputError, match="odd.tif") as err:
        load_rgb(path)
    assert message in str(err.value)


def test_8_bit_images_read_exactly_as_pil_converts_them(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    images = {
        "rgb.png": Image.fromarray(rgba[..., :3]),
        "rgba.png": Image.fromarray(rgba),
        "grey.png": Image.fromarray(rgba[..., 0]),
        "la.png": Image.fromarray(rgba[..., :2], "LA"),
        "palette.png": Image.fromarray(rgba[..., :3]).quantize(16),
        "photo.jpg": Image.fromarray(rgba[..., :3]),
        "bits.png": Image.fromarray(rgba[..., 0] > 127),
    }
    for name, image in images.items():
        image.save(tmp_path / name)
        with Image.open(tmp_path / name) as im:
            expected = np.asarray(im.convert("RGB"))
        np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / name)), expected, name)


def test_a_16_bit_voc_image_is_scaled_by_every_voc_reader(tmp_path):
    from harness.evaluation.views import _render
    from harness.data.voc_dataset import VOCClassification
    from plugins.evaluators.augment import _decode
    from tests.test_voc import make_voc

    voc = make_voc(tmp_path)
    path = voc / "JPEGImages" / "000001.jpg"
    Image.fromarray(GRADIENT16).save(path, format="PNG")   # a PNG behind a .jpg name
    image, _ = VOCClassification(tmp_path / "VOCdevkit", "trainval")[0]
    np.testing.assert_array_equal(np.asarray(image)[..., 2], EXPECTED8)
    np.testing.assert_array_equal(_decode(path)[..., 0], EXPECTED8)
    views = _render(path, np.array([[0.0, 0.0, 16.0, 16.0]]), np.array([False]), 16)
    np.testing.assert_array_equal(views[0, ..., 1], EXPECTED8)


# ----------------------------------------------------------------------------- hostile files
def test_a_frame_that_is_a_symlink_loop_is_refused_naming_it(tmp_path):
    root = make_clips(tmp_path / "ds")
    frame = root / "frames" / "001.png"
    frame.unlink()
    frame.symlink_to(frame.name)                      # frames/001.png -> frames/001.png
    line = one_line_exit_2(invoke("data", "info", root), "manifest.csv:3", "frames/001.png")
    assert "symlink loop" in line
    with pytest.raises(BadInputError, match="001.png: cannot read frame image"):
        load_rgb(frame, "frame image")


@pytest.mark.parametrize("size", [(10_000, 10_000), (20_000, 20_000)],
                         ids=["over-the-warning-limit", "over-the-error-limit"])
def test_a_decompression_bomb_frame_is_refused_before_decoding(tmp_path, size):
    from harness.data.framestore import frame_store
    from harness.evaluation.views import image_size

    bomb = write_png(tmp_path / "bomb.png", None, colour_type=2, size=size)
    ds = ClipDataset(make_clips(tmp_path / "ds", [None, bomb]))
    with pytest.raises(BadInputError, match=r"frames/001.png: too many pixels") as err:
        frame_store(ds, 16, progress=False)
    assert "MAX_IMAGE_PIXELS" in str(err.value)
    with pytest.raises(BadInputError, match="bomb.png: too many pixels"):
        image_size(bomb)


def test_a_bomb_is_refused_even_where_its_warning_is_silenced(tmp_path, monkeypatch):
    import warnings

    import harness.data.images

    bomb = write_png(tmp_path / "bomb.png", None, colour_type=2, size=(10_000, 10_000))
    monkeypatch.setattr(harness.data.images, "_refuse_bomb_warnings", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # PIL's warning goes unseen
        with pytest.raises(BadInputError, match="bomb.png: too many pixels .*10000 x 10000"):
            load_rgb(bomb)


def test_a_decompression_bomb_in_voc_is_refused_naming_it(tmp_path):
    from harness.data.voc_dataset import VOCClassification
    from tests.test_voc import make_voc

    voc = make_voc(tmp_path)
    write_png(voc / "JPEGImages" / "000002.jpg", None, colour_type=2, size=(20_000, 20_000))
    data = VOCClassification(tmp_path / "VOCdevkit", "trainval")
    data[0]
    with pytest.raises(BadInputError, match="000002.jpg: too many pixels"):
        data[1]


def test_a_video_name_that_is_not_utf8_is_skipped_and_counted(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "good.mp4", 4.5)
    write_video(videos / "tmp.mp4", 4.5)
    os.rename(videos / "tmp.mp4", os.fsencode(videos) + b"/caf\xe9.mp4")   # Latin-1 name
    out = tmp_path / "ds"
    result = invoke("data", "ingest", "--videos", videos, "--out", out, "--size", 32,
                    "--sample-rate", 8000)
    assert result.exit_code == 0, result.output
    assert "skipped: bad_name 1" in result.stdout
    ds = ClipDataset(out)
    assert {c.video for c in ds.clips} == {"good.mp4"}
    assert ds.metadata["report"]["skipped_videos"] == [
        {"video": "caf\\xe9.mp4", "reason": "bad_name",
         "detail": "the file name is not valid UTF-8; rename the file"}]


def test_only_badly_named_videos_leave_no_ingest_folders(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "tmp.mp4", 4.5)
    os.rename(videos / "tmp.mp4", os.fsencode(videos) + b"/\xff\xfe.mp4")
    out = tmp_path / "ds"
    one_line_exit_2(invoke("data", "ingest", "--videos", videos, "--out", out),
                    "\\xff\\xfe.mp4: bad_name", "no dataset written")
    assert not out.exists()


# ----------------------------------------------------------------------------- ingest refusals
@pytest.mark.parametrize("out_exists", [False, True], ids=["new-folder", "empty-folder"])
def test_a_refused_ingest_leaves_nothing_that_blocks_the_next(tmp_path, out_exists):
    bad, good = tmp_path / "bad", tmp_path / "good"
    write_corrupt(bad / "broken.mp4")
    write_video(bad / "short.mp4", 1.0)
    write_video(good / "ok.mp4", 8.0)
    out = tmp_path / "ds"
    if out_exists:
        out.mkdir()
    one_line_exit_2(invoke("data", "ingest", "--videos", bad, "--out", out, "--size", 32),
                    "none of 2 video(s) gave a clip", "no dataset written")
    assert out.exists() == out_exists and (not out_exists or not any(out.iterdir()))
    result = invoke("data", "ingest", "--videos", good, "--out", out, "--size", 48,
                    "--sample-rate", 8000)
    assert result.exit_code == 0, result.output
    ds = ClipDataset(out)
    assert len(ds) == 2 and np.asarray(ds.load_frame(0)).shape == (48, 48, 3)
    assert sorted(p.name for p in (out / "clips").iterdir()) == [ds.clips[0].frame.parent.name]


def test_a_refused_ingest_keeps_a_published_dataset(tmp_path):
    from harness.data.ingest import IngestConfig, ingest

    videos = tmp_path / "videos"
    write_video(videos / "ok.mp4", 4.5)
    out = tmp_path / "ds"
    cfg = IngestConfig(frame_size=32, sample_rate=8000)
    first = ingest(videos, out, cfg, progress=False)
    (videos / "ok.mp4").write_bytes(b"\0" * 4096)     # now unusable: the rerun is refused
    with pytest.raises(BadInputError, match="no dataset written"):
        ingest(videos, out, cfg, progress=False)
    again = ClipDataset(out)
    assert again.fingerprint() == first.fingerprint() and again.clips[0].frame.is_file()
    assert (out / ".ingest" / "config.json").is_file()


# ----------------------------------------------------------------------------- byte-order marks
def test_a_manifest_with_a_utf8_byte_order_mark_is_read(tmp_path):
    root = make_clips(tmp_path / "ds")
    plain = ClipDataset(root)
    manifest = root / "manifest.csv"
    manifest.write_bytes(b"\xef\xbb\xbf" + manifest.read_bytes())
    marked = ClipDataset(root)
    assert [c.clip_id for c in marked.clips] == [c.clip_id for c in plain.clips]
    assert marked.extra_columns == plain.extra_columns == []
    assert invoke("data", "info", root).exit_code == 0


def test_an_audioset_csv_with_a_utf8_byte_order_mark_is_read(tmp_path):
    from harness.data.audioset import parse_segments

    text = ("# Segments csv created Sun Mar  5 10:54:31 2017\n"
            "# YTID, start_seconds, end_seconds, positive_labels\n"
            '-okvideo001, 30.000, 38.000, "/m/09x0r,/m/04rlf"\n')
    for name, prefix in (("plain.csv", b""), ("marked.csv", b"\xef\xbb\xbf")):
        (tmp_path / name).write_bytes(prefix + text.encode())
    assert parse_segments(tmp_path / "marked.csv") == parse_segments(tmp_path / "plain.csv")
    no_comment = tmp_path / "bare.csv"                # the mark before the first data row
    no_comment.write_bytes(b"\xef\xbb\xbf" + text.splitlines(keepends=True)[-1].encode())
    assert parse_segments(no_comment)[0].ytid == "-okvideo001"


# ----------------------------------------------------------------------------- the cache
@pytest.mark.parametrize("value", ["", "  "], ids=["empty", "blank"])
def test_an_empty_harness_cache_variable_means_the_default_folder(tmp_path, monkeypatch, value):
    from harness.runtime.cache import cache_root
    from harness.data.framestore import frame_store

    root = make_clips(tmp_path / "ds")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HARNESS_CACHE", value)
    assert cache_root() == Path(".harness-cache")
    frame_store(ClipDataset(root), 16, progress=False)
    assert [p.name for p in work.iterdir()] == [".harness-cache"]
    assert (work / ".harness-cache" / "frames").is_dir()


def _replace_keeping_size_and_mtime(path: Path, wave: np.ndarray, rate: int) -> None:
    """Write ``wave`` over ``path`` (same length and format: same size), then put the old
    access and modification times back."""
    st = path.stat()
    sf.write(path, wave, rate, subtype="PCM_16")
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_verify_cache_recomputes_a_wav_replaced_with_its_mtime_restored(tmp_path, monkeypatch):
    from harness.runtime.cache import VERIFY_ENV

    # off; monkeypatch restores the original after the test, undoing what --verify-cache sets
    monkeypatch.setenv(VERIFY_ENV, "0")
    rate = 22_050
    t = np.arange(int(3.75 * rate)) / rate
    root = tmp_path / "ds"
    (root / "audio").mkdir(parents=True)
    (root / "frames").mkdir()
    rows = []
    for i in range(3):
        sf.write(root / f"audio/{i}.wav", 0.3 * np.sin(2 * np.pi * 300 * (i + 1) * t), rate,
                 subtype="PCM_16")
        Image.new("RGB", (8, 8)).save(root / f"frames/{i}.png")
        rows.append({"clip_id": f"c{i}", "video": "v", "timestamp": 2.0, "frame": f"frames/{i}.png",
                     "audio": f"audio/{i}.wav", "sample_rate": rate})
    write_dataset(root, rows, {"source": "test"})

    def features(*flags):
        out = tmp_path / f"f{len(list(tmp_path.glob('f*.npy')))}.npy"
        result = invoke(*flags, "features", "--repr", "mfcc", "--data", root, "--out", out)
        assert result.exit_code == 0, result.output
        return np.load(out)

    before = features()
    _replace_keeping_size_and_mtime(root / "audio/1.wav", 0.3 * np.sin(2 * np.pi * 2000 * t), rate)
    # the documented shortcut: size and modification time unchanged, the cache is used
    np.testing.assert_array_equal(features(), before)
    checked = features("--verify-cache")
    assert not np.array_equal(checked[1], before[1])
    np.testing.assert_array_equal(checked[[0, 2]], before[[0, 2]])
    monkeypatch.setenv(VERIFY_ENV, "0")              # both keys live side by side
    np.testing.assert_array_equal(features(), before)
    monkeypatch.setenv(VERIFY_ENV, "1")              # the variable alone does what the flag does
    np.testing.assert_array_equal(features(), checked)


def test_verify_cache_keys_frames_and_voc_images_by_content(tmp_path, monkeypatch):
    from harness.runtime.cache import VERIFY_ENV
    from harness.pipeline.data_stage import voc_cache_key
    from tests.test_voc import make_voc

    root = make_clips(tmp_path / "ds")
    make_voc(tmp_path)
    voc = tmp_path / "VOCdevkit"
    keys = {}
    for verify in ("", "1"):
        monkeypatch.setenv(VERIFY_ENV, verify)
        keys[verify] = (ClipDataset(root).cache_key(), voc_cache_key(voc))
    frame, jpeg = root / "frames/002.png", voc / "VOC2007/JPEGImages/000003.jpg"
    for path, image in ((frame, Image.new("RGB", (16, 16), (81, 80, 0))),
                        (jpeg, Image.new("RGB", (16, 12), (3, 2, 1)))):
        st = path.stat()
        image.save(path)
        assert path.stat().st_size == st.st_size
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    for verify, (clip_key, voc_key) in keys.items():
        monkeypatch.setenv(VERIFY_ENV, verify)
        same = verify == ""                            # stat keys cannot see the swap
        assert (ClipDataset(root).cache_key() == clip_key) is same
        assert (voc_cache_key(voc) == voc_key) is same
