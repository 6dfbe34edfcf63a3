"""The evaluation stage: one downstream evaluator on the run's network, cached under the
network, the downstream folder, the evaluator's parameters and the profile and seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from harness.api.errors import BadInputError
from harness.profiles import Profile
from harness.runtime.cache import cache_root, stage_key
from harness.runtime.cache_lock import entry_lock
from harness.runtime.io import write_json


def evaluate(evaluator, model, voc_root: Path, voc_key: str, model_key: str,
             profile: Profile, seed: int, device: str, progress: bool,
             echo: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Any]:
    """One evaluator's metrics (the record's form) and its per-image test scores (a
    :class:`harness.evaluation.ap.SplitScores`, or None if it returns none), cached under the model,
    the downstream folder, the evaluator's parameters and the profile and seed it runs
    under. A cache entry that cannot be read back (a truncated ``metrics.json``, a
    damaged scores file) is recomputed, and ``echo`` (default: stderr) says so."""

    from harness.evaluation.stage import metrics_dict, run_evaluator
    from harness.runtime.io import write_bytes
    from harness.results.scores import npz_bytes, parse_npz

    # the profile's evaluation scaling is in the key, not only its name: an evaluator may read
    # any of it (the VOC07 ones read iteration counts and precision), so changing the
    # profile must not return metrics cached under the old values
    key = stage_key("eval", evaluator.name, evaluator.params(), profile.name,
                    asdict(profile.evaluation), seed, voc_key, model_key)
    folder = cache_root() / "eval" / key
    done, scores_file = folder / "metrics.json", folder / "test-scores.npz"
    with entry_lock(folder):
        if done.is_file():
            try:
                metrics = json.loads(done.read_text(encoding="utf-8"))
                if not isinstance(metrics, dict) or "value" not in metrics:
                    raise ValueError("not an evaluator's metrics")
                scores = (parse_npz(scores_file.read_bytes(), scores_file)[evaluator.name]
                          if scores_file.is_file() else None)
                return metrics, scores
            except (ValueError, KeyError, BadInputError) as exc:   # JSONDecodeError is a ValueError
                (echo or _say)(f"{evaluator.name}: damaged evaluation cache entry {done} "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                               f"recomputing it")
                done.unlink(missing_ok=True)
                scores_file.unlink(missing_ok=True)
        result = run_evaluator(evaluator, model, voc_root, profile=profile.name, seed=seed,
                               device=device, work_dir=folder / "work", progress=progress)
        if result.test_scores is not None:      # before metrics.json, which marks the entry done
            write_bytes(scores_file, npz_bytes({evaluator.name: result.test_scores}))
        metrics = metrics_dict(result)
        write_json(done, metrics)
        return metrics, result.test_scores


def _say(line: str) -> None:
    """A line for the user on stderr (where stdout may be a table someone parses)."""
    import sys

    print(line, file=sys.stderr)
