"""``harness figures``: Figure 1 (frames by sound cluster) and Figure 2 (top conv3 frames)."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from harness.leaderboard import figures
from harness.cli import app
from harness.api.errors import BadInputError

runner = CliRunner()

COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 210)]


def make_dataset(root, colours):
    """A clip dataset whose frame i is a solid ``colours[i]`` square (test fixture)."""
    import soundfile as sf

    from harness.data.clips import write_dataset

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, colour in enumerate(colours):
        Image.new("RGB", (32, 24), tuple(int(c) for c in colour)).save(root / f"f{i}.png")
        sf.write(root / f"a{i}.wav", np.full(64, 0.1, np.float32), 1000)
        rows.append({"clip_id": f"c{i}", "video": "v", "timestamp": float(i),
                     "frame": f"f{i}.png", "audio": f"a{i}.wav", "sample_rate": 1000})
    write_dataset(root, rows, {"made_by": "test"})
    return root


@pytest.fixture
def clustered(tmp_path):
    """12 clips in 3 clusters (sizes 6, 4, 2); a clip's frame has its cluster's colour."""
    ids = np.array([0, 1, 0, 2, 0, 1, 0, 1, 0, 2, 0, 1], dtype=np.int64)
    data = make_dataset(tmp_path / "clips", [COLOURS[c] for c in ids])
    labels = tmp_path / "labels.npy"
    np.save(labels, ids)
    return data, labels, ids


def thumb_colours(path, n):
    """Centre colours of the first ``n`` thumbnails of a grid PNG (row-major)."""
    im = np.asarray(Image.open(path).convert("RGB"))
    cols = (im.shape[1] - figures.PAD) // (figures.THUMB + figures.PAD)
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        y = figures.HEADER + figures.PAD + r * (figures.THUMB + figures.PAD) + figures.THUMB // 2
        x = figures.PAD + c * (figures.THUMB + figures.PAD) + figures.THUMB // 2
        out.append(tuple(int(v) for v in im[y, x]))
    return out


def test_figure1_groups_frames_by_cluster(clustered, tmp_path):
    data, labels, ids = clustered
    out = tmp_path / "fig"
    written = figures.figure1(data, labels, out, per_cluster=4)
    assert [p.name for p in written] == ["figure1.png", "figure1_cluster000.png",
                                         "figure1_cluster001.png", "figure1_cluster002.png"]
    for cluster in range(3):
        shown = min(4, int((ids == cluster).sum()))
        colours = thumb_colours(out / f"figure1_cluster{cluster:03d}.png", shown)
        assert colours == [COLOURS[cluster]] * shown
    overview = Image.open(out / "figure1.png")
    assert overview.height > 3 * figures.THUMB  # one row per cluster
    first = (out / "figure1.png").read_bytes()
    figures.figure1(data, labels, out, per_cluster=4)
    assert (out / "figure1.png").read_bytes() == first  # deterministic


def test_figure1_max_clusters_keeps_the_largest(clustered, tmp_path):
    data, labels, _ = clustered
    written = figures.figure1(data, labels, tmp_path / "fig", max_clusters=1)
    assert [p.name for p in written] == ["figure1.png", "figure1_cluster000.png"]


def test_binary_codes_become_clusters(tmp_path):
    codes = np.array([[0, 1], [1, 1], [0, 1], [1, 1]], dtype=np.uint8)
    np.save(tmp_path / "codes.npy", codes)
    ids = figures.load_cluster_ids(tmp_path / "codes.npy", 4)
    assert ids[0] == ids[2] and ids[1] == ids[3] and ids[0] != ids[1]


@pytest.mark.parametrize("array, match", [
    (np.zeros(5, np.int64), "5 labels for a dataset of 12"),
    (np.zeros(12, np.float32), "expected integer cluster ids"),
])
def test_bad_labels_are_rejected_naming_the_file(clustered, tmp_path, array, match):
    data, _, _ = clustered
    bad = tmp_path / "bad.npy"
    np.save(bad, array)
    with pytest.raises(BadInputError, match=f"bad.npy: {match}"):
        figures.figure1(data, bad, tmp_path / "fig")


def tiny_model():
    """A trunk whose conv3 unit 0 is the red channel and unit 1 the blue (1x1 identities)."""
    import torch
    from torch import nn

    from harness.api.interfaces import PretrainedModel
    from harness.networks.shape import BackboneNet

    convs = [nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 2, 1)]
    with torch.no_grad():
        for conv in convs:
            conv.bias.zero_()
            conv.weight.zero_()
        for conv in convs[:2]:
            conv.weight[:, :, 0, 0] = torch.eye(3)
        convs[2].weight[0, 0, 0, 0] = 1.0
        convs[2].weight[1, 2, 0, 0] = 1.0
    trunk = nn.Sequential(convs[0], convs[1], convs[2], nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net = BackboneNet(trunk, nn.Sequential(nn.Linear(2, 2)))
    backbone = SimpleNamespace(input_size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return PretrainedModel(backbone=backbone, net=net, origin="random", checkpoint="tiny")


@pytest.fixture
def fake_checkpoint_module(monkeypatch):
    module = types.ModuleType("harness.networks.checkpoint")
    module.load_pretrained = lambda spec, map_location="cpu": tiny_model()
    monkeypatch.setitem(sys.modules, "harness.networks.checkpoint", module)


def test_figure2_shows_the_frames_that_excite_each_unit_most(tmp_path, fake_checkpoint_module):
    reds = [int(v) for v in np.linspace(0, 250, 12)]
    rng = np.random.default_rng(0)
    order = rng.permutation(12)
    colours = [(reds[i], 10, 255 - reds[i]) for i in order]
    data = make_dataset(tmp_path / "clips", colours)
    out = tmp_path / "fig"
    written = figures.figure2(data, "tiny", [0, 1], out, device="cpu")
    assert [p.name for p in written] == ["figure2.png", "figure2_unit000.png",
                                         "figure2_unit001.png"]
    shown_red = thumb_colours(out / "figure2_unit000.png", 9)
    assert [c[0] for c in shown_red] == sorted(reds, reverse=True)[:9]
    shown_blue = thumb_colours(out / "figure2_unit001.png", 9)
    assert [c[2] for c in shown_blue] == sorted((255 - r for r in reds), reverse=True)[:9]


def test_figure2_rejects_units_beyond_conv3(tmp_path, fake_checkpoint_module):
    data = make_dataset(tmp_path / "clips", COLOURS)
    with pytest.raises(BadInputError, match="conv3 of tiny has 2 units"):
        figures.figure2(data, "tiny", [5], tmp_path / "fig")


def test_conv_layer_and_top_indices():
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 5, 3)),
                        nn.Conv2d(5, 6, 3))
    assert figures.conv_layer(net, 3).out_channels == 6
    with pytest.raises(Exception, match="conv4 does not exist"):
        figures.conv_layer(net, 4)
    acts = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 0.0]])
    assert figures.top_indices(acts, 2).tolist() == [[1, 2], [0, 1]]  # ties: lower index


def test_parse_units():
    assert figures.parse_units("3, 17,42") == [3, 17, 42]
    for bad in ("", "a,b", "-1"):
        with pytest.raises(BadInputError):
            figures.parse_units(bad)


def test_cli_figures(clustered, tmp_path, fake_checkpoint_module):
    data, labels, _ = clustered
    out = tmp_path / "fig"
    res = runner.invoke(app, ["figures", "--data", str(data), "--labels", str(labels),
                              "--checkpoint", "tiny", "--units", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "figure1.png").is_file() and (out / "figure2_unit000.png").is_file()
    res = runner.invoke(app, ["figures", "--data", str(data), "--out", str(out)])
    assert res.exit_code == 2 and "--labels" in res.output


def test_figure2_with_a_real_random_backbone(tmp_path):
    """End to end through harness.networks.checkpoint and the AlexNet plugin, when they exist."""
    checkpoint = pytest.importorskip("harness.networks.checkpoint")
    from harness.api.registry import default_registry

    if "alexnet" not in default_registry().names("backbone"):
        pytest.skip("no alexnet backbone plugin installed")
    model = checkpoint.load_pretrained("random:alexnet")
    data = make_dataset(tmp_path / "clips", [COLOURS[i % 3] for i in range(10)])
    written = figures.figure2(data, "random:alexnet", [0, 1], tmp_path / "fig", device="cpu")
    assert len(written) == 3
    assert figures.conv_layer(model.net.trunk, 3) is not None
