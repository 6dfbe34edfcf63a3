"""Shared test settings and the fixtures more than one test module uses: no progress bars,
a private cache folder for the whole test run (and ``own_cache`` for one test), torch on one
thread, a tiny VOC devkit per module, labelled colour clips, and pip-installed examples."""

import os

import pytest

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test writes its cache under a temporary folder, never into the checkout."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "harness-cache"))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache of the test's own (``tmp_path/cache``), returned: for tests whose datasets
    have equal content, which share cache keys by design."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def one_thread():
    """Torch on one thread for the test, as the committed leaderboard's runs were, so that
    figures compared bit for bit do not depend on the machine's core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def voc_root(request, tmp_path_factory):
    """A tiny VOCdevkit (``harness.api.testing.make_tiny_voc``, seed 0), made once per test
    module. A module that needs other split sizes names them in a module-level
    ``VOC_IMAGES_PER_SPLIT`` dict (e.g. ``{"train": 20, "val": 20, "test": 20}``); without
    one it gets ``make_tiny_voc``'s default sizes."""
    from harness.api.testing import make_tiny_voc

    sizes = getattr(request.module, "VOC_IMAGES_PER_SPLIT", None)
    return make_tiny_voc(tmp_path_factory.mktemp("voc"), n=sizes)


@pytest.fixture(scope="module")
def make_labelled_clips(tmp_path_factory):
    """A factory: ``make_labelled_clips(n)`` writes a clip dataset of ``n`` colour-coded
    32-px clips (``tests.test_pretrain.make_clip_dataset``, seed 0) and their class labels
    with a sidecar, and returns (dataset folder, labels file). Each call makes a new folder."""
    from tests.test_pretrain import CLASSES, make_clip_dataset, write_labels

    def make(n: int):
        root = tmp_path_factory.mktemp("clips")
        classes = make_clip_dataset(root / "data", n)
        labels = write_labels(root / "labels.npy", classes,
                              {"kind": "classes", "num_outputs": CLASSES, "labeler": "truth",
                               "params": {}})
        return root / "data", labels

    return make


@pytest.fixture(scope="module")
def pip_install_example(tmp_path_factory):
    """A factory: ``pip_install_example(folder)`` pip-installs the example project in
    ``folder`` (no dependencies, no network) into a private folder and returns that folder,
    to be put on ``PYTHONPATH`` (each call installs into a new one)."""
    import subprocess
    import sys

    def install(project):
        target = tmp_path_factory.mktemp("site")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--no-build-isolation", "--target", str(target), str(project)],
                       check=True, cwd=tmp_path_factory.mktemp("build"))
        return target

    return install
