"""Result records: schema, building, atomic never-overwriting writes, reading.

The records here are synthetic test fixtures built in tmp_path, never committed results.
"""

from __future__ import annotations

import copy
import json
import os

import pytest

from harness.results import records, store
from harness.api.errors import BadInputError, HarnessError
from harness.leaderboard.paper_tables import VOC_CLASSES

FIXED_ENV = {"python": "3.11.0", "packages": {"torch": "2.0"}, "machine": {"cpu_count": 2},
             "device": {"device": "cpu", "type": "cpu"}}
FIXED_CODE = {"version": "0.1.0", "git_commit": "0123456789abcdef0123456789abcdef01234567",
              "git_dirty": False}


def metrics(value: float, preset: str = "krahenbuhl") -> dict:
    """An evaluator's metrics (EvalMetrics as a dict) whose per-class APs average to ``value``."""
    ap = {c: value + (i % 5 - 2) for i, c in enumerate(VOC_CLASSES)}
    return {"headline": "map", "formula": "sklearn_pessimistic AP, mean over classes, percent",
            "value": sum(ap.values()) / len(ap), "breakdown": ap,
            "protocol": {"preset": preset, "head_init": "pretext"},
            "details": {"map_voc07_11pt": value - 1, "map_voc10": value + 1,
                        "formulas": {"map": "sklearn_pessimistic"}}}


def legacy_metrics(value: float, preset: str = "krahenbuhl") -> dict:
    """The same in the shape harness-record/1 stored (map, ap, preset)."""
    ap = {c: value + (i % 5 - 2) for i, c in enumerate(VOC_CLASSES)}
    return {"map": sum(ap.values()) / len(ap), "ap": ap, "preset": preset,
            "map_voc07_11pt": value - 1, "map_voc10": value + 1, "head_init": "pretext",
            "formulas": {"map": "sklearn_pessimistic"}}


def config(init: str = "sound", *, seed: int = 0, k: int = 15, repr_name: str = "mfcc",
           backbone: str = "alexnet", profile: str = "toy") -> dict:
    sound = init == "sound"
    return {
        "init": init,
        "repr": {"name": repr_name, "params": {"n_mfcc": 20}} if sound else None,
        "labeler": {"name": "kmeans", "params": {"k": k, "seed": seed}} if sound else None,
        "backbone": {"name": backbone, "params": {"batch_norm": True}},
        "pretrain": {"epochs": 2, "seed": seed} if init != "random" else None,
        "evaluators": {"voc07_linear": {"name": "voc07_linear", "params": {"preset": "krahenbuhl"}},
                       "voc07_full": {"name": "voc07_full", "params": {"preset": "krahenbuhl"}}},
        "profile": profile, "seed": seed, "device": "cpu",
    }


def make(init: str = "sound", *, head: float = 40.0, all_: float = 50.0,
         downstream: str = "toy-voc", preset: str = "krahenbuhl",
         created: str = "2025-01-01T00:00:00.000000+00:00", **cfg) -> dict:
    """A complete, valid record (fixed environment so tests are deterministic)."""
    dataset = None
    if init != "random":
        ids = [f"clip{i:03d}" for i in range(4)]
        dataset = {"kind": "toy", "fingerprint": "f" * 64, "n_clips": 4, "clip_ids": ids,
                   "path": "/tmp/toy"}
    return records.build_record(
        config=config(init, **cfg),
        downstream={"kind": downstream, "fingerprint": ("d" if downstream == "toy-voc" else "e") * 64,
                    "path": None},
        metrics={"voc07_linear": metrics(head, preset), "voc07_full": metrics(all_, preset)},
        dataset=dataset, timings={"features": 1.5, "pretrain": 3.0},
        labels={"sizes": [1, 3]} if init == "sound" else None,
        pretext={"val_acc": 0.5} if init != "random" else None,
        environment=FIXED_ENV, code=FIXED_CODE, created=created)


