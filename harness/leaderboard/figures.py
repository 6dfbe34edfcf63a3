"""The paper's qualitative figures, as PNG files.

- Figure 1: frames grouped by sound cluster. For each pseudo-label (k-means cluster, or
  distinct binary code), a grid of frames from clips that carry it; plus one overview with
  a row per cluster. If sound clusters mean something, a cluster's frames look alike.
- Figure 2: for chosen units (channels) of a checkpoint's third convolutional layer, the 9
  frames of a clip dataset that activate each unit most (maximum over positions), as in
  Zeiler & Fergus; plus one overview with a row per unit.

Images are composed with Pillow (no plotting library), so the same inputs give the same
PNG bytes.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from harness.api.errors import BadInputError, HarnessError

if TYPE_CHECKING:
    from PIL import Image as PILImage
    from torch import nn

    from harness.data.clips import ClipDataset

THUMB = 96
PAD = 4
HEADER = 18
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


# --------------------------------------------------------------------------- composition
def thumbnail(image: "PILImage.Image", size: int = THUMB) -> "PILImage.Image":
    """A square ``size`` thumbnail: shorter side scaled to ``size``, centre crop."""
    from PIL import ImageOps

    return ImageOps.fit(image.convert("RGB"), (size, size))


def grid(images: Sequence["PILImage.Image"], columns: int, title: str = "",
         size: int = THUMB) -> "PILImage.Image":
    """Thumbnails in rows of ``columns``, under a one-line ``title``."""
    from PIL import Image, ImageDraw

    columns = max(1, columns)
    rows = max(1, math.ceil(len(images) / columns))
    top = HEADER if title else 0
    canvas = Image.new("RGB", (PAD + columns * (size + PAD), top + PAD + rows * (size + PAD)),
                       BACKGROUND)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas.paste(thumbnail(image, size), (PAD + c * (size + PAD), top + PAD + r * (size + PAD)))
    if title:
        ImageDraw.Draw(canvas).text((PAD, 3), title, fill=TEXT)
    return canvas


def stack(parts: Sequence["PILImage.Image"]) -> "PILImage.Image":
    """Images one under another, left-aligned."""
    from PIL import Image

    width = max(p.width for p in parts)
    canvas = Image.new("RGB", (width, sum(p.height for p in parts)), BACKGROUND)
    y = 0
    for p in parts:
        canvas.paste(p, (0, y))
        y += p.height
    return canvas


def save_png(image: "PILImage.Image", path: Path) -> Path:
    """Write ``image`` as PNG atomically."""
    from harness.runtime.io import write_bytes

    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    write_bytes(path, buf.getvalue())
    return path


# --------------------------------------------------------------------------- Figure 1
def load_cluster_ids(labels_path: str | os.PathLike, n_clips: int) -> np.ndarray:
    """Pseudo-labels as one cluster id per clip.

    Accepts int [N] cluster ids or 0/1 [N, L] binary codes (each distinct code is a
    cluster); rejects anything else, and a length other than the dataset's, by name.
    """
    path = Path(labels_path)
    try:
        labels = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such labels file") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: not a .npy array of labels ({exc})") from None
    if labels.ndim == 2 and labels.shape[0] > 0:
        _, ids = np.unique(labels, axis=0, return_inverse=True)
        labels = ids.reshape(-1)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise BadInputError(f"{path}: expected integer cluster ids [N] or binary codes [N, L], "
                            f"got {labels.dtype} {labels.shape}")
    if labels.shape[0] != n_clips:
        raise BadInputError(f"{path}: {labels.shape[0]} labels for a dataset of {n_clips} clips")
    return labels.astype(np.int64)


def clusters_by_size(ids: np.ndarray, max_clusters: int | None = None) -> list[tuple[int, np.ndarray]]:
    """(cluster id, member indices) sorted by size (largest first), then by id."""
    values, counts = np.unique(ids, return_counts=True)
    order = sorted(zip(values.tolist(), counts.tolist()), key=lambda vc: (-vc[1], vc[0]))
    if max_clusters is not None:
        order = order[:max_clusters]
    return [(int(v), np.flatnonzero(ids == v)) for v, _ in order]


def figure1(data: str | os.PathLike, labels: str | os.PathLike, out: str | os.PathLike, *,
            per_cluster: int = 16, max_clusters: int | None = None, seed: int = 0,
            overview_columns: int = 8) -> list[Path]:
    """Write ``figure1.png`` (a row per cluster) and ``figure1_cluster<id>.png`` (a grid each).

    Each cluster shows ``per_cluster`` of its clips drawn with ``seed`` (all of them if
    fewer), in dataset order. Returns the paths written.
    """
    from harness.data.clips import ClipDataset

    dataset = ClipDataset(data)
    ids = load_cluster_ids(labels, len(dataset))
    rng = np.random.default_rng(seed)
    out = Path(out)
    written, rows = [], []
    for cluster, members in clusters_by_size(ids, max_clusters):
        chosen = np.sort(rng.choice(members, size=min(per_cluster, len(members)), replace=False))
        frames = [dataset.load_frame(int(i)) for i in chosen]
        title = f"cluster {cluster}: {len(members)} clips"
        columns = math.ceil(math.sqrt(len(frames)))
        written.append(save_png(grid(frames, columns, title), out / f"figure1_cluster{cluster:03d}.png"))
        rows.append(grid(frames[:overview_columns], overview_columns, title))
    written.insert(0, save_png(stack(rows), out / "figure1.png"))
    return written


# --------------------------------------------------------------------------- Figure 2
def parse_units(text: str) -> list[int]:
    """"3,17,42" -> [3, 17, 42]; BadInputError on anything else."""
    try:
        units = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise BadInputError(f"--units {text!r}: expected comma-separated integers") from None
    if not units or any(u < 0 for u in units):
        raise BadInputError(f"--units {text!r}: expected one or more non-negative integers")
    return units


def conv_layer(net: "nn.Module", n: int = 3) -> "nn.Conv2d":
    """The ``n``-th ``nn.Conv2d`` of ``net`` in module order (conv3 for ``n=3``)."""
    from torch import nn

    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) < n:
        raise HarnessError(f"the network's trunk has {len(convs)} convolutional layers; "
                           f"conv{n} does not exist")
    return convs[n - 1]


def unit_activations(trunk: "nn.Module", layer: "nn.Module", batches, units: Sequence[int],
                     device: str = "cpu") -> np.ndarray:
    """float32 [N, len(units)]: each image's maximum (over positions) response of each unit.

    ``batches`` yields float tensors [B, 3, H, W] already normalised for the network.
    """
    import torch

    captured = {}
    handle = layer.register_forward_hook(lambda _m, _i, output: captured.__setitem__("x", output))
    chunks = []
    cuda = device.startswith("cuda")
    try:
        trunk.eval().to(device)
        with torch.no_grad():
            for batch in batches:
                batch = batch.to(device)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    trunk(batch)
                act = captured["x"][:, list(units)].float()
                chunks.append(act.amax(dim=(2, 3)).cpu().numpy())
    finally:
        handle.remove()
    return np.concatenate(chunks) if chunks else np.zeros((0, len(units)), np.float32)


def top_indices(activations: np.ndarray, n: int = 9) -> np.ndarray:
    """[U, n]: per unit (column), the rows with the highest activation (ties: lower index)."""
    order = np.argsort(-activations, axis=0, kind="stable")
    return order[:n].T


def _preprocess(size: int, mean, std):
    from torchvision.transforms import v2

    import torch

    return v2.Compose([v2.Resize(size), v2.CenterCrop(size), v2.ToImage(),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def _batches(dataset: "ClipDataset", transform, batch_size: int):
    import torch

    from harness.runtime.progress import track

    indices = range(len(dataset))
    for start in track(range(0, len(dataset), batch_size), "conv3 activations",
                       total=math.ceil(len(dataset) / batch_size)):
        yield torch.stack([transform(dataset.load_frame(i))
                           for i in indices[start:start + batch_size]])


def figure2(data: str | os.PathLike, checkpoint: str, units: Sequence[int],
            out: str | os.PathLike, *, device: str | None = None, top: int = 9,
            batch_size: int = 64) -> list[Path]:
    """Write ``figure2.png`` (a row per unit) and ``figure2_unit<u>.png`` (a 3x3 grid each).

    ``checkpoint`` is what :func:`harness.networks.checkpoint.load_pretrained` accepts (a ``.pt``
    path or ``random:<backbone>``). Frames are resized and normalised the way the
    backbone expects. Returns the paths written.
    """
    import torch

    from harness.networks.checkpoint import load_pretrained
    from harness.data.clips import ClipDataset

    from harness.runtime.devices import resolve_device

    device = resolve_device(device)
    dataset = ClipDataset(data)
    if len(dataset) < 1:
        raise BadInputError(f"{data}: the clip dataset is empty")
    model = load_pretrained(checkpoint, map_location="cpu")
    layer = conv_layer(model.net.trunk, 3)
    bad = [u for u in units if u >= layer.out_channels]
    if bad:
        raise BadInputError(f"--units {bad}: conv3 of {checkpoint} has {layer.out_channels} "
                            f"units (0..{layer.out_channels - 1})")
    backbone = model.backbone
    size = int(getattr(model, "input_size", None) or model.meta.get("input_size")
               or backbone.input_size)
    transform = _preprocess(size, backbone.mean, backbone.std)
    acts = unit_activations(model.net.trunk, layer, _batches(dataset, transform, batch_size),
                            units, device=device)
    best = top_indices(acts, min(top, len(dataset)))
    out = Path(out)
    written, rows = [], []
    for unit, indices in zip(units, best):
        frames = [dataset.load_frame(int(i)) for i in indices]
        title = f"conv3 unit {unit}: top {len(frames)}"
        written.append(save_png(grid(frames, 3, title), out / f"figure2_unit{unit:03d}.png"))
        rows.append(grid(frames, len(frames), title))
    written.insert(0, save_png(stack(rows), out / "figure2.png"))
    return written
