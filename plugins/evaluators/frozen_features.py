"""Evaluators on frozen features: ``linear_probe``, ``voc07_svm``, ``voc07_lowshot``, ``knn``.

Each reads the features :mod:`harness.evaluation.layer_features` extracts once per (network, split, views)
and caches, so the four share one extraction. The classifiers live in the core
(:mod:`harness.evaluation.logreg`, :mod:`harness_plugins.evaluators.svm`, :mod:`harness.evaluation.knn`); this module only picks
splits, runs them and reports AP (:mod:`harness.evaluation.ap`) per layer:

- settings are chosen on train -> val (or, for the SVM's cost, by the benchmark suite's
  3-fold cross-validation inside trainval); the reported figure is trainval -> test;
- the headline is the mAP of one declared layer (``headline_layer``; default: the trunk's
  output -- AlexNet's pool5, ResNet's pooled features), the breakdown every layer's mAP;
- ``linear_probe``, ``voc07_svm`` and ``knn`` return the headline layer's per-image test
  scores (``EvalMetrics.test_scores``), which the record keeps beside it, so that the
  leaderboard's intervals can resample the test images (``voc07_lowshot``'s figure is a
  mean over sampled training sets and keeps none);
- the recorded ``protocol`` holds settings only, the same for every network (so it can be
  frozen before any result exists: :meth:`FrozenFeatureEvaluator.planned_protocol`); what
  the features of the evaluated network were (weights, layers, views) is in
  ``details["features"]``.

``evaluate(model, data_root, context)`` follows the evaluator contract and returns
:class:`~harness.api.interfaces.EvalMetrics`. Parameters are typed keyword arguments: the four
share :class:`FrozenFeatureEvaluator`'s (layers, views, ...), which each forwards as
``**shared`` and the registry checks with the evaluator's own
(:func:`harness.api.params.declared_params` follows the forwarding).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Sequence

import numpy as np

from harness.api import ap as ap_mod
from harness.api import knn as knn_mod
from harness.api import logreg
from harness_plugins.evaluators import svm
from harness.api import usable_cpus
from harness.api.errors import BadInputError
from harness.api import TARGET_VALUES, FrozenConfig
from harness.api.interfaces import Bounds, EvalContext, EvalMetrics, Evaluator, PretrainedModel
from harness.api import CLASSES

if TYPE_CHECKING:  # torch is imported when features are extracted, so listing plugins needs none
    from harness.api import FrozenFeatures

HEADLINE_FORMULA = ap_mod.HEADLINE


class FrozenFeatureEvaluator(Evaluator):
    """What the four share: the feature settings, the splits, the AP reports."""

    #: what the headline measures (completed by each evaluator)
    headline_name: ClassVar[str] = "map"

    def __init__(self, *, layers: Sequence[str] | None = None,
                 views: Annotated[int, Bounds(1, 1024)] = 1,
                 image_size: Annotated[int, Bounds(16, 4096)] | None = None,
                 target_values: Annotated[int, Bounds(1, None)] = TARGET_VALUES,
                 headline_layer: str | None = None,
                 n_jobs: Annotated[int, Bounds(1, 1024)] | None = None,
                 storage: Literal["float16", "float32"] | None = None):
        self.features = FrozenConfig(image_size=image_size, views=views,
                                     target_values=target_values,
                                     layers=tuple(layers) if layers is not None else None,
                                     storage=storage)
        self.headline_layer = headline_layer
        self.n_jobs = n_jobs or usable_cpus()   # the SVM solver's result ignores it

    def params(self) -> dict[str, Any]:
        f = asdict(self.features)
        f.pop("batch_size")
        # the storage dtype is listed only when given: left to the profile, the parameters
        # (part of a row's identity on the leaderboard) read as they did before it existed
        if f["storage"] is None:
            f.pop("storage")
        return {**f, "layers": list(f["layers"]) if f["layers"] else None,
                "headline_layer": self.headline_layer, **self.extra_params()}

    def extra_params(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ contract
    def evaluate(self, model: PretrainedModel, data_root: Path,
                 context: EvalContext) -> EvalMetrics:
        """Metrics of ``model`` on the VOC folder ``data_root``."""
        started = time.perf_counter()
        metrics = self.score(model, Path(data_root), context)
        metrics.details.setdefault("timings", {})["total_s"] = round(
            time.perf_counter() - started, 3)
        return metrics

    def score(self, model: PretrainedModel, data_root: Path, context: EvalContext) -> EvalMetrics:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared steps
    def split(self, model, data_root, split: str, context: EvalContext) -> FrozenFeatures:
        from harness.api import split_features

        return split_features(model, data_root, split, self.features, profile=context.profile,
                              seed=context.seed, device=context.device,
                              progress=context.progress)

    def costs_for(self, profile: str) -> tuple[float, ...]:
        """The SVM cost grid: as given, else the profile's (:data:`harness_plugins.evaluators.svm.PROFILE_COSTS`)."""
        given = getattr(self, "costs", None)
        return given if given else svm.PROFILE_COSTS[_profile(profile)]

    def headline_of(self, feats: FrozenFeatures) -> str:
        names = list(feats.layers)
        if self.headline_layer is not None:
            if self.headline_layer not in names:
                raise BadInputError(f"{self.name}: headline layer {self.headline_layer!r} is not "
                                    f"among the captured layers {names}")
            return self.headline_layer
        trunk = [n for n in names if feats.meta["params"]["layers"][n] == "trunk"]
        return trunk[0] if trunk else names[-1]

    def settings(self, profile: str) -> dict[str, Any]:
        """The evaluator's own protocol settings under ``profile`` (completed by each)."""
        return {}

    def protocol(self, profile: str) -> dict[str, Any]:
        """Every setting that decides the result under ``profile``, and nothing about the
        network evaluated (that goes to :meth:`feature_facts`), so that the protocol can be
        frozen before a result exists and is the same for every row."""
        config = asdict(self.features)
        config.pop("batch_size")
        config.pop("storage")
        # float16 storage is what every protocol frozen before the setting existed was made
        # with; it is implied where "storage" is absent, so those protocols stay current
        storage = self.features.resolved_storage(profile)
        stored = {} if storage == "float16" else {"storage": storage}
        return {"evaluator": self.name, "features": {
            "config": config, "image_size": self.features.resolved_size(profile), **stored,
            "pooling": f"adaptive average pool to <= {self.features.target_values} values",
            "views": "view 0 the whole image, the others seeded crops; features are their mean",
            "bn_statistics": ("recomputed on trainval for a randomly initialised network; "
                              "the checkpoint's otherwise"),
            "mode": "eval (BatchNorm running statistics, dropout off)"},
            "headline_layer": self.headline_layer or "the trunk's output (AlexNet pool5, ResNet pooled)",
            **self.settings(profile)}

    def planned_protocol(self, profile: str, seed: int = 0) -> dict[str, Any]:
        """The protocol a run under ``profile`` records (nothing is read or run)."""
        return self.protocol(profile)

    @staticmethod
    def feature_facts(model, feats: FrozenFeatures) -> dict[str, Any]:
        """What the features of this network were: its weights, layers and views."""
        p = feats.meta["params"]
        return {"layers": p["layers"], "view_seed": p["seed"],
                "views_digest": feats.meta["views_digest"], "weights": p["weights"],
                "bn_recomputed_on": p["bn_recompute_on"], "origin": model.origin,
                "checkpoint": str(model.checkpoint)}


