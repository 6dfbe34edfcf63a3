"""One home for the pretext's defaults and one implementation of its shared pieces: the
typed settings default to the default profile, BatchNorm statistics are recomputed in one
place, random streams are seeded by two fixed derivations, and one function builds the
monitor."""

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.api.errors import BadInputError
from harness.networks.batchnorm import batchnorm_layers, needs_bn_recompute, recompute_bn
from harness.pretext.config import AugmentConfig, PretrainConfig
from harness.pretext.monitor import EVERY, MonitorConfig, build_monitor
from harness.profiles import DEFAULT_PROFILE, PROFILES, get_profile, pretrain_settings
from harness.runtime.seeds import derive_seed, hashed_seed

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(**changes) -> PretrainConfig:
    return PretrainConfig(backbone="alexnet", labels=Path("l.npy"), data=Path("d"),
                          out=Path("o"), **changes)


# ----------------------------------------------------------------------------- defaults
def test_pretrain_settings_left_out_are_the_default_profiles():
    config = _config()
    settings = pretrain_settings(get_profile(DEFAULT_PROFILE), "alexnet")
    settings.pop("backbone_params")     # the backbone plugin's own unless given
    assert {k: getattr(config, k) for k in settings} == settings
    assert config.backbone_params == {}


def test_the_augmentation_left_out_is_the_default_profiles_field_by_field():
    profile = get_profile(DEFAULT_PROFILE).pretext_augment
    assert AugmentConfig() == profile
    assert AugmentConfig(hue=0.25) == AugmentConfig(
        **{f.name: getattr(profile, f.name) for f in fields(AugmentConfig) if f.name != "hue"},
        hue=0.25)


def test_a_profile_passes_every_setting_it_holds_so_none_falls_back_to_the_default():
    """The paper profile's run gets the paper's values, not the default profile's."""
    paper = get_profile("paper")
    config = _config(**pretrain_settings(paper, "alexnet"))
    assert (config.epochs, config.batch_size, config.lr) == (
        paper.pretext_epochs, paper.pretext_batch_size, paper.pretext_lr)
    assert config.augment == paper.pretext_augment != get_profile("toy").pretext_augment
    assert config.store_size == paper.pretext_store_size


def test_the_settings_and_the_profiles_import_no_torch():
    code = ("import sys, harness.profiles, harness.pretext.config; "
            "print(json.dumps('torch' in sys.modules))")
    done = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) is False


# ----------------------------------------------------------------------------- BatchNorm
class _Net(nn.Module):
    """conv -> BatchNorm -> dropout -> BatchNorm: dropout would change the second layer's
    statistics if it were on."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn2(self.drop(self.bn1(self.conv(x))))


def test_batchnorm_statistics_become_the_exact_mean_over_the_batches_with_dropout_off():
    net = _Net().train()
    net.bn1.momentum = 0.3
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 3, 10, 10, generator=gen) * (i + 1) + i for i in range(3)]
    assert recompute_bn(net, iter(batches))
    with torch.no_grad():
        convs = [net.conv(x) for x in batches]
    want = torch.stack([c.mean(dim=(0, 2, 3)) for c in convs]).mean(0)
    assert torch.allclose(net.bn1.running_mean, want, atol=1e-5)
    # the second layer saw the first one's batch-normalised output, of variance 1 in every
    # batch (unbiased over 8 x 8 x 8 values per channel); dropout on would have doubled it
    assert torch.allclose(net.bn2.running_var, torch.full((4,), 512 / 511), rtol=1e-2)


def test_recomputing_batchnorm_restores_every_mode_and_momentum():
    net = _Net().train()
    net.drop.eval()
    net.bn1.momentum = 0.3
    modes = [m.training for m in net.modules()]
    recompute_bn(net, iter([torch.randn(4, 3, 8, 8)]))
    assert [m.training for m in net.modules()] == modes
    assert (net.bn1.momentum, net.bn2.momentum) == (0.3, 0.1)


def test_only_a_never_trained_network_with_batchnorm_needs_its_statistics_recomputed():
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert batchnorm_layers(plain) == [] and not recompute_bn(plain, iter([]))
    assert needs_bn_recompute("random", _Net())
    assert not needs_bn_recompute("pretext", _Net())
    assert not needs_bn_recompute("random", plain)


# ----------------------------------------------------------------------------- seeds
def test_the_seed_derivations_give_the_streams_committed_results_were_made_with():
    """Pinned: changing either derivation would change every pretext run (derive_seed) or
    every VOC07 evaluation (hashed_seed) the leaderboard holds."""
    assert (derive_seed(0, 0), derive_seed(0, 2, 5), derive_seed(12, 3, 89, 1)) == (
        7896617691693857887, 7844418654510292707, 2441787229606415403)
    assert (hashed_seed(0, 3), hashed_seed(7, 5, 12), hashed_seed(0, 6, 9)) == (
        854297122784414735, 3301403875580055008, 3729084989104001890)
    assert all(0 <= s < 2**63 for s in (derive_seed(2**32 - 1, 9), hashed_seed(2**32 - 1, 9)))


# ----------------------------------------------------------------------------- monitor
def test_no_monitor_is_built_unless_asked_and_a_missing_voc_folder_is_named():
    assert build_monitor(None, None, backbone="alexnet", backbone_params={},
                         image_size=64) is None
    with pytest.raises(BadInputError, match="--monitor needs --monitor-voc"):
        build_monitor("knn", None, backbone="alexnet", backbone_params={}, image_size=64,
                      voc_missing="--monitor needs --monitor-voc")


def test_a_monitor_left_unset_probes_every_default_epochs_at_the_default_profiles_size(tmp_path):
    config = MonitorConfig(kind="knn", voc=tmp_path)
    assert (config.every, config.image_size) == (EVERY, PROFILES[DEFAULT_PROFILE].image_size)
