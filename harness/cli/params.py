"""``--<kind>-param NAME=VALUE`` options (``-p``): plugin parameters from the command line."""

from __future__ import annotations

import json
from typing import Any

from harness.api.errors import BadInputError


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["k=15", "preprocess=standardize"]`` -> ``{"k": 15, "preprocess": "standardize"}``.

    Values are read as JSON when they parse (numbers, true/false, null, lists), else kept
    as strings.
    """
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"plugin parameter {item!r}: expected NAME=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip()] = value
    return params
