"""Another framework's weights: torchvision and timm state dicts scored under the harness.

Every weights file is made here (torchvision and timm networks built with random weights,
nothing downloaded): torchvision's key format, a timm file saved from
DistributedDataParallel, a safetensors file, and the files that must be refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from harness.networks.checkpoint import load_pretrained
from harness.cli import app
from harness.api.errors import BadInputError
from harness.networks.foreign import load_foreign, strip_wrappers

runner = CliRunner()


#: every test here runs torch on one thread (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


#: Images per split of the ``voc_root`` fixture (tests/conftest.py) in this module.
VOC_IMAGES_PER_SPLIT = {"train": 20, "val": 20, "test": 20}


def _saved(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _tv_alexnet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.alexnet(weights=None).eval()


def _tv_resnet18(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).eval()


def _images(n: int = 2, size: int = 96) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(7))


def _one_line_error(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error:"), err
    for word in words:
        assert word in err, err
    return err


# ----------------------------------------------------------------------------- loading
def test_torchvision_alexnet_weights_load_into_alexnet_tv_and_give_its_outputs(tmp_path):
    tv = _tv_alexnet()
    path = _saved(tmp_path / "alexnet.pth", tv.state_dict())
    model = load_pretrained(f"torchvision:alexnet={path}")
    assert model.origin == "imported" and model.backbone.name == "alexnet_tv"
    imported = model.meta["imported"]
    assert imported["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (imported["source"], imported["architecture"], imported["file"]) == \
        ("torchvision", "alexnet", "alexnet.pth")
    assert imported["output_layer"] == "from the file" and model.net.num_outputs == 1000
    model.net.eval()
    x = _images(size=224)
    with torch.no_grad():
        assert torch.equal(model.net(x), tv(x))


def test_an_imported_resnet18_gives_the_features_of_the_network_it_was_saved_from(tmp_path):
    tv = _tv_resnet18(seed=3)
    path = _saved(tmp_path / "resnet18.pt", tv.state_dict())
    model = load_pretrained(f"torchvision:resnet18={path}")
    model.net.eval()
    x = _images()
    with torch.no_grad():
        pooled = torch.flatten(torch.nn.Sequential(*list(tv.children())[:-1])(x), 1)
        assert torch.equal(model.net.trunk(x), pooled)
        assert torch.equal(model.net(x), tv(x))


def test_a_timm_state_dict_saved_from_ddp_loads_without_its_module_prefix(tmp_path):
    import timm
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(1)
    net = timm.create_model("test_resnet", pretrained=False).eval()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                            world_size=1)
    try:
        ddp = DistributedDataParallel(net)
        state = ddp.state_dict()
    finally:
        dist.destroy_process_group()
    assert all(k.startswith("module.") for k in state)
    # as a training script keeps it: the weights under "state_dict", beside other entries
    path = _saved(tmp_path / "ddp.pth.tar", {"epoch": 3, "arch": "test_resnet",
                                            "state_dict": state})
    model = load_pretrained(f"timm:test_resnet={path}")
    imported = model.meta["imported"]
    assert imported["nested_key"] == "state_dict"
    assert imported["stripped_prefixes"] == ["module."]
    assert imported["dropped_keys"] == ["fc.weight", "fc.bias"]    # the 1000-way classifier
    assert imported["output_layer"] == "new (seeded)"
    model.net.eval()
    x = _images(size=64)
    with torch.no_grad():
        features = net.forward_head(net.forward_features(x), pre_logits=True)
        assert torch.equal(model.net.trunk(x), features)


def test_a_safetensors_file_loads_like_the_pth_it_holds(tmp_path):
    from safetensors.torch import save_file

    tv = _tv_resnet18(seed=5)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(path))
    model = load_pretrained(f"torchvision:resnet18={path}")
    assert model.meta["imported"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    model.net.eval()
    x = _images()
    with torch.no_grad():
        assert torch.equal(model.net(x), tv(x))


def test_wrappers_are_undone_only_when_every_key_has_them():
    t = torch.zeros(1)
    state, stripped = strip_wrappers({"module.encoder.conv1.weight": t,
                                      "module.encoder.fc.bias": t})
    assert set(state) == {"conv1.weight", "fc.bias"} and stripped == ["module.", "encoder."]
    state, stripped = strip_wrappers({"model.conv1.weight": t, "fc.bias": t})
    assert set(state) == {"model.conv1.weight", "fc.bias"} and stripped == []


def test_a_state_dict_under_model_with_a_backbone_prefix_loads(tmp_path):
    tv = _tv_alexnet(seed=2)
    path = _saved(tmp_path / "ckpt.pt", {"model": {f"backbone.{k}": v
                                                   for k, v in tv.state_dict().items()},
                                         "optimizer": {"lr": 0.1}})
    model = load_foreign(f"torchvision:alexnet={path}")
    assert model.meta["imported"]["nested_key"] == "model"
    assert model.meta["imported"]["stripped_prefixes"] == ["backbone."]


# ----------------------------------------------------------------------------- refusals
def test_a_truncated_file_is_refused_as_damaged(tmp_path):
    whole = _saved(tmp_path / "whole.pth", _tv_resnet18().state_dict()).read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadInputError, match="damaged weights file"):
        load_pretrained(f"torchvision:resnet18={cut}")
    from safetensors.torch import save_file

    st = tmp_path / "whole.safetensors"
    save_file(_tv_resnet18().state_dict(), str(st))
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(st.read_bytes()[:1000])
    with pytest.raises(BadInputError, match="damaged or not a safetensors file"):
        load_pretrained(f"torchvision:resnet18={cut_st}")


def test_a_file_of_another_architecture_lists_what_does_not_fit(tmp_path):
    path = _saved(tmp_path / "resnet18.pth", _tv_resnet18().state_dict())
    with pytest.raises(BadInputError) as caught:
        load_pretrained(f"torchvision:alexnet={path}")
    text = str(caught.value)
    assert "14 missing: trunk.0.0.weight" in text and "unexpected: conv1.weight" in text
    assert "another architecture" in text and len(text.splitlines()) == 1
    state = _tv_alexnet().state_dict()
    state["features.0.weight"] = torch.zeros(96, 3, 11, 11)     # conv1 of 96 channels
    wide = _saved(tmp_path / "wide.pth", state)
    with pytest.raises(BadInputError, match=r"1 mis-shaped: trunk\.0\.0\.weight "
                                            r"\(file \[96, 3, 11, 11\], network "
                                            r"\[64, 3, 11, 11\]\)"):
        load_pretrained(f"torchvision:alexnet={wide}")


def test_a_file_missing_a_layer_other_than_the_output_layer_is_refused(tmp_path):
    state = _tv_alexnet().state_dict()
    del state["classifier.4.weight"], state["classifier.4.bias"]     # fc7
    path = _saved(tmp_path / "no_fc7.pth", state)
    with pytest.raises(BadInputError, match="2 missing: head.4.weight, head.4.bias"):
        load_pretrained(f"torchvision:alexnet={path}")
    state = {k: v for k, v in _tv_alexnet().state_dict().items()
             if not k.startswith("classifier.6.")}       # only the output layer gone: fine
    model = load_pretrained(f"torchvision:alexnet={_saved(tmp_path / 'headless.pth', state)}")
    assert model.meta["imported"]["output_layer"] == "new (seeded)"


class _Payload:
    """Pickles as a call to os.system: loading it without weights_only would run it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_file_that_would_unpickle_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    path = _saved(tmp_path / "evil.pth", {"state_dict": _tv_resnet18().state_dict(),
                                          "hook": _Payload(marker)})
    with pytest.raises(BadInputError, match="it holds pickled code.*system.*never executed"):
        load_pretrained(f"torchvision:resnet18={path}")
    assert not marker.exists()


