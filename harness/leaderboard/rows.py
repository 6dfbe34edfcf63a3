"""Result records reduced to what the leaderboard shows: runs, rows of runs (one
configuration each), the key of the table a run belongs to, and each row's label."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Mapping

from harness.api.errors import HarnessError
from harness.leaderboard import identity as board_identity
from harness.profiles import DEFAULT_EVALUATORS
from harness.results.protocol import ROW_SEED_KEYS, strip_seeds
from harness.results.metrics import legacy_headline_ap, metrics_entries
from harness.results.naming import label_from_parts, labeler_size
from harness.results.label_truth import recorded_truth
from harness.runtime.cache import hash_params

#: Table 1's columns by the role their evaluator's protocol records (its ``mode``): "Head"
#: trains a classifier on the frozen trunk, "All" fine-tunes every layer
COLUMN_OF_MODE = {"head": "Head", "all": "All"}

#: the order of a table's rows by init (then representation, labeler, size, backbone)
INIT_ORDER = {"supervised": 0, "random": 1, "sound": 2, "imported": 3}


def table1_evaluators(frozen: Any = None) -> dict[str, str]:
    """Table 1's columns, ``{"Head": evaluator, "All": evaluator}``.

    Read from the frozen protocol (:class:`harness.results.protocol.FrozenProtocol`): the
    evaluator whose frozen protocol records ``mode`` ``head`` is Head, ``all`` All (of two
    with one role, the first by name). Without a frozen protocol, or one that froze no such
    pair, the profile's default evaluators, which are Head then All
    (:data:`harness.profiles.DEFAULT_EVALUATORS`).
    """
    found: dict[str, str] = {}
    for name, entry in sorted((frozen.evaluators if frozen is not None else {}).items()):
        column = COLUMN_OF_MODE.get(str((entry.get("protocol") or {}).get("mode")))
        if column is not None:
            found.setdefault(column, name)
    if len(found) == len(COLUMN_OF_MODE):
        return {column: found[column] for column in COLUMN_OF_MODE.values()}
    return dict(zip(COLUMN_OF_MODE.values(), DEFAULT_EVALUATORS))


@dataclass(frozen=True)
class Stat:
    """The mean of a figure over runs, and the number of runs."""

    mean: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> "Stat | None":
        vals = [float(v) for v in values if v is not None]
        return cls(statistics.fmean(vals), len(vals)) if vals else None


def world_weights(counts: Mapping[str, int], worlds: list[str]) -> dict[str, float]:
    """Weights of ``worlds`` proportional to a row's runs on each (summing to 1)."""
    total = sum(counts[w] for w in worlds)
    return {w: counts[w] / total for w in worlds}


@dataclass(frozen=True, order=True)
class GroupKey:
    """What must be equal for numbers to be comparable."""

    downstream: str
    preset: str
    profile: str
    fingerprint: str
    #: empty for the VOC07 (Table 1) tables; else the one evaluator of a generic table
    evaluator: str = ""

    @property
    def slug(self) -> str:
        what = f"eval-{self.evaluator}" if self.evaluator else self.preset
        raw = f"{self.downstream}_{what}_{self.profile}_{self.fingerprint[:8]}"
        return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in raw)

    @property
    def title(self) -> str:
        if self.evaluator:
            return f"{self.downstream} · evaluator {self.evaluator} · profile {self.profile}"
        return f"{self.downstream} · preset {self.preset} · profile {self.profile}"


def data_key(downstream: Mapping[str, Any]) -> str:
    """What a group's downstream data must share: the fingerprint of the data itself, or
    for a toy VOC drawn for a world (``world_seed`` recorded) the digest of its recipe,
    so that the worlds of one recipe are one table (each world's test images stay apart:
    :attr:`Run.world`)."""
    if downstream.get("world_seed") is None:
        return downstream["fingerprint"]
    from harness.results.protocol import data_recipe

    return hash_params(data_recipe(downstream))


def _strip_seeds(obj: Any) -> Any:
    return strip_seeds(obj, ROW_SEED_KEYS)


