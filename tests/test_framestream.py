"""Frames streamed by worker processes are exactly the batches the other paths give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.api.errors import BadInputError
from harness.data.framestore import open_store
from harness.data.framestream import WORKERS_ENV, stream_batches, stream_workers
from harness.pretext.data import FrameSource, batch_bounds, split_indices


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("frames") / "store.npy"
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(53, 12, 12, 3))
    images[:] = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
    images.flush()
    del images
    return open_store(path, 53, 12)


def _epoch(source: FrameSource, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's batches of the seeded training split, as the trainer asks for them."""
    train, _ = split_indices(len(source.store), 0.2, seed)
    order = train[np.random.default_rng(seed).permutation(len(train))]
    return [(f.cpu(), i.cpu()) for f, i in source.batches(order, batch_bounds(len(order), 8))]


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_the_resident_ones_for_a_seed(store, workers):
    resident = _epoch(FrameSource(store, "cpu", mode="resident"), seed=5)
    streamed = _epoch(FrameSource(store, "cpu", mode="stream", workers=workers), seed=5)
    gathered = _epoch(FrameSource(store, "cpu", mode="gather"), seed=5)
    assert len(resident) == len(streamed) == len(gathered) == 6
    for (rf, ri), (sf, si), (gf, gi) in zip(resident, streamed, gathered):
        assert torch.equal(ri, si) and torch.equal(ri, gi)
        assert torch.equal(rf, sf) and torch.equal(rf, gf)
        assert torch.equal(sf, torch.from_numpy(store.images[si.numpy()]))
    other = _epoch(FrameSource(store, "cpu", mode="stream", workers=workers), seed=6)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(streamed, other))


def test_a_cpu_source_gathers_in_process_and_a_bad_mode_is_refused(store):
    assert FrameSource(store, "cpu").mode == "gather"
    with pytest.raises(BadInputError, match="frame source 'disk'"):
        FrameSource(store, "cpu", mode="disk")


def test_a_workers_failure_reaches_the_training_process(store):
    with pytest.raises(IndexError):
        list(stream_batches(store.path, [np.array([0, 1]), np.array([999])], workers=2))


def test_the_stream_worker_count_comes_from_the_usable_cpus(monkeypatch):
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    monkeypatch.setenv("HARNESS_CPUS", "2")
    assert stream_workers() == 1
    monkeypatch.setenv("HARNESS_CPUS", "6")
    assert stream_workers() == 4
    monkeypatch.setenv("HARNESS_CPUS", "96")
    assert stream_workers() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")        # eight ranks share the CPUs
    monkeypatch.setenv("HARNESS_CPUS", "48")
    assert stream_workers() == 4
    monkeypatch.setenv("HARNESS_CPUS", "16")
    assert stream_workers() == 1
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv(WORKERS_ENV, "12")
    assert stream_workers() == 12
    monkeypatch.setenv(WORKERS_ENV, "none")
    with pytest.raises(BadInputError, match=WORKERS_ENV):
        stream_workers()


@pytest.mark.gpu
def test_on_cuda_streamed_batches_equal_the_resident_ones(store):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    resident = _epoch(FrameSource(store, "cuda", mode="resident"), seed=5)
    streamed = _epoch(FrameSource(store, "cuda", mode="stream", workers=2), seed=5)
    for (rf, ri), (sf, si) in zip(resident, streamed):
        assert torch.equal(ri, si) and torch.equal(rf, sf)