def as_written(record: dict) -> dict:
    """``record`` as :func:`records.write_record` writes it: with its digest."""
    return {**record, "digest": records.record_digest(record)}


def test_valid_record_builds_and_round_trips(tmp_path):
    record = make()
    assert record["schema"] == records.SCHEMA_ID
    assert record["run_id"].startswith("20250101T000000-sound-mfcc-k15-alexnet-s0-")
    binary = {**record["config"], "labeler": {"name": "pca_binary", "params": {"bits": 15}}}
    assert records.new_run_id(binary, record["created"]).startswith(
        "20250101T000000-sound-mfcc-pca_binary-bits15-alexnet-s0-")
    path = records.write_record(record, tmp_path)
    assert path.parent == tmp_path and path.name == f"{record['run_id']}.json"
    assert records.read_record(path) == as_written(record)
    assert records.read_records(tmp_path) == [as_written(record)]


def test_baseline_records_have_no_repr_or_labeler():
    for init in ("random", "supervised"):
        record = make(init)
        assert record["config"]["repr"] is None and record["config"]["labeler"] is None


@pytest.mark.parametrize("mutate, where", [
    (lambda r: r.pop("metrics"), "metrics"),
    (lambda r: r["metrics"]["voc07_linear"].pop("value"), "value"),
    (lambda r: r["metrics"]["voc07_linear"].__setitem__("value", "high"), "value"),
    (lambda r: r["metrics"]["voc07_linear"].__setitem__("headline", ""), "headline"),
    (lambda r: r["metrics"]["voc07_full"]["breakdown"].__setitem__("dog", "x"), "dog"),
    (lambda r: r["metrics"]["voc07_full"].pop("protocol"), "protocol"),
    (lambda r: r["metrics"]["voc07_full"].__setitem__("map", 40.0), "map"),   # old shape in /2
    (lambda r: r["metrics"].clear(), "metrics"),
    (lambda r: r["config"].__setitem__("init", "magic"), "init"),
    (lambda r: r["config"].__setitem__("seed", "0"), "seed"),
    (lambda r: r["config"].__setitem__("repr", None), "repr"),  # sound run without repr
    (lambda r: r["downstream"].__setitem__("kind", "imagenet"), "kind"),
    (lambda r: r["timings"].__setitem__("pretrain", -1), "pretrain"),
    (lambda r: r.__setitem__("schema", "harness-record/0"), "schema"),
    (lambda r: r.__setitem__("created", "yesterday"), "created"),
    (lambda r: r.__setitem__("created", "2025-13-45T99:00:00+00:00"), "created"),
    (lambda r: r.__setitem__("run_id", "../evil"), "run_id"),
    (lambda r: r.__setitem__("surprise", 1), "surprise"),
    (lambda r: r["dataset"].__setitem__("n_clips", 5), "n_clips"),
])
def test_schema_rejects_bad_records(mutate, where):
    record = make()
    mutate(record)
    problem = records.record_problem(record)
    assert problem is not None and where in problem


def test_random_init_must_not_claim_a_labeler():
    record = make("random")
    record["config"]["labeler"] = {"name": "kmeans", "params": {"k": 15}}
    assert "labeler" in records.record_problem(record)


def test_evaluator_extras_are_allowed():
    record = make()
    record["metrics"]["voc07_linear"]["protocol"] = {"lr": 0.001, "anything": [1, 2]}
    record["metrics"]["custom_eval"] = metrics(33.0)
    assert records.record_problem(record) is None


def _legacy(record: dict) -> dict:
    """``record`` as harness-record/1 stored it (VOC07-shaped metrics)."""
    old = copy.deepcopy(record)
    old["schema"] = records.LEGACY_SCHEMA_ID
    for name, m in old["metrics"].items():
        old["metrics"][name] = {**legacy_metrics(40.0), "map": m["value"], "ap": m["breakdown"],
                                "preset": m["protocol"]["preset"]}
    return old