def _profile(profile: str) -> str:
    if profile not in svm.PROFILE_COSTS:
        raise BadInputError(f"unknown profile {profile!r}; choose from {', '.join(svm.PROFILE_COSTS)}")
    return profile


def split_scores(scores: np.ndarray, feats: FrozenFeatures, trained_on: str
                 ) -> ap_mod.SplitScores:
    """A classifier's per-image scores on ``feats``' split, labelled with where they came
    from (what :func:`report` scores, and what an evaluator returns as its test scores)."""
    return ap_mod.SplitScores(
        split=feats.split, trained_on=trained_on, image_ids=feats.image_ids,
        class_names=CLASSES, scores=np.asarray(scores, dtype=np.float64), labels=feats.targets)


def report(scores: np.ndarray, feats: FrozenFeatures, trained_on: str) -> ap_mod.APReport:
    """AP of every class by every formula; refuses the split the classifier was fitted on."""
    return ap_mod.score_split(split_scores(scores, feats, trained_on))


def val_map(feats: FrozenFeatures):
    """``score(targets, scores)`` for tuning: headline mAP on the val split, over the classes
    val has a positive of (a small val split may lack one; its AP is undefined)."""
    keep = np.flatnonzero((np.asarray(feats.targets) == 1).any(axis=0))
    if keep.size == 0:
        raise BadInputError(f"split {feats.split!r}: no class has a positive image to tune on")

    def score(_targets, scores):
        return ap_mod.score_split(ap_mod.SplitScores(
            split=feats.split, trained_on="train", image_ids=feats.image_ids,
            class_names=tuple(CLASSES[i] for i in keep),
            scores=np.asarray(scores, dtype=np.float64)[:, keep],
            labels=np.asarray(feats.targets)[:, keep])).mean(HEADLINE_FORMULA)
    return score