def _pretext_section(dataset: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The record's pretext clip dataset without its clip list (kind, fingerprint, number
    of clips, path)."""
    if not dataset:
        return None
    return {k: dataset.get(k) for k in ("kind", "fingerprint", "n_clips", "path")}


#: kept for callers of the older name: per-class AP of a harness-record/1 metrics entry
headline_ap = legacy_headline_ap


@dataclass
class Run:
    """One record, reduced to what the leaderboard shows."""

    run_id: str
    created: str
    seed: int
    group: GroupKey
    row_key: str
    init: str
    repr_name: str | None
    labeler_name: str | None
    k: int | None
    backbone_name: str
    backbone_key: str
    evaluators_key: str
    pretrain_key: str
    #: evaluator name -> metrics in the EvalMetrics shape (:func:`metrics_entries`)
    metrics: dict[str, dict[str, Any]]
    #: the labeler's size parameter's name (``k``, ``bits``)
    size_name: str = "k"
    #: the pretext monitor's points ({"epoch", "monitor_<kind>_val_map", ...}), if any
    monitor: list[dict[str, Any]] | None = None
    #: the toy world the run's downstream data came from (None: not a generated world)
    world_seed: int | None = None
    #: the seed of the downstream test split (None: not recorded, i.e. before it was sealed)
    test_seed: int | None = None
    #: the downstream data's own fingerprint: runs with equal ones share their test images
    world: str = ""
    #: evaluator name -> per-image test scores (the record's sidecar), if it has them
    scores: dict[str, Any] | None = None
    #: what the row's identity takes from the pretext clips (:func:`board_identity.pretext_key`)
    pretext_key: str = ""
    #: the pretext clip dataset (kind, fingerprint, n_clips, path), None for a random init
    pretext: dict[str, Any] | None = None
    #: the downstream VOC folder's path and its (trainval, test) image counts
    downstream_path: str | None = None
    splits: tuple[int | None, int | None] = (None, None)
    #: settings the run changed, ``name=value`` (:func:`board_identity.overrides`)
    overrides: tuple[str, ...] = ()
    #: the pseudo-labels scored against the clips' ground truth (column -> {"nmi",
    #: "purity", ...}), where the record has it
    truth: dict[str, Any] | None = None
    #: an imported network's origin: source, architecture, file, sha256 (harness.networks.foreign)
    imported: dict[str, Any] | None = None
    #: the machine it ran on: CPU model and torch threads, or the GPU
    machine: str = "?"
    #: the toy world preset its clips came from, with any knob changed ("oracle",
    #: "realistic", "realistic with offscreen_prob=0.0"); None when it read no toy clips
    toy_world: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any], evaluator: str | None = None,
                    panels: Mapping[str, str] | None = None) -> "Run":
        """The run as a row of the VOC07 tables, or (``evaluator``) of that evaluator's;
        ``panels`` are Table 1's columns (:func:`table1_evaluators`, by default without a
        frozen protocol)."""
        panels = table1_evaluators() if panels is None else panels
        config = record["config"]
        try:
            metrics = metrics_entries(record)
        except HarnessError as exc:
            raise HarnessError(f"run {record['run_id']}: {exc}") from None
        down = record["downstream"]
        tabled_as = board_identity.downstream_name(record)
        if evaluator is None:
            presets = sorted({str(m["protocol"].get("preset")) for name, m in metrics.items()
                              if name in panels.values()})
            group = GroupKey(tabled_as, "+".join(presets), config["profile"], data_key(down))
        else:
            group = GroupKey(tabled_as, "", config["profile"], data_key(down), evaluator)
        identity = _strip_seeds({k: v for k, v in config.items() if k != "device"})
        clips = board_identity.pretext_key(record)
        if clips:       # the toy world's clips (or none) leave the identity as it was
            identity = {"config": identity, "pretext_data": clips}
        toy = down["kind"] == board_identity.TOY_DOWNSTREAM
        labeler = config.get("labeler")
        size = labeler_size(labeler)
        return cls(
            run_id=record["run_id"], created=record["created"], seed=config["seed"],
            group=group, row_key=hash_params(identity), init=config["init"],
            repr_name=(config.get("repr") or {}).get("name"),
            labeler_name=(labeler or {}).get("name"), k=size[1] if size else None,
            backbone_name=config["backbone"]["name"],
            backbone_key=hash_params(_strip_seeds(config["backbone"])),
            evaluators_key=hash_params(_strip_seeds(config["evaluators"])),
            pretrain_key=hash_params(_strip_seeds(config.get("pretrain"))),
            metrics=metrics, size_name="bits" if size and "bits" in size[0] else "k",
            monitor=((record.get("pretext") or {}).get("monitor") or {}).get("curve"),
            world_seed=down.get("world_seed", config.get("world_seed")) if toy else None,
            test_seed=down.get("test_seed"), world=down["fingerprint"],
            pretext_key=clips, pretext=_pretext_section(record.get("dataset")),
            downstream_path=down.get("path"),
            splits=board_identity.voc_split_sizes(record),
            overrides=board_identity.overrides(record),
            imported=config.get("imported"),
            truth=recorded_truth(record), toy_world=toy_world_label(record),
            machine=machine_label(record))

    def map(self, evaluator: str, field_name: str = "map") -> float | None:
        """The headline figure (``map``) or another of the evaluator's ``details``."""
        m = self.metrics.get(evaluator)
        if m is None:
            return None
        return m["value"] if field_name == "map" else m["details"].get(field_name)

    def ap(self, evaluator: str) -> dict[str, float | None] | None:
        """The per-class (or per-task) values of the evaluator's headline figure."""
        m = self.metrics.get(evaluator)
        return None if m is None else dict(m["breakdown"])


