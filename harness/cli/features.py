"""``harness features``: a sound representation's feature matrix, of files or of a clip dataset.

    harness features --repr mfcc --out feats.npy clip1.wav song.mp3 video.mp4
    harness features --repr sound_texture --data clips/ --out feats.npy --skip-bad

Files are read with soundfile or PyAV, mixed down to mono and resampled; the matrix is
float32 [N, D] in argument (or clip) order, ``--dtype float64`` keeps full precision.
Results are cached by content and parameters, so a rerun is instant and an interrupted
one resumes; ``feats.json`` beside ``feats.npy`` records the parameters, the row indices
and every clip left out by ``--skip-bad``. Under ``torchrun`` each rank computes its shard.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from harness.cli.defaults import field_default
from harness.data.audio import Window
from harness.labels.sound_features import FeatureOptions


class Dtype(str, Enum):
    """What ``--dtype`` accepts."""

    float32 = "float32"
    float64 = "float64"

from harness.cli.params import parse_params

from harness.api.errors import BadInputError


def features(
    audio: Optional[List[Path]] = typer.Argument(None, help="Audio or video files (any format "
                                                 "soundfile or PyAV reads)."),
    repr_name: str = typer.Option(..., "--repr", "-r", help="Sound representation (see `harness plugins`)."),
    data: Optional[Path] = typer.Option(None, "--data", help="A clip dataset folder instead of files."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the matrix here (.npy; "
                                       "a .json description goes beside it)."),
    param: List[str] = typer.Option([], "--repr-param", "-p", help="Representation parameter "
                                    "NAME=VALUE (repeatable), e.g. -p mode=fast."),
    dtype: Dtype = typer.Option(Dtype(field_default(FeatureOptions, "dtype")), "--dtype", help="Feature dtype."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave unusable clips out (listed) "
                                  "instead of stopping at the first."),
    window: Window = typer.Option(Window(field_default(FeatureOptions, "window")), "--window", help="Window of a longer file."),
    batch_size: int = typer.Option(field_default(FeatureOptions, "batch_size"), "--batch-size", help="Clips per batch."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Audio-loading processes "
                                          "(default: one per spare core, at most 4)."),
    device: str = typer.Option(field_default(FeatureOptions, "device"), "--device", help="auto | cpu | cuda | cuda:N"),
    shard_size: int = typer.Option(field_default(FeatureOptions, "shard_size"), "--shard-size", help="Clips per cached shard (the unit of resuming)."),
    cache: bool = typer.Option(field_default(FeatureOptions, "cache"), "--cache/--no-cache", help="Use the feature cache."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Compute a sound representation's feature matrix [N, D] of audio files or a clip dataset."""
    from harness.labels.audio_sources import FileSource
    from harness.labels.sound_features import compute_features, open_dataset
    from harness.api.registry import default_registry

    from harness.runtime.io import check_output_path

    if bool(audio) == (data is not None):
        raise BadInputError("give audio files or --data DATASET (one of the two)")
    if out is not None:
        check_output_path(out)
    rep = default_registry().create("repr", repr_name, **parse_params(param))
    options = FeatureOptions(dtype=dtype.value, window=window.value, skip_bad=skip_bad, batch_size=batch_size,
                             workers=workers, device=device, shard_size=shard_size, cache=cache,
                             progress=progress)
    source = open_dataset(data) if data is not None else FileSource(audio or [])
    matrix = compute_features(rep, source, options)
    if _is_secondary_rank():
        return
    where = matrix.path
    if out is not None:
        matrix.save(out)
        where = out
    n, d = matrix.features.shape
    typer.echo(f"{rep.name}: {n} x {d} {matrix.dtype} features of {matrix.num_inputs} clips"
               + (f" -> {where}" if where is not None else " (not saved: give --out)"))
    if matrix.bad:
        typer.echo(f"skipped {len(matrix.bad)} bad clip(s) (row indices in the .json):")
        for bad in matrix.bad:
            typer.echo(f"  [{bad.index}] {bad.line()}")


def _is_secondary_rank() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0
