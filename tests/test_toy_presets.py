"""Toy world presets: the oracle world unchanged, the realistic world's audio measured
against its knobs, the same pictures under every preset, knobs bounded and recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, norm
from typer.testing import CliRunner

from harness.api.errors import BadInputError
from harness.data.clips import ClipDataset
from harness.data.toy import ToyConfig, generate_clips, generate_voc
from harness.data.toy.config import (AUDIOSET_SILENT, PRESETS, SOUNDTRACK_KNOBS,
                                     config_from_knobs)
from harness.data.toy.generate import item_rng
from harness.data.toy.picture import render
from harness.data.toy.sound import synthesize
from harness.data.toy.soundtrack import SOUNDTRACK_COLUMNS, parse_events, soundtrack
from harness.data.toy.world import sample_composition
from harness.runtime.cache import hash_params

REPO = Path(__file__).resolve().parents[1]
#: confidence of every interval a measured share is checked against
CONFIDENCE = 0.999


def _digest(root: Path, pattern: str = "*") -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob(pattern)):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def _share_ok(k: int, n: int, p: float) -> bool:
    """Whether ``k`` successes in ``n`` is within the exact binomial interval around ``p``."""
    ci = binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    return ci.low <= p <= ci.high


def test_the_oracle_preset_is_the_default_and_keeps_the_frozen_identity():
    """The protocol's world digest (and so every record's and cache key's) is unchanged:
    the oracle's config form holds no soundtrack knob."""
    oracle = ToyConfig.preset("oracle")
    assert oracle == ToyConfig() and oracle.preset_label == "oracle"
    assert not oracle.has_soundtrack
    assert not set(SOUNDTRACK_KNOBS) & set(oracle.to_dict())
    frozen = json.loads((REPO / "leaderboards" / "PROTOCOL.json").read_text())
    assert hash_params(oracle.to_dict()) == frozen["data"]["toy_config"]
    # a knob that is on enters the form, and so the identity
    assert hash_params(oracle.replace(music_prob=0.2).to_dict()) != frozen["data"]["toy_config"]


def test_oracle_audio_is_the_oracle_mix_and_its_dataset_gains_no_column(tmp_path):
    cfg = ToyConfig()
    for i in range(4):
        rng_a, rng_b = item_rng(5, 0, i), item_rng(5, 0, i)
        comp = sample_composition(rng_a, cfg, cfg.clip_object_counts)
        assert comp == sample_composition(rng_b, cfg, cfg.clip_object_counts)
        audio, truth = soundtrack(rng_a, comp, cfg)
        assert audio.tobytes() == synthesize(rng_b, comp, cfg).tobytes()
        assert all(e.kind == "object" and e.onset == 0 for e in truth.events)
    ds = generate_clips(tmp_path / "o", 4, seed=5, jobs=1, progress=False)
    assert ds.extra_columns == ["scene", "objects", "sounding", "loudest"]
    assert "preset" not in ds.metadata


def test_presets_draw_the_same_pictures(tmp_path):
    """A world seed gives the same frames, objects and toy VOC under both presets; only
    the audio differs."""
    realistic = ToyConfig.preset("realistic")
    a = generate_clips(tmp_path / "a", 24, seed=7, jobs=1, progress=False)
    b = generate_clips(tmp_path / "b", 24, seed=7, config=realistic, jobs=1, progress=False)
    assert _digest(a.root, "*.png") == _digest(b.root, "*.png")
    for col in ("scene", "objects"):
        assert a.column(col) == b.column(col)
    assert _digest(a.root, "*.wav") != _digest(b.root, "*.wav")
    # the composition and picture draws of a VOC image, with the audio knobs as they are
    for i in range(12):
        pictures = []
        for cfg in (ToyConfig(), realistic):
            rng = item_rng(3, 1, i)
            pixels, placed = render(rng, sample_composition(rng, cfg, cfg.voc_object_counts), cfg)
            pictures.append((pixels.tobytes(), placed))
        assert pictures[0] == pictures[1]
    oracle_voc = generate_voc(tmp_path / "vo", seed=3, n_trainval=10, n_test=6, jobs=1,
                              progress=False)
    realistic_voc = generate_voc(tmp_path / "vr", seed=3, config=realistic, n_trainval=10,
                                 n_test=6, jobs=1, progress=False)
    assert _digest(oracle_voc) == _digest(realistic_voc)      # marker (identity) included