@dataclass
class Row:
    """One configuration: its runs, one per seed."""

    runs: list[Run]
    superseded: int = 0
    label: str = ""

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def runs_of(self, evaluator: str) -> list[Run]:
        """The runs that have a figure of ``evaluator``."""
        return [r for r in self.runs if r.map(evaluator) is not None]

    def has_scores(self, evaluator: str) -> bool:
        """Whether every run of the row has per-image test scores of ``evaluator``."""
        runs = self.runs_of(evaluator)
        return bool(runs) and all(r.scores and evaluator in r.scores for r in runs)

    def stat(self, evaluator: str, field_name: str = "map") -> Stat | None:
        return Stat.of(r.map(evaluator, field_name) for r in self.runs)

    def repeats_a_world(self, evaluator: str) -> bool:
        """Whether some world has more than one run of ``evaluator``: only then does the
        bootstrap, which resamples runs within each world, see run-to-run variation."""
        worlds = [r.world for r in self.runs_of(evaluator)]
        return len(worlds) > len(set(worlds))

    def world_counts(self, evaluator: str) -> dict[str, int]:
        """How many runs of ``evaluator`` the row has on each world."""
        counts: dict[str, int] = defaultdict(int)
        for r in self.runs_of(evaluator):
            counts[r.world] += 1
        return dict(counts)

    def world_mean(self, evaluator: str, world: str) -> float:
        """The row's mean of ``evaluator`` over its runs on ``world``."""
        return statistics.fmean(r.map(evaluator) for r in self.runs_of(evaluator)
                                if r.world == world)

    def weighted_mean(self, evaluator: str, weights: Mapping[str, float]) -> float:
        """The row's per-world means of ``evaluator`` weighted by ``weights`` (world ->
        weight, summing to 1)."""
        return sum(w * self.world_mean(evaluator, world) for world, w in weights.items())

    def mean_on(self, evaluator: str, worlds: Collection[str] | None) -> float | None:
        """The row's mean of ``evaluator`` over its runs on ``worlds`` (all its runs when
        None; None when it ran none there)."""
        if worlds is None:
            stat = self.stat(evaluator)
            return None if stat is None else stat.mean
        counts = {w: c for w, c in self.world_counts(evaluator).items() if w in worlds}
        return self.weighted_mean(evaluator, world_weights(counts, list(counts))) if counts else None

    def class_means(self, evaluator: str) -> dict[str, float | None] | None:
        aps = [a for a in (r.ap(evaluator) for r in self.runs) if a is not None]
        if not aps:
            return None
        classes = sorted({c for a in aps for c in a})
        out = {}
        for c in classes:
            stat = Stat.of(a.get(c) for a in aps)
            out[c] = None if stat is None else stat.mean
        return out

    def sort_key(self) -> tuple:
        f = self.first
        return (INIT_ORDER[f.init], f.repr_name or "", f.labeler_name or "",
                f.k if f.k is not None else -1, f.backbone_name, self.label, f.row_key)


def machine_label(record: Mapping[str, Any]) -> str:
    """The kind of machine a record ran on, as its environment says: the GPU's name, or
    the CPU model with its torch thread count ("?" where the record does not say)."""
    env = record.get("environment") or {}
    device = env.get("device") or {}
    if device.get("type") not in (None, "cpu"):
        return str(device.get("name") or device.get("type"))
    model = (env.get("machine") or {}).get("cpu_model") or device.get("name") or "?"
    threads = device.get("torch_threads")
    return f"{model}, {threads} torch thread{'s' if threads != 1 else ''}" if threads else str(model)


def toy_world_label(record: Mapping[str, Any]) -> str | None:
    """The name of the toy world whose clips the record trained on (its preset, and the
    knobs it changed); None when it read no toy clips (a random init, one's own videos)."""
    from harness.data.toy.config import world_config
    from harness.results.protocol import record_world

    world = record_world(record)
    return None if world is None else world_config(world).preset_label


def base_label(run: Run) -> str:
    """The run's name (:func:`harness.results.naming.label_from_parts`): e.g. "sound: mfcc
    k=15 alexnet", "random init alexnet", "supervised resnet18"."""
    return label_from_parts(run.init, run.backbone_name, repr=run.repr_name,
                            labeler=run.labeler_name, imported=run.imported,
                            size=(run.size_name, run.k) if run.k is not None else None)