def test_the_batchnorm_alexnet_refuses_torchvision_alexnet_and_names_the_one_that_takes_it(
        tmp_path, voc_root):
    path = _saved(tmp_path / "alexnet.pth", _tv_alexnet().state_dict())
    result = runner.invoke(app, ["eval", "--no-progress", "--device", "cpu", "--voc",
                                 str(voc_root), "--checkpoint", f"torchvision:alexnet={path}",
                                 "--backbone", "alexnet"])
    _one_line_error(result, "batch normalisation", "cannot take torchvision's AlexNet",
                    "--backbone alexnet_tv")


def test_the_cli_refuses_bad_specs_and_damaged_files_in_one_line(tmp_path, voc_root):
    base = ["eval", "--no-progress", "--device", "cpu", "--voc", str(voc_root)]
    _one_line_error(runner.invoke(app, [*base, "--checkpoint", "torchvision:vgg16=x.pth"]),
                    "timm:vgg16=PATH")
    _one_line_error(runner.invoke(app, [*base, "--checkpoint",
                                        f"torchvision:alexnet={tmp_path / 'none.pth'}"]),
                    "no such weights file")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a weights file at all")
    _one_line_error(runner.invoke(app, [*base, "--checkpoint", f"torchvision:alexnet={junk}"]),
                    "junk.pth", "weights_only=True")
    # a foreign file passed as a harness checkpoint says how to name it
    plain = _saved(tmp_path / "plain.pth", _tv_alexnet().state_dict())
    _one_line_error(runner.invoke(app, [*base, "--checkpoint", str(plain)]),
                    "torchvision:alexnet=PATH")


