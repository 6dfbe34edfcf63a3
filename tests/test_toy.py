"""The toy audio-visual world: formats, determinism, signal, honesty, bad input."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.data.clips import ClipDataset
from harness.api.errors import BadInputError
from harness.data.toy import ToyConfig, generate_clips, generate_voc
from harness.data.toy.generate import item_rng
from harness.data.toy.sound import ambience, object_sound, synthesize
from harness.data.toy.world import COLOURS, LOOKS, SCENES, SHAPES, SOUNDS, Composition, ObjectDraw
from harness.data.voc import CLASSES, read_voc


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return generate_clips(tmp_path_factory.mktemp("toy") / "ds", 30, seed=3, jobs=1)


def test_clip_dataset_format(clips):
    cfg = ToyConfig()
    assert len(clips) == 30
    assert clips.extra_columns == ["scene", "objects", "sounding", "loudest"]
    meta = clips.metadata
    assert meta["seed"] == 3 and ToyConfig.from_dict(meta["config"]) == cfg
    assert meta["report"]["skipped"] == {}
    item = clips[0]
    assert item["image"].size == (64, 64)
    assert item["waveform"].shape == (cfg.num_samples,) == (78750,)
    assert clips.clips[0].sample_rate == 21000
    scenes = {s.name for s in SCENES}
    for c in clips.clips:
        assert c.extra["scene"] in scenes
        for col in ("objects", "sounding"):
            assert all(name in CLASSES for name in filter(None, c.extra[col].split(";")))
        assert c.extra["loudest"] in ("", *c.extra["sounding"].split(";"))


def test_same_seed_same_bytes_any_jobs(clips, tmp_path):
    again = generate_clips(tmp_path / "a", 30, seed=3, jobs=2)
    assert again.fingerprint() == clips.fingerprint()
    assert _digest(tmp_path / "a") == _digest(clips.root)
    other = generate_clips(tmp_path / "b", 30, seed=4, jobs=1)
    assert other.fingerprint() != clips.fingerprint()


def test_regenerate_in_place_and_refuse_foreign_folder(tmp_path):
    out = tmp_path / "ds"
    generate_clips(out, 3, seed=0, jobs=1)
    ds = generate_clips(out, 2, seed=1, jobs=1)
    assert len(ds) == 2 and ds.metadata["seed"] == 1
    assert len(list((out / "audio").rglob("*.wav"))) == 2
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(BadInputError, match="not empty"):
        generate_clips(foreign, 2, seed=0, jobs=1)
    assert (foreign / "thesis.txt").read_text() == "precious"


def test_no_class_is_found_by_colour_or_shape_alone():
    assert sorted(LOOKS) == sorted(CLASSES) and len(set(LOOKS.values())) == 20
    colours = Counter(c for _, c in LOOKS.values())
    shapes = Counter(s for s, _ in LOOKS.values())
    assert set(colours) == set(COLOURS) and min(colours.values()) >= 4
    assert set(shapes) == set(SHAPES) and min(shapes.values()) >= 4
    assert sorted(SOUNDS) == sorted(CLASSES)
    assert {c for s in SCENES for c in s.typical} == set(CLASSES)


def test_sound_says_which_object_not_which_scene():
    """Single-object clips in random scenes: a clip's nearest neighbour in (log band energy)
    sound space is mostly a clip of the same object class, far more often than one of
    the same scene: the sound carries the object, the ambience stays in the background."""
    cfg = ToyConfig()
    edges = np.unique(np.geomspace(2, 512, 41).astype(int))  # log-spaced bands of 1024-pt FFT
    feats, classes, scenes = [], [], []
    for i in range(80):
        rng = item_rng(99, 0, i)
        cls, scene = i % 20, int(rng.integers(len(SCENES)))
        comp = Composition(scene, (ObjectDraw(cls, True, float(rng.uniform(*cfg.object_gain_db))),))
        wave = synthesize(rng, comp, cfg)[: 20 * 1024]  # 1 s: the sounds are stationary
        power = (np.abs(np.fft.rfft(wave.reshape(20, 1024) * np.hanning(1024))) ** 2).mean(0)
        feats.append(np.log(np.add.reduceat(power, edges) + 1e-10))
        classes.append(cls)
        scenes.append(scene)
    f = np.stack(feats)
    f = (f - f.mean(0)) / f.std(0)
    d = ((f[:, None] - f[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = d.argmin(1)
    classes, scenes = np.array(classes), np.array(scenes)
    same_class, same_scene = np.mean(classes[nn] == classes), np.mean(scenes[nn] == scenes)
    # chance: 1/20 for the class, 1/8 for the scene
    assert same_class > 0.7 and same_class > same_scene + 0.2, (same_class, same_scene)


def test_objects_are_loud_and_stationary():
    cfg = ToyConfig()
    rng = np.random.default_rng(0)
    for cls in range(20):
        s = object_sound(rng, cls, cfg)
        assert s.shape == (cfg.num_samples,) and abs(np.sqrt(np.mean(s * s)) - 1) < 1e-3
        # stationary: the energy of 0.5 s blocks varies little (no slow random modulation)
        blocks = (s[: 7 * 10500].reshape(7, 10500) ** 2).mean(1)
        assert blocks.max() / blocks.min() < 1.3, CLASSES[cls]
    amb = ambience(rng, 0, cfg)
    assert abs(np.sqrt(np.mean(amb * amb)) - 1) < 1e-3
    quiet = Composition(0, ())
    loud = Composition(0, (ObjectDraw(3, True, 12.0),))
    a = synthesize(np.random.default_rng(1), quiet, cfg)
    b = synthesize(np.random.default_rng(1), loud, cfg)
    gain_db = 20 * np.log10(np.sqrt(np.mean(b ** 2)) / np.sqrt(np.mean(a ** 2)))
    assert gain_db > 11.5 and np.abs(b).max() <= 1.0


def test_toy_voc_is_read_by_the_real_reader(tmp_path):
    voc = generate_voc(tmp_path / "v", seed=1, n_trainval=40, n_test=20, jobs=1)
    assert voc.name == "VOC2007" and (voc / "toy.json").is_file()
    train, val = read_voc(voc, "train"), read_voc(voc, "val")
    trainval, test = read_voc(tmp_path / "v", "trainval"), read_voc(voc, "test")
    assert len(train) == len(val) == 20 and len(trainval) == 40 and len(test) == 20
    assert {i.image_id for i in train} | {i.image_id for i in val} == {i.image_id for i in trainval}
    assert not {i.image_id for i in trainval} & {i.image_id for i in test}
    targets = np.stack([i.targets for i in trainval + test])
    assert (targets != 0).any(axis=1).all()          # every image has an object
    assert (targets == 1).sum() > 50 and (targets == -1).any()  # some difficult-only labels
    objs = [o for i in trainval for o in i.objects]
    assert all(1 <= o.bbox[0] <= o.bbox[2] <= 64 and 1 <= o.bbox[1] <= o.bbox[3] <= 64 for o in objs)
    # per-class files agree with the XML (1 present, -1 absent, 0 difficult only)
    lines = (voc / "ImageSets/Main/dog_test.txt").read_text().split("\n")
    by_id = {i.image_id: i.targets[CLASSES.index("dog")] for i in test}
    for line in filter(None, lines):
        image_id, flag = line.split()
        assert {1: 1, -1: 0, 0: -1}[int(flag)] == by_id[image_id]
    from PIL import Image

    with Image.open(train[0].path) as im:
        assert im.format == "JPEG" and im.size == (64, 64)
    again = generate_voc(tmp_path / "w", seed=1, n_trainval=40, n_test=20, jobs=2)
    assert _digest(again) == _digest(voc)


def _split_bytes(voc, split):
    """The JPEG and XML bytes of a split's images, keyed by image id."""
    ids = (voc / "ImageSets/Main" / f"{split}.txt").read_text().split()
    return {i: (voc / "JPEGImages" / f"{i}.jpg").read_bytes()
            + (voc / "Annotations" / f"{i}.xml").read_bytes() for i in ids}


