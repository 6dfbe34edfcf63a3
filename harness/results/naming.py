"""What a run is called: its run id (the record's file name) and its label (the name of
its row on a leaderboard and in the Table-1 row ``harness run`` prints), and the labeler
size both show.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from typing import Any, Mapping

from harness.profiles import DEFAULT_LABELER
from harness.results.schema import to_jsonable


def utc_now() -> str:
    """The current time as ISO 8601 with microseconds and a UTC offset."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_run_id(config: Mapping[str, Any], created: str) -> str:
    """A readable, unique run id: time, what was run, seed, and a hash of it all.

    e.g. ``20250101T120000-sound-mfcc-k15-alexnet-s0-1a2b3c4d``, or
    ``...-sound-mfcc-pca_binary-bits15-alexnet-s0-...`` for a labeler other than k-means.
    The hash covers the configuration, the creation time and 8 random bytes, so two runs
    never share an id.
    """
    stamp = datetime.fromisoformat(created.replace("Z", "+00:00")).strftime("%Y%m%dT%H%M%S")
    parts = [stamp, str(config.get("init", "run"))]
    if config.get("repr"):
        parts.append(str(config["repr"]["name"]))
    labeler = config.get("labeler")
    if labeler and labeler.get("name", DEFAULT_LABELER) != DEFAULT_LABELER:
        parts.append(str(labeler["name"]))
    size = labeler_size(labeler, config.get("size_param"))
    if size is not None:
        parts.append(f"{'bits' if 'bits' in size[0] else 'k'}{size[1]}")
    if config.get("backbone"):
        parts.append(str(config["backbone"]["name"]))
    parts.append(f"s{config.get('seed', 0)}")
    digest = hashlib.sha256(
        json.dumps([to_jsonable(config), created, os.urandom(8).hex()], sort_keys=True,
                   default=str).encode()).hexdigest()[:8]
    safe = "-".join(parts).replace(":", "_").replace("/", "_")
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in safe)
    return f"{safe[:150]}-{digest}"


#: the size parameters an entry's own parameters are searched for when its record does
#: not name the labeler's (records written before configs kept ``size_param``): the
#: clusters of k-means and the bits of binary codes
UNNAMED_SIZE_PARAMS = ("k", "bits")


def labeler_size(labeler: Mapping[str, Any] | None,
                 size_param: str | None = None) -> tuple[str, int] | None:
    """(parameter name, value) of a labeler's size: ``("k", 15)``, ``("bits", 30)``; None
    without a labeler or a size.

    ``labeler`` is a labeler entry as a record's config holds it (``{"name", "params"}``,
    :func:`harness.results.records.plugin_entry`); ``size_param`` the parameter that sets
    its size (the plugin's ``size_param``, kept in a record's config under that name). An
    entry whose record does not name it is searched for :data:`UNNAMED_SIZE_PARAMS`.
    """
    if not labeler:
        return None
    params = labeler.get("params") or {}
    for key in ([size_param] if size_param else UNNAMED_SIZE_PARAMS):
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return key, value
    return None


def run_label(config: Mapping[str, Any]) -> str:
    """A run's name, from its record's ``config``: the method of the Table-1 row ``harness
    run`` prints, and its row on a leaderboard (:func:`label_from_parts`)."""
    labeler = config.get("labeler") or {}
    return label_from_parts(config["init"], config["backbone"]["name"],
                            repr=(config.get("repr") or {}).get("name"),
                            labeler=labeler.get("name"),
                            size=labeler_size(labeler, config.get("size_param")),
                            imported=config.get("imported"))


def label_from_parts(init: str, backbone: str, *, repr: str | None = None,
                     labeler: str | None = None, size: tuple[str, int] | None = None,
                     imported: Mapping[str, Any] | None = None) -> str:
    """The name of a run of ``init`` on ``backbone``; a sound run's names its representation,
    its labeler unless it is the default one, and the labeler's ``size`` (:func:`labeler_size`).

    e.g. "sound: mfcc k=15 alexnet", "sound: mfcc pca_binary bits=15 alexnet", "random init
    alexnet", "supervised resnet18", "imported torchvision:alexnet alexnet (alexnet.pth,
    sha256 0123456789ab)".
    """
    if init == "random":
        return f"random init {backbone}"
    if init == "supervised":
        return f"supervised {backbone}"
    if init == "imported":
        i = imported or {}
        return (f"imported {i.get('source')}:{i.get('architecture')} {backbone} "
                f"({i.get('file')}, sha256 {str(i.get('sha256'))[:12]})")
    parts = ["sound:", repr or "?"]
    if labeler and labeler != DEFAULT_LABELER:
        parts.append(labeler)
    if size is not None:
        parts.append(f"{'bits' if 'bits' in size[0] else 'k'}={size[1]}")
    parts.append(backbone)
    return " ".join(parts)