def test_legacy_records_validate_and_read_in_the_new_shape():
    record = make()
    old = _legacy(record)
    assert records.record_problem(old) is None
    entries = records.metrics_entries(old)
    for name, m in record["metrics"].items():
        assert entries[name]["value"] == m["value"]
        assert entries[name]["breakdown"] == m["breakdown"]
        assert entries[name]["protocol"]["preset"] == m["protocol"]["preset"]
    # a new record with old-shaped metrics, or an old one with new-shaped, is refused
    mixed = copy.deepcopy(record)
    mixed["schema"] = records.LEGACY_SCHEMA_ID
    assert records.record_problem(mixed) is not None


def test_nested_ap_by_kind_is_accepted_in_legacy_records():
    old = _legacy(make())
    m = old["metrics"]["voc07_linear"]
    m["ap"] = {"sklearn_pessimistic": m["ap"], "voc07_11pt": m["ap"]}
    assert records.record_problem(old) is None
    assert records.metrics_entries(old)["voc07_linear"]["breakdown"] == \
        m["ap"]["sklearn_pessimistic"]


def test_build_record_rejects_nan_with_the_field_name():
    with pytest.raises(HarnessError, match=r"metrics\.voc07_linear\.value"):
        records.build_record(config=config(), downstream={"kind": "toy-voc", "fingerprint": "d",
                                                          "path": None},
                             metrics={"voc07_linear": {**metrics(1.0), "value": float("nan")}},
                             dataset=None, environment=FIXED_ENV, code=FIXED_CODE)


def test_build_record_converts_numpy_values():
    np = pytest.importorskip("numpy")
    m = metrics(40.0)
    m["value"] = np.float32(m["value"])
    m["breakdown"] = {c: np.float64(v) for c, v in m["breakdown"].items()}
    record = records.build_record(
        config={**config("random"), "seed": np.int64(3)},
        downstream={"kind": "toy-voc", "fingerprint": "d", "path": None},
        metrics={"voc07_linear": m}, environment=FIXED_ENV, code=FIXED_CODE)
    json.dumps(record, allow_nan=False)
    assert record["config"]["seed"] == 3 and isinstance(record["config"]["seed"], int)


