"""Per-image test scores beside a result record: ``<run id>.scores.npz``.

A record holds each evaluator's summary (mAP, per-class AP); the leaderboard's confidence
intervals resample test images, so they need every test image's class scores. An
evaluator that has them returns them in :attr:`harness.api.interfaces.EvalMetrics.test_scores`
(a :class:`harness.evaluation.ap.SplitScores`); the core writes them, for every evaluator of the run,
into one compressed NumPy archive next to the record, and the record names the file and
its sha256 in its ``test_scores`` section.

Layout of the archive, per evaluator ``E``: ``E/scores`` (float64 [images, classes]),
``E/labels`` (int8: 1 present, 0 absent, -1 difficult-only), ``E/image_ids``,
``E/class_names``, ``E/split`` and ``E/trained_on``. The bytes are a pure function of the
scores (fixed zip timestamps), so the same scores always give the same sha256.

The scores are kept as the evaluator computed them, in float64, so that the record's
figures can be recomputed from them exactly (:mod:`harness.results.verify`): rounding to float32
can merge two scores a few units in the last place apart, and a positive and a negative
image that tie then rank the other way round. Archives written before (the committed
records') hold float32 scores; they are read as they are.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from harness.evaluation.ap import SplitScores
from harness.api.errors import BadInputError

#: file-name suffix of the sidecar of a record ``<run id>.json``
SUFFIX = ".scores.npz"
_FIELDS = ("scores", "labels", "image_ids", "class_names", "split", "trained_on")
#: the zip entries' time stamp (fixed, so that the bytes depend on the scores alone)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def sidecar_name(run_id: str) -> str:
    """The file name of run ``run_id``'s scores: ``<run id>.scores.npz``."""
    return f"{run_id}{SUFFIX}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npz_bytes(scores: Mapping[str, SplitScores]) -> bytes:
    """The archive of ``scores`` (evaluator name -> its test-split scores), as bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(scores):
            s = scores[name]
            arrays = {"scores": np.asarray(s.scores, dtype=np.float64),
                      "labels": np.asarray(s.labels, dtype=np.int8),
                      "image_ids": np.asarray(s.image_ids, dtype=str),
                      "class_names": np.asarray(s.class_names, dtype=str),
                      "split": np.asarray(s.split, dtype=str),
                      "trained_on": np.asarray(s.trained_on, dtype=str)}
            for key in _FIELDS:
                info = zipfile.ZipInfo(f"{name}/{key}.npy", date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                array_buf = io.BytesIO()
                np.lib.format.write_array(array_buf, arrays[key], allow_pickle=False)
                zf.writestr(info, array_buf.getvalue())
    return buf.getvalue()


def parse_npz(data: bytes, source: str | os.PathLike) -> dict[str, SplitScores]:
    """Evaluator name -> scores from archive bytes; BadInputError naming ``source`` if the
    archive is not one :func:`npz_bytes` wrote."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = sorted({key.rpartition("/")[0] for key in npz.files})
            out = {}
            for name in names:
                a = {key: npz[f"{name}/{key}"] for key in _FIELDS}
                out[name] = SplitScores(
                    split=str(a["split"]), trained_on=str(a["trained_on"]),
                    image_ids=tuple(str(x) for x in a["image_ids"]),
                    class_names=tuple(str(x) for x in a["class_names"]),
                    scores=a["scores"].astype(np.float64), labels=a["labels"].astype(np.int8))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"{source}: not a test-scores archive ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - SplitScores' shape check, a truncated zip
        raise BadInputError(f"{source}: unusable test-scores archive ({exc})") from None
    return out


def checked_bytes(path: str | os.PathLike, sha256: str, record: str = "its result record"
                  ) -> bytes:
    """The bytes of sidecar ``path``, checked against the ``sha256`` that ``record`` names
    (BadInputError naming the file when it is missing, unreadable or changed)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"{path}: missing; {record} names it as its per-image "
                            f"test scores") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read test scores: {exc}") from None
    if sha256_bytes(data) != sha256:
        raise BadInputError(f"{path}: its sha256 does not match the one {record} names "
                            f"(the scores were changed or replaced)")
    return data


def read_sidecar(path: str | os.PathLike, sha256: str) -> dict[str, SplitScores]:
    """The scores in ``path``, checked against the ``sha256`` its record names."""
    data = checked_bytes(path, sha256)
    return parse_npz(data, path)