def _formula(what: str) -> str:
    return (f"{what}: {HEADLINE_FORMULA} AP ({ap_mod.FORMULAS[HEADLINE_FORMULA]}), mean over the "
            "20 VOC classes, percent")


# --------------------------------------------------------------------------- linear probe
class LinearProbe(FrozenFeatureEvaluator):
    """One multi-label logistic regression per layer (weight decay chosen on val)."""

    name = "linear_probe"
    description = ("per-layer linear probes on frozen features (logistic, L-BFGS; weight decay "
                   "chosen on train -> val), mAP per layer on test")

    def __init__(self, *, weight_decays: Sequence[float] = logreg.WEIGHT_DECAYS, **shared):
        super().__init__(**shared)
        self.weight_decays = tuple(float(w) for w in weight_decays)

    def extra_params(self) -> dict[str, Any]:
        return {"weight_decays": list(self.weight_decays)}

    def settings(self, profile: str) -> dict[str, Any]:
        return {"train_split": "trainval", "test_split": "test", "tuned_on": "train -> val",
                "weight_decays": list(self.weight_decays),
                "solver": f"scipy.optimize.minimize L-BFGS-B, gtol 1e-6, maxiter {logreg.MAX_ITER}",
                "standardise": "centred by column, divided by the training rows' RMS norm"}

    def score(self, model, data_root, context) -> EvalMetrics:
        train, val, trainval, test = (self.split(model, data_root, s, context)
                                      for s in ("train", "val", "trainval", "test"))
        per_layer, chosen, val_scores, ap, tested = {}, {}, {}, {}, {}
        for layer in trainval.layers:
            wd, tried = logreg.choose_weight_decay(
                train.layers[layer], train.targets, val.layers[layer], val.targets,
                self.weight_decays, val_map(val))
            logits = logreg.fit_scores(trainval.layers[layer], trainval.targets,
                                       test.layers[layer], wd)
            tested[layer] = split_scores(logits, test, "trainval")
            rep = ap_mod.score_split(tested[layer])
            per_layer[layer] = rep.mean(HEADLINE_FORMULA)
            chosen[layer], val_scores[layer], ap[layer] = wd, tried, rep.ap
        head = self.headline_of(trainval)
        return EvalMetrics(
            headline=f"map_{head}", formula=_formula(f"test mAP of the {head} probe"),
            value=per_layer[head], breakdown=per_layer, test_scores=tested[head],
            protocol=self.protocol(context.profile),
            details={"features": self.feature_facts(model, trainval), "headline_layer": head,
                     "headline_ap": ap[head][HEADLINE_FORMULA], "chosen_weight_decay": chosen,
                     "val_map": val_scores, "ap": ap,
                     "n_train": len(trainval.image_ids), "n_test": len(test.image_ids)})


