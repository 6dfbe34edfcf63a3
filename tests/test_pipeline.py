"""`harness run` end to end on a tiny toy world: records, caching, baselines."""

import json
from pathlib import Path

import pytest

from harness.runtime.cache import cache_root
from harness.pipeline.config import RunConfig
from harness.pipeline.run import run, stage_summary
from harness.results.records import read_record

TINY = dict(backbone="timm:test_resnet", toy_clips=48, toy_voc_images=(160, 120), epochs=1,
            eval_params={"iterations": 3}, progress=False, k=4)


def _config(tmp_path: Path, **kw) -> RunConfig:
    return RunConfig(**{**TINY, "results": tmp_path / "results", **kw})


def _dirs(stage: str) -> set[str]:
    folder = cache_root() / stage
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def cache(own_cache):
    """The test's own cache folder (conftest.py's ``own_cache``)."""
    return own_cache


def test_sound_run_writes_a_valid_record_and_caches_every_stage(tmp_path, cache, monkeypatch):
    rows = []
    first = run(_config(tmp_path), echo=rows.append)
    record = read_record(first.path)
    assert record["config"]["init"] == "sound"
    assert record["config"]["repr"]["name"] == "mfcc"
    assert set(record["metrics"]) == {"voc07_linear", "voc07_full"}
    for m in record["metrics"].values():
        assert 0 <= m["value"] <= 100 and m["headline"] == "map"
    assert record["dataset"]["n_clips"] == 48
    # the toy clips' true objects score the clusters (NMI and purity, in [0, 1])
    told = record["labels"]["diagnostics"]["truth"]["objects"]
    assert 0 <= told["nmi"] <= 1 and 0 < told["purity"] <= 1
    assert "Head mAP" in rows[-2] and "All mAP" in rows[-2]
    # the stage-time summary names every recorded stage and the total, and each stage
    # said when it completed, in order
    summary = rows[-1]
    assert set(record["timings"]) == {"data", "features+labels", "pretrain", "voc07_linear",
                                      "voc07_full"}
    assert [r.partition(":")[0] for r in rows[:-2]] == ["data", "features+labels", "pretrain",
                                                        "voc07_linear", "voc07_full"]
    for stage in [*record["timings"], "total"]:
        assert stage in summary
    # the downstream identity says which world and which sealed test seed
    from harness.pipeline.data_stage import toy_test_seed
    from harness.profiles import get_profile

    down = record["downstream"]
    assert down["world_seed"] == 0 and down["test_seed"] == toy_test_seed(get_profile("toy"), 0)
    assert down["n_test"] == 120 and down["world_version"] >= 1
    # the per-image test scores lie beside the record and give its mAP back
    from harness.evaluation.ap import score_split
    from harness.results.records import read_test_scores

    assert (first.path.parent / record["test_scores"]["file"]).is_file()
    scores = read_test_scores(first.path, record)
    assert set(scores) == {"voc07_linear", "voc07_full"}
    for name, s in scores.items():
        assert s.split == "test" and s.scores.shape == (120, 20)
        again = score_split(s).mean()
        assert abs(again - record["metrics"][name]["value"]) < 1e-3   # float32 scores

    # the protocol `harness leaderboard --freeze` fingerprints is the one the run recorded
    from dataclasses import replace

    from harness import profiles
    from harness.results.protocol import current_protocol, record_fingerprints

    monkeypatch.setitem(profiles.PROFILES, "toy", replace(
        profiles.PROFILES["toy"], toy_voc_images=TINY["toy_voc_images"]))
    frozen = current_protocol("toy", params={name: TINY["eval_params"]
                                             for name in ("voc07_linear", "voc07_full")})
    assert record_fingerprints(record) == frozen.fingerprints()
    assert frozen.is_current(record)

    # a second identical run recomputes nothing: no cached file is written again
    before = _snapshot(cache)
    second = run(_config(tmp_path))
    assert _snapshot(cache) == before
    again = read_record(second.path)
    assert again["metrics"] == record["metrics"]
    assert again["test_scores"]["sha256"] == record["test_scores"]["sha256"]   # from the cache
    assert second.path != first.path            # records are never overwritten


def test_changing_k_redoes_clustering_onwards_only(tmp_path, cache):
    run(_config(tmp_path))
    features = _dirs("features")
    labels, pretrain = _dirs("labels"), _dirs("pretrain")
    run(_config(tmp_path, k=3))
    assert _dirs("features") == features
    assert len(_dirs("labels")) == len(labels) + 1
    assert len(_dirs("pretrain")) == len(pretrain) + 1


def test_random_and_supervised_baselines(tmp_path, cache):
    random_rec = read_record(run(_config(tmp_path, init="random", k=None)).path)
    assert random_rec["config"]["repr"] is None and random_rec["dataset"] is None
    assert random_rec["metrics"]["voc07_linear"]["details"]["bn_recomputed"] is True
    sup = read_record(run(_config(tmp_path, init="supervised", k=None)).path)
    assert sup["config"]["labeler"] is None
    assert sup["labels"]["labeler"] == "true-objects"


