"""The evaluation stage: one evaluator, one network, one downstream folder -> checked metrics.

``harness eval`` and ``harness run`` both call :func:`run_evaluator`, which builds the
:class:`~harness.api.interfaces.EvalContext`, calls the evaluator's ``evaluate`` (the only
method the core uses) and checks what comes back against the
:class:`~harness.api.interfaces.EvalMetrics` contract, so that a broken evaluator fails here,
naming itself, rather than in the record writer or the leaderboard.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from harness.api.errors import HarnessError
from harness.api.interfaces import EvalContext, EvalMetrics, Evaluator, PretrainedModel


def metrics_problem(metrics: Any) -> str | None:
    """Why ``metrics`` breaks the EvalMetrics contract (one line), or None."""
    if not isinstance(metrics, EvalMetrics):
        return f"evaluate() must return EvalMetrics, got {type(metrics).__name__}"
    for name in ("headline", "formula"):
        value = getattr(metrics, name)
        if not isinstance(value, str) or not value.strip():
            return f"{name} must be a non-empty string, got {value!r}"
    if not _finite_number(metrics.value):
        return f"value must be a finite number, got {metrics.value!r}"
    if not isinstance(metrics.breakdown, dict) or not metrics.breakdown:
        return "breakdown must be a non-empty dict of name -> number"
    for key, value in metrics.breakdown.items():
        if not isinstance(key, str) or not (value is None or _finite_number(value)):
            return f"breakdown[{key!r}] must be a finite number or None, got {value!r}"
    if not isinstance(metrics.protocol, dict):
        return f"protocol must be a dict, got {type(metrics.protocol).__name__}"
    if not isinstance(metrics.details, dict):
        return f"details must be a dict, got {type(metrics.details).__name__}"
    from harness.evaluation.ap import SplitScores

    if metrics.test_scores is not None and not isinstance(metrics.test_scores, SplitScores):
        return (f"test_scores must be a harness.evaluation.ap.SplitScores or None, got "
                f"{type(metrics.test_scores).__name__}")
    return None


def _finite_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def metrics_dict(metrics: EvalMetrics) -> dict[str, Any]:
    """The record's form of an evaluator's metrics (JSON values; ``test_scores`` is not
    part of it: it goes to the record's sidecar, :mod:`harness.results.scores`)."""
    from harness.results.schema import to_jsonable

    return to_jsonable({f.name: getattr(metrics, f.name) for f in dataclasses.fields(metrics)
                        if f.name != "test_scores"})


def run_evaluator(evaluator: Evaluator, model: PretrainedModel, data_root: Path, *,
                  profile: str, seed: int, device: str, work_dir: Path,
                  progress: bool = True) -> EvalMetrics:
    """``evaluator.evaluate`` under a context built from the arguments, its output checked."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    context = EvalContext(profile=profile, seed=seed, device=device, work_dir=work_dir,
                          progress=progress)
    metrics = evaluator.evaluate(model, Path(data_root), context)
    problem = metrics_problem(metrics)
    if problem is not None:
        raise HarnessError(f"evaluator {evaluator.name!r}: {problem}")
    return metrics