# --------------------------------------------------------------------------- SVM
class VOC07SVM(FrozenFeatureEvaluator):
    """The benchmark suite's VOC07 linear SVMs per class and layer (cost by 3-fold CV)."""

    name = "voc07_svm"
    #: a short run for harness.api.testing.check_evaluator (its tiny VOC has classes with only
    #: two positive training images)
    test_params: ClassVar[dict[str, Any]] = {"folds": 2, "costs": (1.0,)}
    description = ("VOC07 linear SVMs on frozen, L2-normalised features per layer, cost by 3-fold "
                   "CV AP on trainval (Goyal et al.'s benchmark suite), mAP per layer on test")

    def __init__(self, *, costs: Sequence[float] | None = None,
                 folds: Annotated[int, Bounds(2, 100)] = 3, **shared):
        super().__init__(**shared)
        self.costs = tuple(float(c) for c in costs) if costs else None
        self.folds = int(folds)

    def extra_params(self) -> dict[str, Any]:
        return {"costs": list(self.costs) if self.costs else None, "folds": self.folds}

    def settings(self, profile: str) -> dict[str, Any]:
        return {"train_split": "trainval", "test_split": "test",
                "tuned_on": f"{self.folds}-fold stratified CV AP inside trainval",
                "costs": list(self.costs_for(profile)), "normalisation": svm.NORMALISATION,
                "svm": {k: (str(v) if isinstance(v, dict) else v)
                        for k, v in svm.SVC_SETTINGS.items()},
                "solver": svm.SOLVER,
                "source": ("facebookresearch/fair_self_supervision_benchmark tools/svm/"
                           "train_svm_kfold.py lines 72-92, svm_helper.py lines 42-53"),
                "difficult": "left out of training and AP for that class"}

    def score(self, model, data_root, context) -> EvalMetrics:
        trainval, test = (self.split(model, data_root, s, context) for s in ("trainval", "test"))
        costs = self.costs_for(context.profile)
        per_layer, chosen, ap, timings, tested = {}, {}, {}, {}, {}
        for layer in trainval.layers:
            t = time.perf_counter()
            result = svm.train_svms(trainval.layers[layer], trainval.targets, test.layers[layer],
                                    costs=costs, folds=self.folds, seed=context.seed,
                                    n_jobs=self.n_jobs)
            tested[layer] = split_scores(result.scores, test, "trainval")
            rep = ap_mod.score_split(tested[layer])
            per_layer[layer] = rep.mean(HEADLINE_FORMULA)
            chosen[layer] = dict(zip(CLASSES, result.costs))
            ap[layer] = rep.ap
            timings[layer] = round(time.perf_counter() - t, 3)
        head = self.headline_of(trainval)
        return EvalMetrics(
            headline=f"map_{head}", formula=_formula(f"test mAP of the {head} SVMs"),
            value=per_layer[head], breakdown=per_layer, test_scores=tested[head],
            protocol=self.protocol(context.profile),
            details={"features": self.feature_facts(model, trainval), "headline_layer": head,
                     "headline_ap": ap[head][HEADLINE_FORMULA], "chosen_cost": chosen, "ap": ap,
                     "timings": {"svm_s": timings},
                     "n_train": len(trainval.image_ids), "n_test": len(test.image_ids)})


class VOC07LowShot(FrozenFeatureEvaluator):
    """Low-shot VOC07 SVMs: k positives per class, 5 samples, mean ± std mAP per k."""

    name = "voc07_lowshot"
    description = ("low-shot VOC07 SVMs (k = 1..96 positives per class, 5 samples; cost chosen on "
                   "train -> val), mean ± std test mAP per k")

    def __init__(self, *, ks: Sequence[int] = svm.LOWSHOT_K,
                 samples: Annotated[int, Bounds(1, 1000)] = svm.LOWSHOT_SAMPLES,
                 costs: Sequence[float] | None = None,
                 on_short: Literal["skip", "error"] = "skip", **shared):
        super().__init__(**shared)
        if on_short not in ("skip", "error"):
            raise BadInputError(f"voc07_lowshot: on_short must be skip or error, got {on_short!r}")
        self.ks = tuple(int(k) for k in ks)
        self.samples = int(samples)
        self.costs = tuple(float(c) for c in costs) if costs else None
        self.on_short = on_short

    def extra_params(self) -> dict[str, Any]:
        return {"ks": list(self.ks), "samples": self.samples,
                "costs": list(self.costs) if self.costs else None, "on_short": self.on_short}

    def settings(self, profile: str) -> dict[str, Any]:
        return {"layer": "the headline layer", "ks": list(self.ks), "samples": self.samples,
                "costs": list(self.costs_for(profile)), "normalisation": svm.NORMALISATION,
                "solver": svm.SOLVER,
                "sampler": "per class k positives, (C-1)k negatives, without replacement "
                           "(create_voc_low_shot_samples.py lines 30-56)",
                "tuned_on": "train -> val (the suite picks the cost on test; not here)",
                "train_split": "trainval", "test_split": "test", "on_short": self.on_short}

    def score(self, model, data_root, context) -> EvalMetrics:
        train, val, trainval, test = (self.split(model, data_root, s, context)
                                      for s in ("train", "val", "trainval", "test"))
        layer = self.headline_of(trainval)
        costs = self.costs_for(context.profile)
        tune, skipped_val = svm.lowshot_samples(train.targets, self.ks, self.samples,
                                                context.seed, self.on_short)
        final, skipped = svm.lowshot_samples(trainval.targets, self.ks, self.samples,
                                             context.seed + 1, self.on_short)
        curve, std, per_sample, chosen, val_curve, class_ap = {}, {}, {}, {}, {}, {}
        for k in self.ks:
            if k not in final:
                continue
            if k in tune:       # the cost is chosen on train -> val
                by_cost = svm.lowshot_scores(train.layers[layer], tune[k], val.layers[layer],
                                             costs, context.seed, self.n_jobs)
                val_map_k = {c: float(np.mean([report(s, val, "train").mean() for s in runs]))
                             for c, runs in by_cost.items()}
                chosen[k] = max(sorted(val_map_k), key=lambda c: val_map_k[c])
                val_curve[f"k={k}"] = {repr(c): v for c, v in val_map_k.items()}
            else:               # train is too small for this k: trainval's CV-free default
                chosen[k] = 1.0
                skipped_val[k] = skipped_val.get(k, "") + " (cost 1.0 used, not tuned)"
            runs = svm.lowshot_scores(trainval.layers[layer], final[k], test.layers[layer],
                                      [chosen[k]], context.seed, self.n_jobs)[chosen[k]]
            reports = [report(s, test, "trainval") for s in runs]
            maps = [r.mean() for r in reports]
            class_ap[k] = {c: float(np.mean([r.ap[HEADLINE_FORMULA][c] for r in reports]))
                           for c in CLASSES}
            curve[f"k={k}"] = float(np.mean(maps))
            std[f"k={k}"] = float(np.std(maps))
            per_sample[f"k={k}"] = maps
        if not curve:
            raise BadInputError(f"voc07_lowshot: no k could be sampled ({next(iter(skipped.values()))})")
        value = float(np.mean(list(curve.values())))
        return EvalMetrics(
            headline="lowshot_mean_map",
            formula=_formula(f"mean over k in {sorted(int(k[2:]) for k in curve)} of the "
                             f"{layer} SVMs' test mAP averaged over {self.samples} samples"),
            value=value, breakdown=curve,
            protocol=self.protocol(context.profile),
            details={"features": self.feature_facts(model, trainval), "layer": layer,
                     "std": std, "per_sample": per_sample,
                     # per-class AP at the largest k, mean over samples
                     "headline_ap": class_ap[max(class_ap)],
                     "chosen_cost": {f"k={k}": c for k, c in chosen.items()},
                     "val_map": val_curve,
                     "skipped": {f"k={k}": r for k, r in skipped.items()},
                     "not_tuned": {f"k={k}": r for k, r in skipped_val.items() if k in final}})