def test_toy_voc_test_split_sealed_by_its_own_seed(tmp_path):
    """test_seed redraws the test images only; trainval (and train/val) stay as they were,
    and the marker says which seed drew the test split."""
    plain = generate_voc(tmp_path / "a", seed=1, n_trainval=20, n_test=10, jobs=1,
                         progress=False)
    same = generate_voc(tmp_path / "b", seed=1, n_trainval=20, n_test=10, jobs=1,
                        progress=False, test_seed=1)
    sealed = generate_voc(tmp_path / "c", seed=1, n_trainval=20, n_test=10, jobs=1,
                          progress=False, test_seed=7)
    assert _digest(same) == _digest(plain)          # None means the trainval seed
    for split in ("trainval", "train", "val"):
        assert _split_bytes(sealed, split) == _split_bytes(plain, split)
    new, old = _split_bytes(sealed, "test"), _split_bytes(plain, "test")
    assert set(new) == set(old)                     # the same ids, other pictures
    assert all(new[i] != old[i] for i in new)
    assert json.loads((sealed / "toy.json").read_text())["test_seed"] == 7
    assert json.loads((plain / "toy.json").read_text())["test_seed"] == 1


def test_pipeline_toy_voc_seals_one_test_split_per_world(tmp_path, monkeypatch):
    """harness run's toy VOC: test seed = the profile's sealed seed + the world seed, in the
    cache key, so three worlds have three sealed test sets."""
    from dataclasses import replace

    from harness.pipeline.data_stage import profile_toy_voc, toy_test_seed
    from harness.profiles import get_profile

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    profile = replace(get_profile("toy"), toy_voc_images=(20, 10))
    assert profile.toy_test_seed is not None
    roots = [profile_toy_voc(profile, w, progress=False) for w in (0, 1)]
    assert roots[0] != roots[1]
    for w, root in enumerate(roots):
        marker = json.loads((root / "VOC2007" / "toy.json").read_text())
        assert marker["test_seed"] == toy_test_seed(profile, w) == profile.toy_test_seed + w
    assert profile_toy_voc(profile, 0, progress=False) == roots[0]      # cached
    unsealed = profile_toy_voc(replace(profile, toy_test_seed=None), 0, progress=False)
    assert unsealed != roots[0]
    assert (_split_bytes(unsealed / "VOC2007", "trainval")
            == _split_bytes(roots[0] / "VOC2007", "trainval"))


