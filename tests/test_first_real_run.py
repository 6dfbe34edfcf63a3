"""Where a first run on real data got stuck: errors that say what to do, evaluator
parameters that reach the evaluators declaring them, overlapping ingest windows, a pretext
split that keeps each source video on one side, and a record that names its profile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.data.clips import ClipDataset
from harness.api.errors import BadInputError
from harness.data.ingest import IngestConfig
from harness.pipeline.config import RunConfig, evaluator_params
from harness.pretext.data import _SPLIT, split_indices
from harness.runtime.seeds import derive_seed
from harness_plugins.labelers.kmeans import KMeansLabeler
from tests.media import write_video


def test_fewer_clips_than_clusters_says_how_to_lower_k_or_add_clips():
    x = np.random.default_rng(0).standard_normal((14, 8)).astype(np.float32)
    with pytest.raises(BadInputError) as err:
        KMeansLabeler(k=15).fit_predict(x)
    assert str(err.value) == ("features have 14 samples, fewer than k=15 clusters: lower k to "
                              "14 or less (--k 14), or cluster at least 15 clips")


def test_an_unscoped_eval_param_goes_to_the_evaluators_that_declare_it():
    config = RunConfig(evaluators=("knn", "voc07_linear", "linear_probe"),
                       eval_params={"iterations": 20, "views": 2, "knn.k": 5})
    assert evaluator_params(config, "knn") == {"views": 2, "k": 5}
    assert evaluator_params(config, "voc07_linear") == {"iterations": 20}
    assert evaluator_params(config, "linear_probe") == {"views": 2}


def test_an_eval_param_no_evaluator_declares_is_refused_with_the_scoped_form():
    config = RunConfig(evaluators=("knn",), eval_params={"iterations": 20})
    with pytest.raises(BadInputError) as err:
        evaluator_params(config, "knn")
    message = str(err.value)
    assert message.startswith("--eval-param iterations: no evaluator of this run has a "
                              "parameter 'iterations' (knn takes k, temperature")
    assert message.endswith("scope it: --eval-param knn.NAME=VALUE")


def test_overlapping_windows_are_warned_about_with_their_share(tmp_path):
    assert IngestConfig().overlap() == 0 and IngestConfig().overlap_warning() is None
    assert IngestConfig(every=1.875).overlap_warning() is None          # 50% is allowed
    warning = IngestConfig(every=0.5).overlap_warning()
    assert warning.startswith("windows overlap by 87%: near-duplicate clips")
    src = tmp_path / "videos"
    write_video(src / "a.mp4", 5.0, size=(32, 32))
    result = CliRunner().invoke(app, ["data", "ingest", "--videos", str(src), "--out",
                                      str(tmp_path / "ds"), "--every", "0.5", "--size", "32"])
    assert result.exit_code == 0, result.output
    assert f"warning: {warning}" in result.stderr
    ds = ClipDataset(tmp_path / "ds")
    assert ds.metadata["report"]["warnings"] == [warning]
    assert ds.metadata["source_column"] == "video"      # ingested clips name their video


def _ungrouped(n: int, val_fraction: float, seed: int):
    """The split as it was before grouping existed, written out here to compare against."""
    gen = torch.Generator().manual_seed(derive_seed(seed, _SPLIT))
    perm = torch.randperm(n, generator=gen).numpy()
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@pytest.mark.parametrize("n, seed", [(10, 0), (48, 3), (1000, 0), (1000, 7)])
def test_one_clip_per_group_gives_the_ungrouped_split_item_for_item(n, seed):
    old_train, old_val = _ungrouped(n, 0.1, seed)
    for groups in (None, np.arange(n), np.arange(n)[::-1].copy()):
        train, val = split_indices(n, 0.1, seed, groups=groups)
        assert np.array_equal(train, old_train) and np.array_equal(val, old_val)


def test_the_toy_world_is_one_group_per_clip_so_its_split_is_unchanged(tmp_path):
    from harness.data.toy import generate_clips

    ds = generate_clips(tmp_path / "toy", 24, 0, jobs=1, progress=False)
    groups = ds.source_groups()
    assert len(np.unique(groups)) == len(ds)
    train, val = split_indices(len(ds), 0.1, 0, groups=groups)
    old_train, old_val = _ungrouped(len(ds), 0.1, 0)
    assert np.array_equal(train, old_train) and np.array_equal(val, old_val)


@pytest.mark.parametrize("seed", range(6))
def test_clips_of_one_video_never_fall_on_both_sides_of_the_split(seed):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(12), rng.integers(1, 9, size=12))
    rng.shuffle(groups)
    train, val = split_indices(len(groups), 0.2, seed, groups=groups)
    assert len(train) + len(val) == len(groups) and len(train) > 0
    assert not set(groups[train]) & set(groups[val])
    assert len(val) >= round(0.2 * len(groups))
    # the same seed, the same split
    again = split_indices(len(groups), 0.2, seed, groups=groups)
    assert all(np.array_equal(a, b) for a, b in zip((train, val), again))


def test_a_single_video_keeps_every_clip_in_training():
    train, val = split_indices(14, 0.1, 0, groups=np.zeros(14, dtype=np.int64))
    assert len(train) == 14 and len(val) == 0


def test_source_groups_follow_the_declared_column_and_an_empty_source_is_its_own(tmp_path):
    from harness.data.clips import write_dataset
    from PIL import Image
    import soundfile as sf

    rows = []
    for i, video in enumerate(["a.mp4", "b.mp4", "a.mp4", "", ""]):
        Image.new("RGB", (8, 8)).save(tmp_path / f"f{i}.png")
        sf.write(tmp_path / f"a{i}.wav", np.zeros(160, np.float32), 16000)
        rows.append({"clip_id": f"c{i}", "video": video, "timestamp": 0.0,
                     "frame": f"f{i}.png", "audio": f"a{i}.wav", "sample_rate": 16000})
    declared = write_dataset(tmp_path, rows, {"source_column": "video"})
    assert declared.source_groups().tolist() == [0, 1, 0, 2, 3]
    # without the declaration `video` may be a generator's name: every clip on its own
    assert write_dataset(tmp_path, rows, {}).source_groups().tolist() == [0, 1, 2, 3, 4]


def test_harness_run_prints_its_checkpoint_and_the_record_names_the_profile(tmp_path):
    from harness.networks.checkpoint import read_checkpoint
    from harness.results.records import read_record
    from harness.api.testing import make_tiny_voc
    from harness.data.toy import generate_clips

    clips = generate_clips(tmp_path / "clips", 24, 0, jobs=1, progress=False).root
    voc = make_tiny_voc(tmp_path / "voc")
    result = CliRunner().invoke(app, [
        "run", "--init", "supervised", "--backbone", "timm:test_resnet", "--epochs", "1",
        "--clips", str(clips), "--voc", str(voc), "--eval", "knn", "--eval-param", "k=5",
        "--results", str(tmp_path / "results"), "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    record = read_record(next(x for x in lines if x.startswith("record: "))[len("record: "):])
    checkpoint = next(x for x in lines if x.startswith("checkpoint: "))[len("checkpoint: "):]
    assert checkpoint == record["pretext"]["checkpoint"]
    assert record["pretext"]["profile"] == "toy" and record["pretext"]["overrides"] == {
        "pretext_epochs": 1}
    assert read_checkpoint(checkpoint)["meta"]["config"]["profile"] == "toy"