# --------------------------------------------------------------------------- kNN
class KNN(FrozenFeatureEvaluator):
    """Weighted kNN on frozen features (cosine, exp(sim / T) votes), AP per class."""

    name = "knn"
    description = ("weighted kNN on frozen features (cosine, k = 20, T = 0.07 as solo-learn), "
                   "trainval bank, test mAP per layer")

    def __init__(self, *, k: Annotated[int, Bounds(1, None)] = knn_mod.K_DEFAULT,
                 temperature: Annotated[float, Bounds(1e-6, None)] = knn_mod.TEMPERATURE_DEFAULT,
                 **shared):
        super().__init__(**shared)
        self.k, self.temperature = int(k), float(temperature)

    def extra_params(self) -> dict[str, Any]:
        return {"k": self.k, "temperature": self.temperature}

    def settings(self, profile: str) -> dict[str, Any]:
        return {"k": self.k, "temperature": self.temperature, "similarity": "cosine",
                "bank": "trainval", "test_split": "test",
                "votes": "class score = share of exp(sim / T) weight of the k neighbours with the class",
                "source": "vturrisi/solo-learn solo/utils/knn.py lines 30-33, 153"}

    def score(self, model, data_root, context) -> EvalMetrics:
        trainval, test = (self.split(model, data_root, s, context) for s in ("trainval", "test"))
        per_layer, ap, tested = {}, {}, {}
        for layer in trainval.layers:
            scores = knn_mod.knn_scores(trainval.layers[layer], trainval.targets,
                                        test.layers[layer], k=self.k, temperature=self.temperature)
            tested[layer] = split_scores(scores, test, "trainval")
            rep = ap_mod.score_split(tested[layer])
            per_layer[layer], ap[layer] = rep.mean(HEADLINE_FORMULA), rep.ap
        head = self.headline_of(trainval)
        return EvalMetrics(
            headline=f"map_{head}", formula=_formula(f"test mAP of kNN on {head}"),
            value=per_layer[head], breakdown=per_layer, test_scores=tested[head],
            protocol=self.protocol(context.profile),
            details={"features": self.feature_facts(model, trainval), "headline_layer": head,
                     "headline_ap": ap[head][HEADLINE_FORMULA], "ap": ap,
                     "n_bank": len(trainval.image_ids), "n_test": len(test.image_ids)})