def test_without_the_safetensors_package_the_error_names_the_extra(tmp_path, monkeypatch):
    import sys

    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(BadInputError, match=r"pip install 'harness\[safetensors\]'"):
        load_pretrained(f"torchvision:resnet18={path}")


# ----------------------------------------------------------------------------- scoring
def test_eval_scores_imported_torchvision_alexnet(tmp_path, voc_root):
    path = _saved(tmp_path / "alexnet.pth", _tv_alexnet().state_dict())
    out = tmp_path / "m.json"
    result = runner.invoke(app, ["eval", "--no-progress", "--device", "cpu", "--voc",
                                 str(voc_root), "--checkpoint", f"torchvision:alexnet={path}",
                                 "--evaluator", "voc07_linear", "--iterations", "2",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"imported torchvision:alexnet weights from alexnet.pth (sha256 {sha})" in result.stderr
    details = json.loads(out.read_text())["details"]
    assert details["model"]["origin"] == "imported"
    assert details["bn_recomputed"] is False


def test_a_run_of_imported_weights_records_their_sha256_and_the_board_says_imported(
        tmp_path, monkeypatch):
    from harness.leaderboard.groups import group_records
    from harness.leaderboard.tables import group_table1
    from harness.pipeline.config import RunConfig
    from harness.pipeline.run import run
    from harness.results.records import read_record

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    path = _saved(tmp_path / "resnet18.pth", _tv_resnet18().state_dict())
    config = RunConfig(init="imported", imported=f"torchvision:resnet18={path}",
                       backbone="resnet18", toy_voc_images=(160, 120), evaluators=("voc07_linear",),
                       eval_params={"iterations": 2}, progress=False,
                       results=tmp_path / "results")
    record = read_record(run(config).path)
    imported = record["config"]["imported"]
    assert imported["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert imported["source"] == "torchvision" and imported["file"] == "resnet18.pth"
    assert record["config"]["init"] == "imported" and record["dataset"] is None
    [group] = group_records([record])
    table = group_table1(group)
    row = next(line for line in table.splitlines() if "torchvision:resnet18" in line)
    assert "| imported " in row and imported["sha256"][:12] in row


def _parses(doc: Path) -> int:
    """Every ``harness`` line of ``doc``'s bash blocks names a command and options the CLI
    has (parsed by click, nothing run); returns how many there are."""
    import typer.main

    from tests.test_paper_profile import _doc_commands

    group = typer.main.get_command(app)
    commands = _doc_commands(doc)
    for argv in commands:
        cmd, name, rest, ctx = group, "harness", list(argv), None
        while hasattr(cmd, "get_command"):
            ctx = cmd.context_class(cmd, info_name=name, parent=ctx)
            name, rest = rest[0], rest[1:]
            cmd = cmd.get_command(ctx, name)
            assert cmd is not None, f"{doc.name}: no command {name!r} in {argv}"
        cmd.make_context(name, rest, parent=ctx)
    return len(commands)


def test_every_command_of_the_foreign_weights_guide_parses_with_the_cli():
    doc = Path(__file__).resolve().parents[1] / "docs" / "foreign-checkpoints.md"
    assert _parses(doc) >= 4
