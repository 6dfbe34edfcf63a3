"""The paper profile rehearsed end to end at micro scale, on data in real formats.

What a new user with real data does, in one module: videos encoded here with PyAV in
several real codecs and layouts (H.264 with 5.1 AAC, MP3 in MP4, MPEG-4 Part 2 with Opus
whose audio ends 3 s before the picture, VP8 with mono Opus, MPEG-4 with MP3 in AVI) are
cut into clips by ``harness data ingest``; a VOCdevkit of JPEGs at VOC2007's image sizes,
with the XML quirks of the real annotations (pretty-printed whitespace, ``<truncated>``,
``<difficult>`` set, absent, or padded, ``<pose>`` missing, a float-looking coordinate,
``<part>`` elements inside a person) and the four ImageSets; then ``harness run
--profile paper`` at 224 px with every evaluator at tiny iteration counts, and ``harness
leaderboard`` on its results. Then a checkpoint whose activations exceed float16's range
goes through the frozen-feature evaluators: float32 storage (the paper profile's) scores
it, float16 storage refuses it with one error naming the checkpoint and the layer.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.data.clips import ClipDataset
from harness.results.records import read_record
from harness.data.voc import CLASSES, read_voc
from tests.media import write_video

pytestmark = pytest.mark.slow

SECONDS = 20.0
#: file name -> write_video arguments; each video has its own tone, so sound clusters exist
VIDEOS = {
    "street/h264-aac51.mp4": dict(vcodec="libx264", acodec="aac", channels=6, tone_hz=220),
    "h264-mp3.mp4": dict(vcodec="libx264", acodec="libmp3lame", tone_hz=440),
    "short-audio.mkv": dict(vcodec="mpeg4", acodec="libopus", audio_seconds=SECONDS - 3,
                            tone_hz=880),
    "vp8-mono.webm": dict(vcodec="libvpx", acodec="libopus", channels=1, tone_hz=1760),
    "xvid-mp3.avi": dict(vcodec="mpeg4", acodec="libmp3lame", tone_hz=3520),
}
EVALUATORS = ("voc07_linear", "voc07_full", "linear_probe", "voc07_svm", "voc07_lowshot", "knn")
#: VOC2007's common image sizes, (width, height)
VOC_SIZES = ((500, 375), (375, 500), (486, 500), (500, 333))
#: images per split of the micro VOC
VOC_SPLIT = {"train": 20, "val": 20, "test": 20}
K = 4
EPOCHS = 2


# ----------------------------------------------------------------------------- the VOCdevkit
def _colour(c: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(c)
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _object_xml(name: str, box: tuple, *, quirk: int, difficult: int) -> str:
    """One ``<object>`` as VOC's files write it, with one of the real files' quirks."""
    x0, y0, x1, y1 = box
    pose = "" if quirk == 1 else "\t\t<pose>Unspecified</pose>\n"
    if quirk == 2:          # no <difficult> element (read as 0)
        diff = ""
    elif quirk == 3:        # padded with whitespace
        diff = f"\t\t<difficult> {difficult} </difficult>\n"
    else:
        diff = f"\t\t<difficult>{difficult}</difficult>\n"
    xmin = f"{x0}.0" if quirk == 3 else str(x0)       # a float-looking coordinate
    parts = ""
    if name == "person" and quirk == 0:               # layout parts inside a person
        parts = ("\t\t<part>\n\t\t\t<name>head</name>\n\t\t\t<bndbox>\n"
                 f"\t\t\t\t<xmin>{x0}</xmin>\n\t\t\t\t<ymin>{y0}</ymin>\n"
                 f"\t\t\t\t<xmax>{x0 + 10}</xmax>\n\t\t\t\t<ymax>{y0 + 10}</ymax>\n"
                 "\t\t\t</bndbox>\n\t\t</part>\n")
    return (f"\t<object>\n\t\t<name>{name}</name>\n{pose}"
            f"\t\t<truncated>{int(quirk == 2)}</truncated>\n{diff}"
            f"\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{y0}</ymin>\n"
            f"\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>\n\t\t</bndbox>\n{parts}"
            "\t</object>\n")


def make_vocdevkit(root: Path) -> Path:
    """A VOCdevkit/VOC2007 of JPEGs at VOC's sizes. Image i of a split shows class i mod 20
    (never difficult) and class (i + 7) mod 20 (difficult in one image of five), each as a
    rectangle of its colour on noise, so every class has positives in every split."""
    from PIL import Image

    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    rng = np.random.default_rng(2007)
    ids: dict[str, list[str]] = {}
    presence: dict[str, dict[str, set[int]]] = {}
    number = 1
    for split, count in VOC_SPLIT.items():
        ids[split], presence[split] = [], {}
        for i in range(count):
            image_id = f"{number:06d}"
            number += 1
            w, h = VOC_SIZES[i % len(VOC_SIZES)]
            img = rng.integers(60, 190, size=(h, w, 3)).astype(np.uint8)
            objects, present = [], set()
            for j, (c, difficult) in enumerate([(i % 20, 0), ((i + 7) % 20, int(i % 5 == 0))]):
                x0, y0 = (20, 30) if j == 0 else (w // 2, h // 2)
                x1, y1 = x0 + w // 3, y0 + h // 3
                img[y0:y1, x0:x1] = _colour(c)
                objects.append(_object_xml(CLASSES[c], (x0 + 1, y0 + 1, x1, y1),
                                           quirk=(i + j) % 4, difficult=difficult))
                present.add(c)
            Image.fromarray(img).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
            (voc / "Annotations" / f"{image_id}.xml").write_text(
                "<annotation>\n\t<folder>VOC2007</folder>\n"
                f"\t<filename>{image_id}.jpg</filename>\n"
                "\t<source>\n\t\t<database>The VOC2007 Database</database>\n"
                "\t\t<annotation>PASCAL VOC2007</annotation>\n\t\t<image>flickr</image>\n"
                "\t</source>\n\t<owner>\n\t\t<name>?</name>\n\t</owner>\n"
                f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n"
                "\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n"
                + "".join(objects) + "</annotation>\n")
            ids[split].append(image_id)
            presence[split][image_id] = present
    ids["trainval"] = ids["train"] + ids["val"]
    presence["trainval"] = {**presence["train"], **presence["val"]}
    main = voc / "ImageSets" / "Main"
    for split, lst in ids.items():
        (main / f"{split}.txt").write_text("\n".join(lst) + "\n")
        for c, name in enumerate(CLASSES):      # the per-class lists the devkit ships
            (main / f"{name}_{split}.txt").write_text("".join(
                f"{i} {1 if c in presence[split][i] else -1:2d}\n" for i in lst))
    return root / "VOCdevkit"


# ----------------------------------------------------------------------------- the rehearsal
def invoke(args: list[str]):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """Videos -> ingest -> ``harness run --profile paper`` -> ``harness leaderboard``."""
    root = tmp_path_factory.mktemp("rehearsal")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        videos = root / "videos"
        for name, kw in VIDEOS.items():
            write_video(videos / name, SECONDS, size=(160, 120), **kw)
        clips = root / "clips"
        ingest = invoke(["data", "ingest", "--videos", videos, "--out", clips])
        assert ingest.exit_code == 0, ingest.output
        voc = make_vocdevkit(root)
        results = root / "results"
        # iterations reaches the two VOC07 training evaluators; "All" (every layer trained
        # at 224 px, about 17 s an iteration on a busy 2-core CPU) gets fewer, scoped
        params = ["iterations=20", "voc07_full.iterations=4",
                  "voc07_svm.costs=[0.1,1.0]", "voc07_svm.folds=2",
                  "voc07_lowshot.ks=[1,2]", "voc07_lowshot.samples=2",
                  "voc07_lowshot.costs=[1.0]", "linear_probe.weight_decays=[0.0001]"]
        run = invoke(["run", "--profile", "paper", "--backbone", "resnet18", "--repr", "mfcc",
                      "--k", K, "--epochs", EPOCHS, "--clips", clips, "--voc", voc,
                      "--results", results, "--no-progress", "--device", "cpu",
                      *[a for e in EVALUATORS for a in ("--eval", e)],
                      *[a for p in params for a in ("--eval-param", p)]])
        assert run.exit_code == 0, run.output
        (record_path,) = sorted(results.glob("*.json"))
        board = root / "board"
        leaderboard = invoke(["leaderboard", "--results", results, "--out", board])
        yield SimpleNamespace(root=root, videos=videos, clips=clips, voc=voc, results=results,
                              ingest=ingest, run=run, record=read_record(record_path),
                              leaderboard=leaderboard, board=board, cache=root / "cache")


def test_every_real_format_is_ingested_and_the_short_audio_bounds_its_clips(rehearsal):
    ds = ClipDataset(rehearsal.clips)
    by_video: dict[str, list[float]] = {}
    for clip in ds.clips:
        by_video.setdefault(clip.video, []).append(clip.timestamp)
    assert set(by_video) == set(VIDEOS)
    assert ds.metadata["report"]["skipped"] == {k: 0 for k in ds.metadata["report"]["skipped"]}
    # the Opus track ends 3 s before the picture: no clip's window runs past the audio
    window = ds.metadata["config"]["window"]
    assert max(by_video["short-audio.mkv"]) + window / 2 <= SECONDS - 3 + 1e-6
    assert len(by_video["short-audio.mkv"]) < len(by_video["h264-mp3.mp4"])
    # the 5.1 track is mixed down to mono at the dataset's rate
    i = next(n for n, c in enumerate(ds.clips) if c.video == "street/h264-aac51.mp4")
    wave = ds.load_audio(i)
    assert wave.ndim == 1 and wave.size == round(window * ds.clips[i].sample_rate)
    assert 0.05 < float(np.abs(wave).max()) <= 1.0


def test_the_vocdevkit_quirks_read_as_voc_reads_them(rehearsal):
    for split, count in {**VOC_SPLIT, "trainval": VOC_SPLIT["train"] + VOC_SPLIT["val"]}.items():
        images = read_voc(rehearsal.voc, split)
        assert len(images) == count
        targets = np.stack([im.targets for im in images])
        assert (targets == 1).any(axis=0).all()         # every class has a positive
    # the second object of image 0 of each split is difficult (with no easy instance of it)
    first = read_voc(rehearsal.voc, "train")[0]
    assert first.targets[7] == -1 and first.targets[0] == 1


def test_the_paper_run_records_its_profile_data_and_overrides(rehearsal):
    from harness.pipeline.data_stage import voc_fingerprint

    record, out = rehearsal.record, rehearsal.run.output
    config = record["config"]
    assert config["profile"] == "paper" and config["backbone"]["name"] == "resnet18"
    assert config["overrides"] == {"pretext_epochs": EPOCHS}
    assert record["pretext"]["profile"] == "paper"
    assert record["pretext"]["overrides"] == {"pretext_epochs": EPOCHS}
    assert record["pretext"]["settings"]["image_size"] == 224
    # the datasets' identities
    ds = ClipDataset(rehearsal.clips)
    assert record["dataset"]["fingerprint"] == ds.fingerprint()
    assert record["dataset"]["n_clips"] == len(ds)
    assert record["downstream"]["fingerprint"] == voc_fingerprint(rehearsal.voc)
    assert record["downstream"]["kind"] != "toy-voc"
    # every evaluator ran, on the parameters it declares: the unscoped iterations went to
    # the VOC07 training evaluators only, and the scoped value won over it
    metrics = record["metrics"]
    assert set(metrics) == set(EVALUATORS)
    assert all(math.isfinite(m["value"]) for m in metrics.values())
    params = {name: e["params"] for name, e in config["evaluators"].items()}
    assert params["voc07_linear"]["iterations"] == 20 and params["voc07_full"]["iterations"] == 4
    assert all("iterations" not in params[n]
               for n in ("linear_probe", "voc07_svm", "voc07_lowshot", "knn"))
    assert params["voc07_svm"]["folds"] == 2 and params["voc07_lowshot"]["ks"] == [1, 2]
    # the frozen features were stored as float32 under the paper profile
    assert metrics["knn"]["protocol"]["features"]["storage"] == "float32"
    # the run names the checkpoint it trained, beside the record
    line = next(x for x in out.splitlines() if x.startswith("checkpoint: "))
    checkpoint = Path(line.removeprefix("checkpoint: "))
    assert checkpoint.is_file() and str(checkpoint) == record["pretext"]["checkpoint"]
    assert any(x.startswith("record: ") for x in out.splitlines())


def test_the_pretext_split_keeps_each_video_on_one_side(rehearsal):
    from harness.pretext.data import split_indices

    ds = ClipDataset(rehearsal.clips)
    record = rehearsal.record
    settings = record["pretext"]["settings"]
    train, val = split_indices(len(ds), settings["val_fraction"], settings["seed"],
                               groups=ds.source_groups())
    assert len(val) > 0 and len(train) + len(val) == len(ds)
    videos = [c.video for c in ds.clips]
    assert not {videos[i] for i in train} & {videos[i] for i in val}


def test_the_leaderboard_page_exists_and_names_the_data(rehearsal):
    assert rehearsal.leaderboard.exit_code == 0, rehearsal.leaderboard.output
    pages = sorted(rehearsal.board.glob("*.md"))
    assert pages
    text = "\n".join(p.read_text() for p in pages)
    down = rehearsal.record["downstream"]
    # the page names the downstream data: its kind and the folder's fingerprint (or path)
    assert down["kind"] in text
    assert down["fingerprint"][:8] in text or str(rehearsal.voc) in text
    assert "resnet18" in text


# ----------------------------------------------------------------------------- float16's range
@pytest.fixture(scope="module")
def loud_checkpoint(rehearsal) -> Path:
    """The rehearsal's checkpoint with the last block's BatchNorm scaled by 1e5: stage4 and
    the pooled features then reach about 1e5, beyond float16's 65504 (a finite,
    well-formed checkpoint, as a real one whose fc7 overflowed float16 was)."""
    from harness.networks.checkpoint import load_pretrained, read_checkpoint, save_checkpoint

    source = Path(rehearsal.record["pretext"]["checkpoint"])
    obj = read_checkpoint(source)
    model = load_pretrained(source)
    bn = model.net.trunk.layer4[-1].bn2
    with torch.no_grad():
        bn.weight.mul_(1e5)
        bn.bias.mul_(1e5)
    out = rehearsal.root / "loud.pt"
    save_checkpoint(out, backbone_name=obj["backbone"], backbone=model.backbone, net=model.net,
                    output_kind=obj["output_kind"], image_size=obj["input_size"],
                    mean=tuple(obj["mean"]), std=tuple(obj["std"]), meta=obj["meta"])
    return out


def _eval(rehearsal, checkpoint: Path, evaluator: str, *params: str):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(rehearsal.cache))
        out = rehearsal.root / f"{evaluator}-{len(params)}.json"
        args = ["eval", "-e", evaluator, "-c", checkpoint, "--voc", rehearsal.voc, "--profile",
                "paper", "--device", "cpu", "--no-progress", "--out", out]
        result = invoke(args + [a for p in params for a in ("-p", p)])
        return result, out


def test_float32_storage_scores_activations_beyond_float16(rehearsal, loud_checkpoint):
    result, out = _eval(rehearsal, loud_checkpoint, "linear_probe", "weight_decays=[0.0001]")
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert all(math.isfinite(v) for v in metrics["breakdown"].values())
    assert metrics["protocol"]["features"]["storage"] == "float32"


@pytest.mark.parametrize("evaluator, params", [
    ("linear_probe", ("weight_decays=[0.0001]",)),
    ("voc07_svm", ("costs=[1.0]", "folds=2")),
    ("voc07_lowshot", ("ks=[1]", "samples=1", "costs=[1.0]")),
    ("knn", ()),
])
def test_float16_storage_refuses_them_with_one_error_naming_checkpoint_and_layer(
        rehearsal, loud_checkpoint, evaluator, params):
    result, out = _eval(rehearsal, loud_checkpoint, evaluator, "storage=float16", *params)
    assert result.exit_code == 2
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"error: {loud_checkpoint}: split 'trainval': layer stage4 has ")
    assert "values beyond float16's range (max 65504" in lines[0]
    assert not out.exists()
