"""``harness run``: every stage of the benchmark, each cached under a key of its inputs.

Read it top to bottom: :func:`run` checks the run (:mod:`.checks`), resolves the data
(:mod:`.data_stage`), then features -> labels (:mod:`.labels_stage`) -> pretext network
(:mod:`.pretext_stage`) -> downstream metrics (:mod:`.eval_stage`) -> result record. Each
stage's output sits in the cache folder under a key of everything it depends on, so a
second identical run recomputes nothing, changing ``k`` redoes clustering onwards only,
and an interrupted run resumes (pretext training and evaluation also resume inside their
own stage). A sweep of runs is :mod:`.sweep`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from harness.pipeline.checks import check_run
from harness.pipeline.config import TRAINED_INITS, RunConfig, RunResult
from harness.pipeline.data_stage import (downstream_identity, profile_toy_voc, toy_clips,
                                         voc_cache_key, voc_fingerprint)
from harness.pipeline.eval_stage import evaluate
from harness.pipeline.labels_stage import (labeler_size_of, make_labeler, sound_labels,
                                           true_object_labels)
from harness.pipeline.pretext_stage import pretext
from harness.profiles import TABLE1_LABELS
from harness.runtime.cache import hash_file, hash_params


def run(config: RunConfig, echo: Callable[[str], None] = print) -> RunResult:
    """Run every stage (reusing cached ones), write the result record, return it."""
    from harness.networks.checkpoint import load_pretrained
    from harness.data.clips import ClipDataset
    from harness.networks.shape import weights_digest
    from harness.results.records import StageTimer, build_record, dataset_identity, make_config
    from harness.results.store import write_record

    profile, device, backbone_params, backbone, evaluators = check_run(config)
    timer = StageTimer(echo=echo)
    run_id, logs = _open_logs(config)

    with timer.stage("data"):
        clips_root = dataset = None
        if config.init in TRAINED_INITS:     # a random or imported network trains on nothing
            clips_root = config.clips or toy_clips(profile, config.world_seed, config.progress)
            dataset = ClipDataset(clips_root)
        voc_root = config.voc or profile_toy_voc(profile, config.world_seed, config.progress)
        voc_key = voc_fingerprint(voc_root)

    rep = labeler = None
    labels_info = pretext_info = None
    if config.init == "sound":
        with timer.stage("features+labels"):
            labels_path, labels_info, rep, labeler = sound_labels(config, dataset, device)
        if labels_info.get("excluded"):
            first = labels_info["excluded_reasons"][0]
            echo(f"skipped {len(labels_info['excluded'])} of {len(dataset)} clips with unusable "
                 f"audio (first: {first['file']}: {first['reason']}); listed in the record")
    elif config.init == "supervised":
        labels_path, labels_info = true_object_labels(dataset)

    if config.init == "imported":
        spec = config.imported
        imported = load_pretrained(spec, seed=config.seed, backbone_params=backbone_params)
        model_key = hash_params(["imported", imported.meta["imported"]["sha256"],
                                 config.backbone, backbone_params, config.seed,
                                 weights_digest(imported.net)])
    elif config.init == "random":
        spec = f"random:{config.backbone}"
        model_key = hash_params(["random", config.backbone, backbone_params, config.seed,
                                 weights_digest(load_pretrained(spec, seed=config.seed,
                                                                backbone_params=backbone_params).net)])
    else:
        with timer.stage("pretrain"):
            ckpt, pretext_info = pretext(config, profile, labels_path, dataset, device,
                                         origin="pretext" if config.init == "sound" else "supervised",
                                         voc_root=voc_root, loggers=logs)
        spec, model_key = str(ckpt), hash_file(ckpt)

    metrics: dict[str, Any] = {}
    test_scores: dict[str, Any] = {}
    voc_cache = voc_cache_key(voc_root)
    for evaluator in evaluators:
        with timer.stage(evaluator.name):
            model = load_pretrained(spec, seed=config.seed, backbone_params=backbone_params)
            metrics[evaluator.name], scores = evaluate(
                evaluator, model, voc_root, voc_cache, model_key, profile, config.seed, device,
                config.progress, echo=echo)
        if scores is not None:
            test_scores[evaluator.name] = scores
        if logs:
            logs.log_eval(evaluator.name, metrics[evaluator.name])

    size = labeler_size_of(labeler)
    record = build_record(
        config=make_config(init=config.init, backbone=backbone, evaluators=evaluators,
                           profile=config.profile, seed=config.seed, device=device, repr=rep,
                           labeler=labeler, pretrain=pretext_info["settings"] if pretext_info else None,
                           k=size[1] if size else None,
                           size_param=getattr(labeler, "size_param", None),
                           world_seed=config.world_seed,
                           overrides=config.overrides(),
                           # where imported weights came from: framework, file, sha256
                           **({"imported": imported.meta["imported"]}
                              if config.init == "imported" else {})),
        dataset=dataset_identity(dataset, "clips" if config.clips else "toy", clips_root)
        if dataset is not None else None,
        downstream=downstream_identity("voc07" if config.voc else "toy-voc", voc_root, voc_key,
                                       None if config.voc else config.world_seed),
        metrics=metrics, timings=timer.seconds, labels=labels_info, pretext=pretext_info,
        test_scores=test_scores, run_id=run_id)
    if logs:
        logs.log_config(record["config"])
        record["logs"] = {"folder": logs.folder.name, "loggers": list(logs.names),
                          "files": logs.close()}
    path = write_record(record, config.results, test_scores=test_scores)
    echo(table1_row(record))
    echo(stage_summary(timer.seconds))
    return RunResult(record, path)


def _open_logs(config: RunConfig):
    """(run id, :class:`harness.pipeline.loggers.RunLogs`) of a run with ``--logger``: the id is
    chosen now, so that the logs folder, ``<results>/<run_id>.logs``, has the record's
    name while the run goes on. (None, no loggers) without."""
    from harness.api.registry import default_registry
    from harness.results.naming import new_run_id, utc_now
    from harness.results.records import plugin_entry
    from harness.pipeline.loggers import RunLogs

    if not config.loggers:
        return None, RunLogs([], None)
    sound = config.init == "sound"
    named = {"init": config.init, "repr": {"name": config.repr} if sound else None,
             "labeler": plugin_entry(make_labeler(config, default_registry())) if sound
             else None, "backbone": {"name": config.backbone}, "seed": config.seed}
    run_id = new_run_id(named, utc_now())
    folder = Path(config.results) / f"{run_id}.logs"
    return run_id, RunLogs.open(config.loggers, folder, run_id)


def table1_row(record: dict[str, Any]) -> str:
    """The run's Table-1 row: method, seed, then each evaluator's headline figure."""
    from harness.results.metrics import metrics_entries
    from harness.results.naming import run_label

    from tabulate import tabulate

    cfg = record["config"]
    cells = [run_label(cfg), f"seed {cfg['seed']}"]
    headers = ["method", "seed"]
    for name, m in metrics_entries(record).items():
        headers.append(TABLE1_LABELS.get(name, f"{name} {m['headline']}"))
        cells.append(f"{m['value']:.1f}")
    return tabulate([cells], headers=headers, tablefmt="github")


def stage_summary(seconds: dict[str, float]) -> str:
    """Where the run's minutes went: seconds and share of the total per stage, as plain
    lines that read the same on a terminal and in a log (the record keeps the numbers)."""
    from tabulate import tabulate

    total = sum(seconds.values())
    rows = [[name, f"{s:.1f}", f"{100 * s / total:.0f}%" if total > 0 else "-"]
            for name, s in seconds.items()]
    rows.append(["total", f"{total:.1f}", "100%" if total > 0 else "-"])
    return tabulate(rows, headers=["stage", "seconds", "share"], tablefmt="simple",
                    colalign=("left", "right", "right"), disable_numparse=True)
