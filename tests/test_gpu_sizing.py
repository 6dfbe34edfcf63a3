"""Sizing for a GPU box: CPU workers from the usable CPUs, the VOC07 evaluators' bounded
crop memory (bit-identical results), one split on the device at a time, dropout seeding."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from harness.runtime.devices import CPUS_ENV, usable_cpus
from harness.api.errors import BadInputError
from harness.api.interfaces import EvalContext
from harness.api.testing import tiny_model
from harness_plugins.evaluators import augment, training
from harness_plugins.evaluators.augment import (load_images, sample_resized_crop,
                                                sample_window_crop)
from harness_plugins.evaluators.voc07 import VOC07Full, VOC07Linear


#: every test here runs torch on one thread (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- CPUs
def test_usable_cpus_follow_the_affinity_mask_unless_overridden(monkeypatch):
    monkeypatch.delenv(CPUS_ENV, raising=False)
    assert usable_cpus() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(CPUS_ENV, "48")
    assert usable_cpus() == 48


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_bad_cpu_override_is_one_clear_error(monkeypatch, value):
    monkeypatch.setenv(CPUS_ENV, value)
    with pytest.raises(BadInputError, match=CPUS_ENV):
        usable_cpus()


def test_worker_counts_are_sized_from_the_usable_cpus(monkeypatch):
    from harness.labels.audio_sources import AUDIO_WORKERS_MAX, _workers
    from harness_plugins.evaluators.frozen_features import FrozenFeatureEvaluator

    monkeypatch.setenv(CPUS_ENV, "12")
    assert _workers(None, n_batches=10) == 11
    assert VOC07Linear().threads == 12
    assert FrozenFeatureEvaluator().n_jobs == 12
    monkeypatch.setenv(CPUS_ENV, "200")
    assert _workers(None, n_batches=10) == AUDIO_WORKERS_MAX
    assert _workers(3, n_batches=10) == 3            # an explicit count is kept


# ----------------------------------------------------------------------------- crop memory
def _random_store(tmp_path, workspace: int):
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(37, 50), (50, 33), (50, 50), (41, 29), (29, 47)]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    store = load_images(paths, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "cpu", threads=1)
    store.workspace_bytes = workspace
    return store


@pytest.mark.parametrize("per_chunk", [1, 3, 7])
def test_chunked_crops_equal_one_call_bit_for_bit(tmp_path, per_chunk):
    store = _random_store(tmp_path, 1 << 30)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(store), 23)
    sizes = store.sizes[idx]
    window, wflip = sample_window_crop(rng, sizes, 16, 0.5, 2.0, True,
                                       np.full(len(idx), 1.3))
    resized, rflip = sample_resized_crop(rng, sizes, 0.1, 1.0, 0.75, 1.33, True)
    for boxes, flips in ((window, wflip), (resized, rflip)):
        whole = store.crops(idx, boxes, flips, 16)
        assert store.images_per_chunk >= len(idx)     # one call: what the toy profile runs
        store.workspace_bytes = per_chunk * 4 * store.pixels[0].numel()
        assert store.images_per_chunk == per_chunk
        chunked = store.crops(idx, boxes, flips, 16)
        store.workspace_bytes = 1 << 30
        assert torch.equal(whole, chunked)


def test_the_toy_vocs_crop_batches_take_one_call_on_a_cpu():
    """The toy VOC's largest crop call (400 trunk crops of its square images) stays within
    the CPU workspace: the toy profile runs the unchunked path, as it always did."""
    from harness.data.toy.config import ToyConfig

    side = ToyConfig().image_size
    assert augment.crop_workspace("cpu") == augment.CPU_CROP_WORKSPACE
    assert augment.CPU_CROP_WORKSPACE // (4 * 3 * side * side) >= training.FEATURE_BATCH


def _scores(evaluator, model, voc_root, work) -> np.ndarray:
    context = EvalContext(profile="toy", seed=0, device="cpu", work_dir=work, progress=False)
    return evaluator.run(model, voc_root, context).scores.scores


@pytest.mark.parametrize("evaluator", [VOC07Linear, VOC07Full], ids=["head", "all"])
def test_an_evaluation_cropping_one_image_at_a_time_gives_identical_scores(
        tmp_path, monkeypatch, voc_root, evaluator):
    model = tiny_model("pretext")
    whole = _scores(evaluator(iterations=12), model, voc_root, tmp_path / "whole")
    monkeypatch.setattr(augment, "CPU_CROP_WORKSPACE", 1)          # one image per chunk
    chunked = _scores(evaluator(iterations=12), model, voc_root, tmp_path / "chunked")
    assert np.array_equal(whole, chunked)


def test_a_broken_test_image_is_refused_before_training(tmp_path, voc_root):
    voc = tmp_path / "voc"
    shutil.copytree(voc_root, voc)
    test_ids = (next(voc.rglob("ImageSets/Main/test.txt"))).read_text().split()
    bad = next(voc.rglob(f"JPEGImages/{test_ids[0]}.*"))
    bad.write_bytes(b"not an image")
    work = tmp_path / "work"
    context = EvalContext(profile="toy", seed=0, device="cpu", work_dir=work, progress=False)
    with pytest.raises(BadInputError, match=bad.name):
        VOC07Full(iterations=2).evaluate(tiny_model("pretext"), voc, context)
    assert not (work / training.STATE_FILE).exists()      # nothing was trained


# ----------------------------------------------------------------------------- dropout
def test_the_cpu_dropout_generator_is_the_one_torch_manual_seed_seeds():
    gen = training.dropout_generator(torch.device("cpu"))
    gen.manual_seed(1234)
    a = torch.nn.functional.dropout(torch.ones(1000), 0.5)
    torch.manual_seed(1234)
    b = torch.nn.functional.dropout(torch.ones(1000), 0.5)
    assert torch.equal(a, b)


@pytest.mark.gpu
def test_the_cuda_dropout_generator_draws_what_torch_manual_seed_draws():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    dev = torch.device("cuda")
    gen = training.dropout_generator(dev)
    gen.manual_seed(1234)
    a = torch.nn.functional.dropout(torch.ones(100_000, device=dev), 0.5)
    torch.manual_seed(1234)
    b = torch.nn.functional.dropout(torch.ones(100_000, device=dev), 0.5)
    assert torch.equal(a, b)