def test_turning_one_knob_off_leaves_the_other_clips_audio_as_it_was(tmp_path):
    """Single-knob comparisons are paired: without music beds, the clips that had none
    sound exactly as before, and the others differ."""
    realistic = ToyConfig.preset("realistic", image_size=32)
    a = generate_clips(tmp_path / "a", 30, seed=2, config=realistic, jobs=1, progress=False)
    b = generate_clips(tmp_path / "b", 30, seed=2, config=realistic.replace(music_prob=0.0),
                       jobs=1, progress=False)
    had_music = ["music" in beds.split(";") for beds in a.column("beds")]
    assert any(had_music) and not all(had_music)
    for clip_a, clip_b, music in zip(a.clips, b.clips, had_music):
        same = clip_a.audio.read_bytes() == clip_b.audio.read_bytes()
        assert same != music


@pytest.fixture(scope="module")
def realistic_world(tmp_path_factory):
    cfg = ToyConfig.preset("realistic", image_size=32)
    return generate_clips(tmp_path_factory.mktemp("real") / "ds", 300, seed=11, config=cfg,
                          jobs=1, progress=False)


def test_realistic_world_records_its_preset_and_knobs(realistic_world):
    meta = realistic_world.metadata
    assert meta["preset"] == "realistic"
    cfg = ToyConfig.from_dict(meta["config"])
    assert cfg == ToyConfig.preset("realistic", image_size=32)
    for knob, value in PRESETS["realistic"].items():
        recorded = meta["config"][knob]
        assert (tuple(recorded) if isinstance(recorded, list) else recorded) == value
    assert realistic_world.extra_columns == ["scene", "objects", "sounding", "loudest",
                                             *SOUNDTRACK_COLUMNS]


def test_realistic_world_statistics_match_its_knobs(realistic_world):
    """Measured from the manifest's ground truth of a written world, each share lies in
    its exact binomial interval (99.9%) around the knob; the mean event length in its
    normal interval; levels within 0-24 dB and uniform over it."""
    cfg = ToyConfig.from_dict(realistic_world.metadata["config"])
    clips = realistic_world.clips
    n = len(clips)
    window = cfg.num_samples / cfg.sample_rate
    events = [parse_events(c.extra["events"]) for c in clips]

    def count(pred) -> int:
        return sum(1 for c, ev in zip(clips, events) if pred(c, ev))

    assert _share_ok(count(lambda c, ev: c.extra["unrelated"] == "1"), n, cfg.unrelated_prob)
    assert _share_ok(count(lambda c, ev: any(e.kind == "offscreen" for e in ev)), n,
                     cfg.offscreen_prob)
    assert _share_ok(count(lambda c, ev: any(e.kind == "music" for e in ev)), n, cfg.music_prob)
    assert _share_ok(count(lambda c, ev: any(e.kind == "narration" for e in ev)), n,
                     cfg.narration_prob)
    # audible share of the drawn objects of sounding classes
    heard = sum(1 for ev in events for e in ev if e.kind == "object")
    muted = sum(1 for c in clips for name in filter(None, c.extra["muted"].split(";"))
                if name not in cfg.silent_classes)
    assert _share_ok(heard, heard + muted, cfg.sound_prob)
    sources = [e for ev in events for e in ev if e.kind in ("object", "offscreen")]
    assert not {e.name for e in sources} & set(AUDIOSET_SILENT)
    # events start and stop within the window, sounding event_share of it on average
    shares = np.array([(e.offset - e.onset) / window for e in sources])
    assert all(0 < e.onset < e.offset < window for e in sources)
    half = norm.ppf(0.5 + CONFIDENCE / 2) * shares.std(ddof=1) / np.sqrt(shares.size)
    assert abs(shares.mean() - cfg.event_share) <= half, (shares.mean(), half)
    # levels: all within the range; the uniformly drawn ones (off-screen sources, beds)
    # fall in each quarter of it a quarter of the time
    lo, hi = cfg.object_gain_db
    gains = [e.gain_db for ev in events for e in ev]
    assert lo - 0.005 <= min(gains) and max(gains) <= hi + 0.005
    uniform = np.array([e.gain_db for ev in events for e in ev if e.kind != "object"])
    quarters = np.minimum(((uniform - lo) / (hi - lo) * 4).astype(int), 3)
    for q in range(4):
        assert _share_ok(int((quarters == q).sum()), uniform.size, 0.25), q
    # an off-screen source is never a class drawn in the frame; a related clip is heard in
    # the frame's scene
    for c, ev in zip(clips, events):
        if c.extra["unrelated"] == "0":
            assert c.extra["heard_scene"] == c.extra["scene"]
            drawn = set(filter(None, c.extra["objects"].split(";")))
            assert not {e.name for e in ev if e.kind == "offscreen"} & drawn