def test_unknown_profile_is_a_clear_error(tmp_path):
    from harness.api.errors import BadInputError

    with pytest.raises(BadInputError, match="unknown profile 'huge'"):
        run(_config(tmp_path, profile="huge"))


def test_clips_with_unusable_audio_are_skipped_counted_and_never_trained_on(tmp_path, cache):
    import shutil

    import numpy as np
    import soundfile as sf
    import torch

    from dataclasses import replace

    from harness.data.clips import ClipDataset
    from harness.pipeline.data_stage import toy_clips
    from harness.profiles import PROFILES

    source = toy_clips(replace(PROFILES["toy"], toy_clips=48), 0, progress=False)
    clips = tmp_path / "clips"
    shutil.copytree(source, clips)
    bad = ClipDataset(clips).clips[5]
    wav = bad.audio
    data, rate = sf.read(wav)
    sf.write(wav, np.zeros_like(data), rate)            # digital silence: no texture, no MFCC

    rows = []
    result = run(_config(tmp_path, clips=clips, evaluators=("voc07_linear",)), echo=rows.append)
    record = read_record(result.path)
    assert record["labels"]["excluded"] == [5]
    assert record["labels"]["excluded_reasons"][0]["file"].endswith(bad.audio.name)
    assert any("skipped 1 of 48 clips" in r for r in rows)
    meta = torch.load(record["pretext"]["checkpoint"], weights_only=True)["meta"]
    assert meta["data"]["excluded"] == 1
    assert meta["data"]["train"] + meta["data"]["val"] == 47


def test_pretext_augmentation_comes_from_the_profile_and_keys_the_pretext_stage(
        tmp_path, cache, monkeypatch):
    from dataclasses import replace

    from harness import profiles as pipeline

    toy = pipeline.PROFILES["toy"]
    first = read_record(run(_config(tmp_path)).path)
    assert first["config"]["pretrain"]["augment"]["hue"] == toy.pretext_augment.hue
    assert first["config"]["pretrain"]["batch_size"] == toy.pretext_batch_size
    assert first["pretext"]["runtime"]["precision"] in ("bf16", "fp32")   # what "auto" became
    pretrain = _dirs("pretrain")

    changed = replace(toy, pretext_augment=replace(toy.pretext_augment, hue=0.05))
    monkeypatch.setitem(pipeline.PROFILES, "toy", changed)
    second = read_record(run(_config(tmp_path)).path)
    assert second["config"]["pretrain"]["augment"]["hue"] == 0.05
    assert len(_dirs("pretrain")) == len(pretrain) + 1     # a new pretext run, not the cached one


def test_toy_world_is_published_whole_even_over_an_interrupted_generation(cache):
    import shutil
    from dataclasses import replace

    from harness.data.clips import ClipDataset
    from harness.pipeline.data_stage import toy_clips
    from harness.profiles import PROFILES

    profile = replace(PROFILES["toy"], toy_clips=12)
    first = toy_clips(profile, 0, progress=False)
    fingerprint = ClipDataset(first).fingerprint()
    # what a run killed half-way through the generation used to leave: files, no manifest
    shutil.rmtree(first)
    (first / "frames" / "000").mkdir(parents=True)
    (first / "frames" / "000" / "000000.png").write_bytes(b"half")
    again = toy_clips(profile, 0, progress=False)
    assert again == first and ClipDataset(again).fingerprint() == fingerprint
    assert [p.name for p in first.parent.iterdir()] == [first.name]    # no .partial left


def test_eval_params_apply_to_every_evaluator_or_to_the_one_named():
    from harness.api.errors import BadInputError
    from harness.pipeline.config import evaluator_params

    config = RunConfig(eval_params={"iterations": 5, "voc07_full.iterations": 7, "voc07_full.lr": 0.1})
    assert evaluator_params(config, "voc07_linear") == {"iterations": 5}
    assert evaluator_params(config, "voc07_full") == {"iterations": 7, "lr": 0.1}
    with pytest.raises(BadInputError, match="'nope' is not an evaluator of this run"):
        evaluator_params(RunConfig(eval_params={"nope.x": 1}), "voc07_linear")


def test_k_is_refused_where_no_labeler_runs(tmp_path):
    from harness.api.errors import BadInputError

    with pytest.raises(BadInputError, match="--init random runs no labeler"):
        run(_config(tmp_path, init="random", k=5))


def test_stage_summary_lists_seconds_and_shares():
    lines = stage_summary({"pretrain": 30.0, "voc07_linear": 10.0}).splitlines()
    assert lines[0].split() == ["stage", "seconds", "share"]
    assert lines[2].split() == ["pretrain", "30.0", "75%"]
    assert lines[3].split() == ["voc07_linear", "10.0", "25%"]
    assert lines[4].split() == ["total", "40.0", "100%"]