def test_voc_refuses_foreign_folder(tmp_path):
    (tmp_path / "VOC2007").mkdir()
    with pytest.raises(BadInputError, match="not written by the toy generator"):
        generate_voc(tmp_path, seed=0, n_trainval=4, n_test=2, jobs=1)


@pytest.mark.parametrize("changes, message", [
    ({"image_size": 8}, "image_size"),
    ({"clip_object_counts": (0.5, 0.5, 0.5, 0.0)}, "summing to 1"),
    ({"voc_object_counts": (0.1, 0.3, 0.3, 0.3)}, "must be 0"),
    ({"silent_classes": ("dragon",)}, "unknown classes"),
    ({"object_scale": (0.5, 0.1)}, "object_scale"),
    ({"sound_prob": 1.5}, "sound_prob"),
])
def test_bad_config(changes, message):
    with pytest.raises(BadInputError, match=message):
        ToyConfig().replace(**changes)


def test_config_roundtrip_and_unknown_keys():
    cfg = ToyConfig(image_size=96, silent_classes=("sofa",))
    assert ToyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(BadInputError, match="unknown parameter"):
        ToyConfig.from_dict({"colour": "red"})


def test_silent_classes_are_never_heard(tmp_path):
    cfg = ToyConfig(silent_classes=tuple(CLASSES))
    ds = generate_clips(tmp_path / "s", 6, seed=0, config=cfg, jobs=1)
    assert set(ds.column("sounding")) == {""}


def test_cli(tmp_path):
    from harness.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["data", "toy", "--out", str(tmp_path / "t"), "--clips", "3",
                                 "--seed", "2", "--jobs", "1", "--image-size", "96"])
    assert result.exit_code == 0, result.output
    ds = ClipDataset(tmp_path / "t")
    assert len(ds) == 3 and ds.load_frame(0).size == (96, 96)
    result = runner.invoke(app, ["data", "toy-voc", "--out", str(tmp_path / "v"), "--trainval",
                                 "4", "--test", "2", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert len(read_voc(tmp_path / "v", "test")) == 2
    result = runner.invoke(app, ["data", "info", str(tmp_path / "t")])
    assert result.exit_code == 0 and "3 clips" in result.output
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f.txt").write_text("x")
    result = runner.invoke(app, ["data", "toy", "--out", str(tmp_path / "x"), "--clips", "2"])
    assert result.exit_code == 2 and "error:" in result.output and "not empty" in result.output