def test_the_audio_sounds_where_the_ground_truth_says(realistic_world):
    """Clips with one loud source and no bed: the audio is louder inside the event's span
    than outside it (the manifest describes the written audio, not just the draws)."""
    cfg = ToyConfig.from_dict(realistic_world.metadata["config"])
    frame = cfg.sample_rate // 20
    checked = 0
    for i, c in enumerate(realistic_world.clips):
        ev = parse_events(c.extra["events"])
        if len(ev) != 1 or ev[0].gain_db < 12 or ev[0].offset - ev[0].onset > 2.5:
            continue
        wave = realistic_world.load_audio(i)
        rms = np.sqrt((wave[: wave.size // frame * frame].reshape(-1, frame) ** 2).mean(1))
        t = (np.arange(rms.size) + 0.5) * frame / cfg.sample_rate
        inside = (t > ev[0].onset + 0.05) & (t < ev[0].offset - 0.05)
        outside = (t < ev[0].onset - 0.05) | (t > ev[0].offset + 0.05)
        assert np.median(rms[inside]) > 2 * np.median(rms[outside]), (c.clip_id, ev)
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("knob, value", [
    ("offscreen_prob", 1.2), ("music_prob", -0.1), ("narration_prob", 2.0),
    ("unrelated_prob", -1.0), ("event_share", 0.0), ("event_share", 1.5),
    ("object_gain_db", (10.0, -10.0)), ("object_gain_db", (0.0, 90.0)),
    ("sound_prob", 1.01), ("silent_classes", ("unicorn",)),
])
def test_a_knob_out_of_bounds_is_refused_by_name(knob, value):
    with pytest.raises(BadInputError, match=f"--{knob.replace('_', '-')}: .*"):
        config_from_knobs("realistic", {knob: value})


def test_preset_labels_follow_the_knobs():
    realistic = ToyConfig.preset("realistic")
    assert realistic.preset_label == "realistic" and realistic.has_soundtrack
    assert realistic.replace(offscreen_prob=0).preset_label == "realistic with offscreen_prob=0.0"
    assert ToyConfig(music_prob=0.2).preset_label == "oracle with music_prob=0.2"
    assert ToyConfig.preset("realistic").replace(music_prob=0).to_dict() == \
        ToyConfig.preset("realistic").replace(music_prob=0.0).to_dict()
    with pytest.raises(BadInputError, match="unknown preset"):
        ToyConfig.preset("cinema")


def test_cli_writes_the_preset_and_refuses_a_bad_knob(tmp_path):
    from harness.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["data", "toy", "--out", str(tmp_path / "t"), "--clips", "3",
                                 "--jobs", "1", "--preset", "realistic", "--music-prob", "1",
                                 "--silent-classes", "none", "--object-gain-db", "-5,5"])
    assert result.exit_code == 0, result.output
    ds = ClipDataset(tmp_path / "t")
    cfg = ToyConfig.from_dict(ds.metadata["config"])
    assert cfg.music_prob == 1.0 and cfg.silent_classes == () and cfg.object_gain_db == (-5, 5)
    assert ds.metadata["preset"].startswith("realistic with ")
    assert all("music" in beds for beds in ds.column("beds"))
    for args, option in ((["--event-share", "2"], "--event-share"),
                         (["--object-gain-db", "loud"], "--object-gain-db"),
                         (["--preset", "cinema"], "--preset")):
        result = runner.invoke(app, ["data", "toy", "--out", str(tmp_path / "x"), "--clips",
                                     "2", *args])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {option}"), result.output
        assert not (tmp_path / "x").exists()


def test_a_run_world_records_only_what_differs_from_its_preset():
    """What a run records of its toy world: nothing for the default world (its records
    stay as they were), the preset otherwise, and each knob that differs from it."""
    from harness.data.toy.config import world_config, world_overrides

    assert world_overrides({}) == world_overrides(None) == world_overrides({"preset": "oracle"}) == {}
    assert world_config({}) == ToyConfig()
    assert world_overrides({"preset": "realistic", "music_prob": "0.2"}) == {"preset": "realistic"}
    assert world_overrides({"preset": "realistic", "music_prob": 0, "event_share": "1"}) == {
        "preset": "realistic", "music_prob": 0.0, "event_share": 1.0}
    assert world_config({"preset": "realistic", "offscreen_prob": "0"}) == \
        ToyConfig.preset("realistic", offscreen_prob=0.0)
    with pytest.raises(BadInputError, match="--toy-knob music_prob: "):
        world_overrides({"music_prob": 2}, option=lambda k: f"--toy-knob {k}")
    with pytest.raises(BadInputError, match="unknown knob"):
        world_config({"colour": "red"})


def test_a_realistic_world_is_the_same_for_a_seed_whatever_the_workers(tmp_path):
    cfg = ToyConfig.preset("realistic", image_size=32)
    one = generate_clips(tmp_path / "one", 30, seed=4, config=cfg, jobs=1, progress=False)
    two = generate_clips(tmp_path / "two", 30, seed=4, config=cfg, jobs=2, progress=False)
    assert _digest(one.root) == _digest(two.root) and one.fingerprint() == two.fingerprint()


def test_a_run_on_the_realistic_world_gets_its_own_clips_and_records_it(tmp_path, monkeypatch):
    """``harness run --toy-preset realistic``: the clips come from the realistic world
    (cached apart, same frames), the override is recorded and survives a launcher's job
    file; the default run's clips keep the cache key the oracle world always had."""
    from harness.data.toy import WORLD_VERSION
    from harness.launch.jobs import config_from_json, config_to_json
    from harness.pipeline.config import RunConfig
    from harness.pipeline.data_stage import toy_clips
    from harness.runtime.cache import stage_key

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    default = RunConfig(toy_clips=6, progress=False)
    real = RunConfig(toy_clips=6, progress=False, toy_world={"preset": "realistic"})
    assert "toy_world" not in default.overrides()
    assert "toy_world" not in RunConfig(toy_world={"preset": "oracle"}).overrides()
    assert real.overrides()["toy_world"] == {"preset": "realistic"}
    assert config_from_json(json.loads(json.dumps(config_to_json(real)))).overrides() == real.overrides()
    a = toy_clips(default.resolved_profile(), 0, progress=False)
    b = toy_clips(real.resolved_profile(), 0, progress=False)
    assert a.name == stage_key("toy-clips", WORLD_VERSION, 6, 0, ToyConfig().to_dict())
    assert a != b
    assert ClipDataset(b).metadata["preset"] == "realistic"
    assert "preset" not in ClipDataset(a).metadata
    assert _digest(a, "*.png") == _digest(b, "*.png")
    with pytest.raises(BadInputError, match="--toy-knob music_prob"):
        RunConfig(toy_world={"preset": "realistic", "music_prob": 7})