def test_write_never_overwrites(tmp_path):
    record = make()
    path = records.write_record(record, tmp_path)
    before = path.read_bytes()
    changed = copy.deepcopy(record)
    changed["metrics"]["voc07_linear"]["value"] = 99.0
    with pytest.raises(HarnessError, match="never overwritten"):
        records.write_record(changed, tmp_path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


def test_invalid_record_writes_nothing(tmp_path):
    record = make()
    record["metrics"]["voc07_linear"]["value"] = "bad"
    with pytest.raises(BadInputError, match="not a valid result record"):
        records.write_record(record, tmp_path / "results")
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_write_is_atomic_when_the_final_step_fails(tmp_path, monkeypatch):
    """If putting the file in place fails, no partial record and no temp file remain."""
    def broken_link(src, dst):
        raise KeyboardInterrupt  # an interruption at the worst moment

    monkeypatch.setattr(store, "_link_no_clobber", broken_link)
    with pytest.raises(KeyboardInterrupt):
        records.write_record(make(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_run_ids_are_unique_per_call():
    a, b = make(), make()  # same configuration, same time
    assert a["run_id"] != b["run_id"]


def test_read_rejects_bad_files_naming_them(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(BadInputError, match="broken.json: not JSON"):
        records.read_record(bad)
    wrong = tmp_path / "wrong.json"
    record = make()
    del record["config"]["seed"]
    wrong.write_text(json.dumps(record))
    with pytest.raises(BadInputError, match=r"wrong.json: not a valid result record.*seed"):
        records.read_record(wrong)
    with pytest.raises(BadInputError, match="broken.json"):
        records.read_records(tmp_path)


def test_read_records_skips_temp_files_and_rejects_duplicate_ids(tmp_path):
    assert records.read_records(tmp_path / "absent") == []
    record = make()
    records.write_record(record, tmp_path)
    (tmp_path / ".partial.json.tmp").write_text("{")
    (tmp_path / ".hidden.json").write_text("{")
    assert len(records.read_records(tmp_path)) == 1
    (tmp_path / "copy.json").write_text(json.dumps(record))
    with pytest.raises(BadInputError, match="also used by"):
        records.read_records(tmp_path)


def test_environment_info_describes_this_machine():
    env = records.environment_info("cpu")
    assert env["machine"]["cpu_count"] == os.cpu_count()
    assert env["packages"]["numpy"] and env["packages"]["torch"]
    assert env["device"]["type"] == "cpu"
    from harness.runtime.devices import KERNEL_FLAGS
    assert env["machine"]["cpu_model"] and env["device"]["name"] == env["machine"]["cpu_model"]
    assert set(env["machine"]["cpu_flags"]) <= set(KERNEL_FLAGS)
    code = records.code_info()
    from harness import __version__
    assert code["version"] == __version__
    assert code["git_commit"] is None or len(code["git_commit"]) == 40


def test_record_with_measured_environment_is_valid(tmp_path):
    record = records.build_record(
        config=config("random"), downstream={"kind": "toy-voc", "fingerprint": "d", "path": None},
        metrics={"voc07_linear": metrics(30.0)})
    assert records.read_record(records.write_record(record, tmp_path)) == as_written(record)


def test_stage_timer_accumulates():
    timer = records.StageTimer()
    with timer.stage("a"):
        pass
    with timer.stage("a"):
        pass
    assert set(timer.seconds) == {"a"} and timer.seconds["a"] >= 0


def test_stage_timer_says_when_each_stage_completes():
    lines = []
    timer = records.StageTimer(echo=lines.append)
    with timer.stage("pretrain"):
        pass
    with pytest.raises(RuntimeError):
        with timer.stage("voc07_linear"):
            raise RuntimeError("stage failed")
    assert len(lines) == 1 and lines[0].startswith("pretrain: 0.0 s (at ")


def test_dataset_identity_lists_every_clip(tmp_path):
    from harness.data.clips import ClipDataset, write_dataset
    from PIL import Image
    import numpy as np
    import soundfile as sf

    rows = []
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / f"f{i}.png")
        sf.write(tmp_path / f"a{i}.wav", np.zeros(100, np.float32) + 0.1, 1000)
        rows.append({"clip_id": f"c{i}", "video": "v", "timestamp": i, "frame": f"f{i}.png",
                     "audio": f"a{i}.wav", "sample_rate": 1000})
    write_dataset(tmp_path, rows, {"made_by": "test"})
    ds = ClipDataset(tmp_path)
    ident = records.dataset_identity(ds, "toy")
    assert ident["clip_ids"] == ["c0", "c1", "c2"] and ident["n_clips"] == 3
    assert ident["fingerprint"] == ds.fingerprint()


def test_make_config_from_plugin_instances():
    class Fake:
        def __init__(self, name, **params):
            self.name, self._params = name, params

        def params(self):
            return self._params

    cfg = records.make_config(init="sound", repr=Fake("mfcc", n_mfcc=20),
                              labeler=Fake("kmeans", k=15, seed=0), backbone=Fake("alexnet"),
                              evaluators=[Fake("voc07_linear", preset="krahenbuhl")],
                              pretrain={"epochs": 30}, profile="toy", seed=0, device="cpu",
                              world_seed=0)
    assert cfg["repr"] == {"name": "mfcc", "params": {"n_mfcc": 20}}
    assert cfg["evaluators"]["voc07_linear"]["params"] == {"preset": "krahenbuhl"}
    assert cfg["world_seed"] == 0
    record = make()
    record["config"] = cfg
    assert records.record_problem(record) is None
    with pytest.raises(ValueError):
        records.make_config(init="magic", backbone=Fake("a"), evaluators=[], profile="toy",
                            seed=0, device="cpu")


# --------------------------------------------------------------------------- test-score sidecars
def split_scores(seed: int = 0, n: int = 30):
    """Synthetic per-image test scores of the 20 classes (every class has a positive)."""
    import numpy as np

    from harness.evaluation.ap import SplitScores

    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(VOC_CLASSES))) < 0.3).astype(np.int8)
    labels[0] = 1
    labels[1, :3] = -1
    return SplitScores(split="test", trained_on="trainval",
                       image_ids=tuple(f"{i:06d}" for i in range(n)),
                       class_names=tuple(VOC_CLASSES),
                       scores=rng.normal(size=(n, len(VOC_CLASSES))) + labels, labels=labels)