def test_sweep_runs_random_and_supervised_once_per_backbone_world_and_seed():
    from harness.pipeline.config import RunConfig
    from harness.pipeline.sweep import sweep_configs

    configs = sweep_configs(RunConfig(), ["mfcc", "sound_texture"], [5, 15], ["alexnet"], [0, 1],
                            inits=("random", "supervised", "sound"), world_seeds=(0, 1, 2))
    # per world: 2 random + 2 supervised + 2 x 2 x 2 sound runs
    assert len(configs) == 3 * (2 + 2 + 8)
    keys = {(c.init, c.repr if c.init == "sound" else None, c.k, c.seed, c.world_seed)
            for c in configs}
    assert len(keys) == len(configs)
    assert {c.world_seed for c in configs} == {0, 1, 2}
    assert all(c.k is None for c in configs if c.init != "sound")


def _recorded(init="sound", *, rep="mfcc", k=15, seed=0, world=0, iterations=None,
              overrides=None):
    """The fields of a record that say which run it is (as ``harness run`` writes them)."""
    from harness.api.registry import default_registry

    given = {} if iterations is None else {"iterations": iterations}
    evaluator = lambda name: {"name": name, "params": json.loads(json.dumps(   # noqa: E731
        default_registry().create("evaluator", name, **given).params()))}
    return {"run_id": f"{init}-{rep}-{k}-{seed}-{world}", "config": {
        "init": init, "seed": seed, "world_seed": world, "profile": "toy",
        "backbone": {"name": "alexnet", "params": {}}, "overrides": overrides or {},
        "repr": {"name": rep} if init == "sound" else None,
        "labeler": {"name": "kmeans"} if init == "sound" else None,
        "k": k if init == "sound" else None,
        "evaluators": {n: evaluator(n) for n in ("voc07_linear", "voc07_full")}},
        "downstream": {"kind": "toy-voc"},
        "dataset": None if init == "random" else {"kind": "toy"}}


def test_a_record_is_matched_to_the_run_it_holds():
    from harness.pipeline.config import RunConfig
    from harness.pipeline.sweep import is_recorded_by

    cfg = RunConfig(repr="mfcc", k=15, seed=1, world_seed=2)
    assert is_recorded_by(cfg, _recorded(seed=1, world=2))
    assert is_recorded_by(RunConfig(repr="mfcc", seed=1, world_seed=2),     # the default k
                          _recorded(seed=1, world=2))
    for other in (_recorded(seed=0, world=2), _recorded(seed=1, world=0),
                  _recorded(seed=1, world=2, k=5), _recorded(seed=1, world=2, rep="sound_texture"),
                  _recorded("random", seed=1, world=2),
                  _recorded(seed=1, world=2, overrides={"pretext_epochs": 2}),
                  _recorded(seed=1, world=2, iterations=100)):
        assert not is_recorded_by(cfg, other), other["run_id"]
    assert is_recorded_by(RunConfig(init="random", seed=1, world_seed=2, repr="sound_texture"),
                          _recorded("random", seed=1, world=2))
    short = RunConfig(repr="mfcc", k=15, seed=1, world_seed=2, eval_params={"iterations": 100})
    assert is_recorded_by(short, _recorded(seed=1, world=2, iterations=100))


def test_sweep_skips_recorded_runs_and_dry_run_runs_none(monkeypatch, tmp_path):
    from harness.pipeline import sweep as pipeline
    from harness.pipeline.config import RunConfig

    held = [_recorded("random", seed=0), _recorded(seed=0)]
    monkeypatch.setattr("harness.results.store.read_records", lambda folder: held)
    ran, lines = [], []
    monkeypatch.setattr(pipeline, "run", lambda cfg, echo: ran.append((cfg.init, cfg.seed)))
    base = RunConfig(results=tmp_path)
    pipeline.sweep(base, ["mfcc"], [15], ["alexnet"], [0, 1], lines.append,
                   inits=("random", "sound"), dry_run=True)
    assert ran == [] and sum("to run" in line for line in lines) == 2
    assert sum("recorded as" in line for line in lines) == 2
    pipeline.sweep(base, ["mfcc"], [15], ["alexnet"], [0, 1], lines.append,
                   inits=("random", "sound"), skip_recorded=True)
    assert ran == [("random", 1), ("sound", 1)]


def test_eval_cache_follows_the_profiles_evaluation_scaling(monkeypatch, tmp_path):
    """Changing a profile's evaluation scaling (e.g. All's iterations) must not return
    metrics cached under the old values."""
    from dataclasses import replace

    import harness.evaluation.stage
    from harness.pipeline import eval_stage as pipeline
    from harness.api.interfaces import EvalMetrics
    from harness.profiles import get_profile

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake(evaluator, model, voc_root, **kw):
        calls.append(kw["profile"])
        return EvalMetrics(headline="map", formula="f", value=1.0, breakdown={}, protocol={})

    monkeypatch.setattr(harness.evaluation.stage, "run_evaluator", fake)
    from harness.api.registry import default_registry

    ev = default_registry().create("evaluator", "voc07_full")
    toy = get_profile("toy")
    longer = replace(toy, evaluation=replace(toy.evaluation,
                                             all_iterations=toy.evaluation.all_iterations * 2))
    for profile in (toy, toy, longer):
        pipeline.evaluate(ev, None, tmp_path, "voc", "model", profile, 0, "cpu", False)
    assert len(calls) == 2
