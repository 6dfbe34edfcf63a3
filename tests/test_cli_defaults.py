"""Every command-line default comes from its one home: the profile module or a typed config,
and ``--help`` shows the value a run will use."""

from __future__ import annotations

import typer.main
from typer.testing import CliRunner

from harness import profiles
from harness.cli import app
from harness.data.ingest import IngestConfig
from harness.labels.sound_features import FeatureOptions
from harness.pretext.config import PretrainConfig

runner = CliRunner()


def _defaults(*path: str) -> dict[str, object]:
    """Option name -> default of the command at ``path`` (enum members as their values)."""
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    out = {}
    for param in command.params:
        value = param.default
        if isinstance(value, list):
            value = [getattr(v, "value", v) for v in value]
        out[param.name] = getattr(value, "value", value)
    return out


def test_run_and_sweep_default_to_the_plugins_and_settings_of_the_profile_module():
    run, sweep = _defaults("run"), _defaults("sweep")
    assert (run["repr"], run["labeler"], run["init"]) == (
        profiles.DEFAULT_REPR, profiles.DEFAULT_LABELER, profiles.DEFAULT_INIT)
    assert (run["profile"], run["seed"], run["world_seed"], run["device"]) == (
        profiles.DEFAULT_PROFILE, profiles.DEFAULT_SEED, profiles.DEFAULT_WORLD_SEED,
        profiles.DEFAULT_DEVICE)
    assert str(run["results"]) == profiles.DEFAULT_RESULTS == str(sweep["results"])
    assert sweep["repr"] == [profiles.DEFAULT_REPR]
    assert sweep["backbone"] == [profiles.DEFAULT_BACKBONE]
    assert sweep["init"] == [profiles.DEFAULT_INIT]
    # the schedule is the profile's, decided when the run starts: no default of its own
    assert run["epochs"] is None and run["lr"] is None and run["batch_size"] is None


def test_the_other_commands_read_their_defaults_from_the_profile_and_typed_configs():
    label, evaluate, pretrain = _defaults("label"), _defaults("eval"), _defaults("pretrain")
    assert (label["labeler_name"], label["repr_name"]) == (profiles.DEFAULT_LABELER,
                                                           profiles.DEFAULT_REPR)
    assert evaluate["evaluator"] == profiles.DEFAULT_EVALUATORS[0]
    assert evaluate["profile"] == pretrain["profile"] == profiles.DEFAULT_PROFILE
    assert pretrain["precision"] == PretrainConfig.__dataclass_fields__["precision"].default
    features = _defaults("features")
    for option in ("dtype", "window", "batch_size", "device", "shard_size"):
        assert features[option] == FeatureOptions.__dataclass_fields__[option].default
    ingest = _defaults("data", "ingest")
    assert (ingest["every"], ingest["sample_rate"], ingest["size"]) == (
        IngestConfig.every, IngestConfig.sample_rate, IngestConfig.frame_size)


def test_help_shows_the_default_profiles_schedule_where_the_profile_decides():
    toy = profiles.get_profile(profiles.DEFAULT_PROFILE)
    shown = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert f"{toy.pretext_epochs} from the {toy.name} profile" in shown.output
    assert f"{toy.pretext_batch_size} from the {toy.name} profile" in shown.output
    shown = runner.invoke(app, ["pretrain", "--help"], env={"COLUMNS": "300"})
    assert f"{toy.pretext_lr} from the {toy.name} profile" in shown.output
    assert f"[default: ({profiles.MONITOR_EVERY})]" in shown.output