def make_with_scores(**kw):
    base = make(**kw)
    scores = {"voc07_linear": split_scores(0), "voc07_full": split_scores(1)}
    record = records.build_record(**{k: base[k] for k in (
        "config", "downstream", "metrics", "dataset", "timings", "labels", "pretext",
        "environment", "code", "created")}, test_scores=scores)
    return record, scores


def test_sidecar_is_written_beside_the_record_and_read_back_checked(tmp_path):
    import numpy as np

    record, scores = make_with_scores()
    section = record["test_scores"]
    assert section["file"] == f"{record['run_id']}.scores.npz"
    assert section["evaluators"] == ["voc07_full", "voc07_linear"]
    path = records.write_record(record, tmp_path, test_scores=scores)
    sidecar = tmp_path / section["file"]
    assert sidecar.is_file() and records.read_record(path) == as_written(record)
    back = records.read_test_scores(path, record)
    for name, s in scores.items():
        assert back[name].image_ids == s.image_ids and back[name].split == "test"
        assert np.array_equal(back[name].labels, s.labels)
        assert np.array_equal(back[name].scores, s.scores)     # float64 on disk: exact
    # the bytes are a function of the scores: the record's sha256 is reproducible
    from harness.results.scores import npz_bytes, sha256_bytes

    assert sha256_bytes(npz_bytes(scores)) == section["sha256"]
    assert records.read_records(tmp_path) == [as_written(record)]  # the .npz is no record


def test_altered_or_missing_sidecar_is_a_one_line_error_naming_it(tmp_path):
    record, scores = make_with_scores()
    path = records.write_record(record, tmp_path, test_scores=scores)
    sidecar = tmp_path / record["test_scores"]["file"]
    data = sidecar.read_bytes()
    sidecar.write_bytes(data[:-10] + b"0" * 10)
    with pytest.raises(BadInputError, match=r"scores\.npz: its sha256 does not match"):
        records.read_record(path)
    sidecar.unlink()
    with pytest.raises(BadInputError, match=r"scores\.npz: missing"):
        records.read_record(path)
    with pytest.raises(BadInputError, match=r"scores\.npz: missing"):
        records.read_test_scores(path, record)


def test_scores_must_be_the_ones_the_record_names(tmp_path):
    record, scores = make_with_scores()
    with pytest.raises(HarnessError, match="give write_record those scores"):
        records.write_record(record, tmp_path)
    other = {**scores, "voc07_full": split_scores(7)}
    with pytest.raises(HarnessError, match="differ"):
        records.write_record(record, tmp_path, test_scores=other)
    with pytest.raises(HarnessError, match="names no sidecar"):
        records.write_record(make(), tmp_path, test_scores=scores)
    assert list(tmp_path.iterdir()) == []         # nothing half-written


def test_a_record_without_a_sidecar_still_loads(tmp_path):
    record = make()
    path = records.write_record(record, tmp_path)
    assert "test_scores" not in records.read_record(path)
    assert records.read_test_scores(path, record) is None
