"""The built-in backbones: architecture as specified, trunk/head split, nothing downloaded."""

import socket

import pytest
import torch
from torch import nn

from harness.api.errors import BadInputError, PluginError
from harness.networks.shape import BackboneNet
from harness.api.registry import default_registry


@pytest.fixture(autouse=True)
def _one_thread_no_network(monkeypatch):
    """Networks are built offline (any connection attempt fails the test); one CPU thread
    (much faster than two on a shared, busy machine)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a backbone tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def create(name: str, num_outputs: int = 7, **params) -> BackboneNet:
    torch.manual_seed(0)
    return default_registry().create("backbone", name, **params).create(num_outputs)


def test_the_builtin_backbones_are_registered():
    names = default_registry().names("backbone")
    assert {"alexnet", "alexnet_tv", "resnet18", "timm:"} <= set(names)


def test_alexnet_is_deepclusters_alexnet_with_batchnorm_after_every_conv():
    net = create("alexnet", 15)
    convs = [m for m in net.trunk.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert (convs[0].kernel_size, convs[0].stride, convs[0].padding) == ((11, 11), (4, 4), (2, 2))
    layers = list(net.trunk[0])
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            assert isinstance(layers[i + 1], nn.BatchNorm2d) and isinstance(layers[i + 2], nn.ReLU)
    assert sum(isinstance(m, nn.MaxPool2d) for m in layers) == 3
    linears = [m for m in net.head if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(9216, 4096), (4096, 4096), (4096, 15)]
    # Caffe's order: dropout acts on the outputs of fc6 and fc7 (after their ReLU)
    assert [type(m) for m in net.head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU,
                                           nn.Dropout, nn.Linear]
    # the head (fc6-fc8) is the fully connected part, and nothing else
    assert not any(isinstance(m, nn.Conv2d) for m in net.head.modules())
    assert sum(p.numel() for p in net.head_parameters()) == 9216 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 15 + 15


@pytest.mark.parametrize("side", [64, 224])
def test_alexnet_takes_small_and_full_size_input(side):
    net = create("alexnet", 15).eval()
    x = torch.rand(2, 3, side, side)
    with torch.no_grad():
        features = net.trunk(x)
        assert features.shape == (2, 9216)
        assert net.head(features).shape == (2, 15)


def test_alexnet_dropout_is_a_parameter():
    bb = default_registry().create("backbone", "alexnet", dropout=0.25)
    assert bb.params() == {"dropout": 0.25, "pool": 6, "fc_units": 4096}
    assert all(m.p == 0.25 for m in bb.create(3).head if isinstance(m, nn.Dropout))


def test_alexnet_with_global_pooling_for_small_inputs():
    net = create("alexnet", 5, pool=1).eval()
    with torch.no_grad():
        assert net.trunk(torch.rand(2, 3, 64, 64)).shape == (2, 256)
    assert net.head[0].in_features == 256
    with pytest.raises(BadInputError, match="pool must be in 1..6"):
        default_registry().create("backbone", "alexnet", pool=7)


def test_torchvision_alexnet_variant_has_no_batchnorm():
    net = create("alexnet_tv", 5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert [m.out_features for m in net.head if isinstance(m, nn.Linear)] == [4096, 4096, 5]


def test_resnet18_computes_exactly_torchvisions_resnet18():
    from torchvision.models import resnet18

    net = create("resnet18", 7).eval()
    reference = resnet18(num_classes=7).eval()
    state = {k.removeprefix("trunk.").replace("head.0.", "fc."): v for k, v in net.state_dict().items()}
    reference.load_state_dict(state)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), reference(x), atol=1e-6)
    assert len(net.head) == 1 and net.head[0].in_features == 512


def test_timm_family_builds_any_timm_model_with_its_normalisation():
    bb = default_registry().create("backbone", "timm:test_vit", img_size=32)
    assert bb.params() == {"variant": "test_vit", "img_size": 32, "drop_rate": 0.0}
    assert bb.mean == (0.5, 0.5, 0.5) and bb.input_size == 32
    net = bb.create(6).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 6)
    assert isinstance(net.head[-1], nn.Linear) and len(net.head) == 1


def test_an_unknown_timm_model_is_a_clear_error():
    with pytest.raises(PluginError, match=r"timm has no model 'resnet_18'.*resnet18"):
        default_registry().create("backbone", "timm:resnet_18")


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "timm:test_resnet"])
def test_same_seed_same_weights_and_classifier_reset(name):
    a, b = create(name), create(name)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    a.reset_classifier(20)
    assert a.num_outputs == 20


def test_narrowed_alexnet_head_keeps_deepcluster_layer_gains():
    full = create("alexnet", 5)
    narrow = create("alexnet", 5, pool=1, fc_units=1024)
    full_std = [m.weight.detach().std().item() for m in full.head if isinstance(m, nn.Linear)]
    narrow_std = [m.weight.detach().std().item() for m in narrow.head if isinstance(m, nn.Linear)]
    assert full_std == pytest.approx([0.01] * 3, rel=0.05)
    # std x sqrt(fan_in) is the same at both widths
    assert narrow_std == pytest.approx([0.06, 0.02, 0.02], rel=0.05)
    assert narrow.head[0].weight.shape == (1024, 256)
    with pytest.raises(BadInputError, match="fc_units"):
        default_registry().create("backbone", "alexnet", fc_units=8)
