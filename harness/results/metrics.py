"""Reading a record's metrics: every evaluator's figures in the EvalMetrics shape, whatever
the record's schema (``harness-record/1`` stored VOC07-shaped ``map``, ``ap``, ``preset``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from harness.api.errors import HarnessError
from harness.results.schema import LEGACY_SCHEMA_ID


def metrics_entries(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every evaluator's metrics of ``record`` in the EvalMetrics shape, whatever its schema.

    A ``harness-record/1`` entry is converted: ``map`` becomes ``value`` (headline
    ``"map"``), the headline formula's per-class AP the ``breakdown``, ``protocol`` stays,
    and everything else goes to ``details``.
    """
    if record.get("schema") != LEGACY_SCHEMA_ID:
        return {name: dict(m) for name, m in record["metrics"].items()}
    out = {}
    for name, m in record["metrics"].items():
        protocol = dict(m.get("protocol") or {})
        protocol.setdefault("preset", m["preset"])
        formula = m.get("headline") or "mean AP over classes, percent"
        details = {k: v for k, v in m.items() if k not in ("map", "ap", "protocol", "headline")}
        out[name] = {"headline": "map", "formula": formula, "value": m["map"],
                     "breakdown": legacy_headline_ap(m), "protocol": protocol,
                     "details": details}
    return out


def legacy_headline_ap(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Per-class AP of a ``harness-record/1`` entry's headline formula.

    ``ap`` is either {class: AP} (taken as is) or {AP kind: {class: AP}}; for the latter,
    the kind whose mean over classes matches ``map`` is the headline one.
    """
    import statistics

    ap = metrics["ap"]
    if all(not isinstance(v, dict) for v in ap.values()):
        return dict(ap)
    for kind in sorted(ap):
        vals = [v for v in ap[kind].values() if v is not None]
        if vals and math.isclose(statistics.fmean(vals), metrics["map"], abs_tol=0.05):
            return dict(ap[kind])
    if len(ap) == 1:
        return dict(next(iter(ap.values())))
    raise HarnessError(f"cannot tell which of the AP kinds {sorted(ap)} gives map="
                       f"{metrics['map']}: no kind's per-class mean matches it")
