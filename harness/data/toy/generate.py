"""Write the toy world to disk: a clip dataset, or a toy VOC2007 in the real layout.

Every clip and image draws from its own random stream, derived from the seed and its
index, so the output is the same for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from harness.api.errors import BadInputError
from harness.runtime.io import ensure_dir, partial_prefix, remove_stale_partials
from harness.runtime.processes import die_with_parent
from harness.runtime.progress import make_progress
from harness.data.toy.config import DEFAULT_PRESET, ToyConfig
from harness.data.toy.picture import render
from harness.data.toy.soundtrack import soundtrack
from harness.data.toy.world import SCENE_NAMES, sample_composition
from harness.data.voc import CLASSES, SPLITS

GENERATOR = "harness.toy"  # an identity string in records: kept as first written
#: bumped whenever the world's tables or renderers change what a (config, seed) produces;
#: recorded with every dataset, and part of a cache key for generated data
WORLD_VERSION = 1
#: independent random streams: clips, toy VOC trainval, toy VOC test, train/val split
_CLIPS, _TRAINVAL, _TEST, _SPLIT = 0, 1, 2, 3
_CHUNK = 25
#: marker file that says a VOC2007 folder was written by this generator (safe to replace)
VOC_MARKER = "toy.json"
#: bytes of memory a generated clip's or image's bookkeeping holds until the end (its
#: manifest row or annotation; measured ~0.8 kB)
ITEM_MEMORY_BYTES = 1000
#: a JPEG of a toy picture at the generator's quality is at most about this share of its
#: raw RGB bytes (measured ~1/5 at 64 px); its XML and list lines add ~1 kB
JPEG_SHARE = 0.25
ANNOTATION_BYTES = 1000


def item_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The random generator of item ``index`` of ``stream`` for ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(stream, index)))


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BadInputError(f"seed must be a non-negative integer, got {seed!r}")


def _default_jobs(jobs: int | None) -> int:
    if jobs is None:
        return max(1, min(os.cpu_count() or 1, 8))
    if jobs < 1:
        raise BadInputError(f"jobs must be >= 1, got {jobs}")
    return jobs


def clip_bytes(cfg: ToyConfig) -> int:
    """About the bytes one toy clip takes on disk: its 16-bit WAV and, at most, its frame
    uncompressed (PNG at level 1 saves little on the toy pictures)."""
    wav = 44 + 2 * round(cfg.sample_rate * cfg.clip_seconds)
    return wav + 3 * cfg.image_size ** 2


def voc_image_bytes(cfg: ToyConfig) -> int:
    """About the bytes one toy VOC image takes on disk: its JPEG and its annotation."""
    return int(JPEG_SHARE * 3 * cfg.image_size ** 2) + ANNOTATION_BYTES


def check_room(option: str, count: int, item_bytes: int, where: Path, what: str) -> None:
    """Refuse ``count`` items (``option``) whose files would not fit on the disk at
    ``where``, or whose bookkeeping would not fit in memory -- before anything is made."""
    from harness.runtime.bounds import check_disk, check_memory

    check_disk(option, count, count * item_bytes, where, what)
    check_memory(option, count, count * ITEM_MEMORY_BYTES, f"the list of {what}")


def _run_chunks(work: Callable[[Sequence[int]], list], n: int, jobs: int,
                description: str, progress: bool) -> list:
    """Apply ``work`` to chunks of range(n), in worker processes when ``jobs`` > 1."""
    chunks = [range(i, min(n, i + _CHUNK)) for i in range(0, n, _CHUNK)]
    results: list = []
    with make_progress(transient=not progress) as bar:
        task = bar.add_task(description, total=n, visible=progress)
        if jobs == 1 or len(chunks) <= 1:
            for chunk in chunks:
                results.extend(work(chunk))
                bar.advance(task, len(chunk))
        else:
            # workers end with this process: a killed generation leaves none writing on
            with ProcessPoolExecutor(max_workers=min(jobs, len(chunks)),
                                     initializer=die_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                futures = {pool.submit(work, chunk): len(chunk) for chunk in chunks}
                for future in as_completed(futures):
                    results.extend(future.result())
                    bar.advance(task, futures[future])
    return results


# --------------------------------------------------------------------------- clips
def _clip_paths(index: int) -> tuple[str, str]:
    shard = f"{index // 1000:03d}"
    return f"frames/{shard}/{index:06d}.png", f"audio/{shard}/{index:06d}.wav"


def _make_clips(out: Path, seed: int, cfg: ToyConfig, indices: Sequence[int]) -> list[dict]:
    import soundfile as sf
    from PIL import Image

    rows = []
    for index in indices:
        rng = item_rng(seed, _CLIPS, index)
        comp = sample_composition(rng, cfg, cfg.clip_object_counts)
        pixels, placed = render(rng, comp, cfg)
        audio, truth = soundtrack(rng, comp, cfg)
        frame, wav = _clip_paths(index)
        (out / frame).parent.mkdir(parents=True, exist_ok=True)
        (out / wav).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(out / frame, compress_level=1)
        buf = io.BytesIO()  # soundfile fsyncs real files on close; memory is much faster
        sf.write(buf, audio, cfg.sample_rate, format="WAV", subtype="PCM_16")
        (out / wav).write_bytes(buf.getvalue())
        seen = sorted({CLASSES[p.cls] for p in placed if p.visible >= cfg.min_visible},
                      key=CLASSES.index)
        sources = truth.sources
        heard = sorted({e.name for e in sources}, key=CLASSES.index)
        loudest = max(sources, key=lambda e: e.gain_db).name if sources else ""
        row = {"clip_id": f"toy-{index:06d}", "video": f"toy/{index:06d}",
               "timestamp": cfg.clip_seconds / 2, "frame": frame, "audio": wav,
               "sample_rate": cfg.sample_rate, "scene": SCENE_NAMES[comp.scene],
               "objects": ";".join(seen), "sounding": ";".join(heard),
               "loudest": loudest, "_index": index}
        if cfg.has_soundtrack:  # the oracle's manifest keeps the columns it always had
            row.update(truth.columns())
        rows.append(row)
    return rows


def _check_clip_folder(out: Path) -> None:
    """``out`` must be absent, empty, or a previous toy dataset (which is then replaced)."""
    from harness.data.clips import METADATA_NAME

    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    try:
        previous = json.loads((out / METADATA_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    if not isinstance(previous, dict) or previous.get("generator") != GENERATOR:
        raise BadInputError(f"{out}: folder is not empty and holds no toy clip dataset; "
                            "choose a new or empty folder")


def generate_clips(out: str | Path, n_clips: int, seed: int, *, config: ToyConfig | None = None,
                   jobs: int | None = None, progress: bool = True):
    """Write a toy clip dataset of ``n_clips`` clips to ``out``; return it as a ClipDataset.

    Ground truth goes in the manifest's extra columns: ``scene``, ``objects`` (classes
    visible in the frame), ``sounding`` (classes audible, in the frame or not) and
    ``loudest`` (the loudest audible class), ``;``-joined in VOC order; with soundtrack
    knobs on, also :data:`~harness.data.toy.soundtrack.SOUNDTRACK_COLUMNS` (every sound
    with its span and level, beds, off-screen sources, unrelated audio). None of it is
    drawn into pixels or audio. The config's preset (:attr:`ToyConfig.preset_label`) is
    recorded in dataset.json when it is not the oracle.
    The dataset is built beside ``out`` and renamed into place when complete (replacing a
    previous toy dataset there), so an interrupted run leaves ``out`` as it was.
    """
    from harness.data.clips import ClipDataset, write_dataset

    cfg = config or ToyConfig()
    _check_seed(seed)
    if n_clips < 1:
        raise BadInputError(f"--clips must be >= 1, got {n_clips}")
    given = Path(out)
    out = given.resolve()
    _check_clip_folder(out)
    check_room("--clips", n_clips, clip_bytes(cfg), out.parent, f"{n_clips} toy clips")
    ensure_dir(out.parent, "the dataset's parent folder")
    remove_stale_partials(out.parent, out.name)    # what killed generations left behind
    tmp = Path(tempfile.mkdtemp(prefix=partial_prefix(out.name), suffix=".partial",
                                dir=out.parent))
    try:
        work = partial(_make_clips, tmp, int(seed), cfg)
        rows = _run_chunks(work, n_clips, _default_jobs(jobs), "toy clips", progress)
        rows.sort(key=lambda r: r.pop("_index"))
        meta = {"generator": GENERATOR, "world_version": WORLD_VERSION, "kind": "clips",
                "seed": int(seed), "n_clips": n_clips,
                "config": cfg.to_dict(), "classes": list(CLASSES), "scenes": list(SCENE_NAMES),
                "report": {"videos": n_clips, "clips": n_clips, "skipped": {}}}
        if cfg.preset_label != DEFAULT_PRESET:  # the oracle's dataset.json is as it always was
            meta["preset"] = cfg.preset_label
        write_dataset(tmp, rows, meta)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ClipDataset(given)


# --------------------------------------------------------------------------- toy VOC
def _annotation_xml(image_id: str, size: int, objects: list[dict]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "harness toy world"
    sz = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(sz, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj["truncated"]))
        ET.SubElement(node, "difficult").text = str(int(obj["difficult"]))
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["bbox"]):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _make_images(voc: Path, seed: int, stream: int, first_id: int, cfg: ToyConfig,
                 indices: Sequence[int]) -> list[tuple[int, str, list[dict]]]:
    from PIL import Image

    done = []
    for index in indices:
        rng = item_rng(seed, stream, index)
        while True:  # redraw the rare picture whose every object ended up hidden
            comp = sample_composition(rng, cfg, cfg.voc_object_counts)
            pixels, placed = render(rng, comp, cfg)
            kept = [p for p in placed if p.bbox is not None and p.visible >= cfg.min_visible]
            if kept:
                break
        image_id = f"{first_id + index:06d}"
        objects = []
        for p in kept:
            side = max(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1]) + 1
            difficult = p.visible < cfg.difficult_visible or side < cfg.difficult_size * cfg.image_size
            objects.append({"name": CLASSES[p.cls], "bbox": p.bbox, "truncated": p.truncated,
                            "difficult": difficult})
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{image_id}.jpg",
                                     quality=cfg.jpeg_quality)
        (voc / "Annotations" / f"{image_id}.xml").write_bytes(
            _annotation_xml(image_id, cfg.image_size, objects))
        done.append((index, image_id, objects))
    return done


def _class_file_lines(ids: list[str], objects_of: dict[str, list[dict]], cls: str) -> str:
    """VOC's per-class list: 1 present, -1 absent, 0 only difficult instances."""
    lines = []
    for image_id in ids:
        flags = [o["difficult"] for o in objects_of[image_id] if o["name"] == cls]
        label = -1 if not flags else (0 if all(flags) else 1)
        lines.append(f"{image_id} {label:2d}")
    return "\n".join(lines) + "\n"


def generate_voc(out: str | Path, seed: int, *, config: ToyConfig | None = None,
                 n_trainval: int = 1000, n_test: int = 1000, jobs: int | None = None,
                 progress: bool = True, test_seed: int | None = None) -> Path:
    """Write a toy VOC2007 (JPEGImages, Annotations, ImageSets/Main) under ``out/VOC2007``.

    trainval is split in half into train and val. Objects that are small or mostly
    hidden are flagged ``difficult``. The test images are drawn from ``test_seed``
    (None: from ``seed``, like trainval), so a test split can be sealed: drawn from a seed
    no tuning ever saw, while trainval stays the same. The folder is built beside its
    destination and renamed into place when complete. Returns the VOC2007 path.

    A toy VOC has no audio: it is drawn and recorded with ``config``'s
    :meth:`~ToyConfig.picture_config`, so every preset gives the same VOC, marker included.
    """
    cfg = (config or ToyConfig()).picture_config()
    _check_seed(seed)
    test_seed = seed if test_seed is None else test_seed
    _check_seed(test_seed)
    if n_trainval < 2 or n_test < 1:
        raise BadInputError("toy VOC needs at least 2 trainval images and 1 test image")
    out = Path(out)
    final = out / "VOC2007"
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out}: is a file, not a folder to write VOC2007/ into")
    if final.exists() and not (final / VOC_MARKER).is_file():
        raise BadInputError(f"{final}: exists and was not written by the toy generator; "
                            "choose another --out")
    n_images = n_trainval + n_test
    check_room("--trainval + --test", n_images, voc_image_bytes(cfg), out,
               f"{n_images} toy VOC images")
    ensure_dir(out, "--out folder")
    jobs = _default_jobs(jobs)
    remove_stale_partials(out, final.name)    # what killed generations left behind
    tmp = Path(tempfile.mkdtemp(prefix=partial_prefix(final.name), suffix=".partial", dir=out))
    try:
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (tmp / sub).mkdir(parents=True)
        objects_of: dict[str, list[dict]] = {}
        split_ids: dict[str, list[str]] = {}
        for part, part_seed, stream, count, first in (
                ("trainval", seed, _TRAINVAL, n_trainval, 1),
                ("test", test_seed, _TEST, n_test, n_trainval + 1)):
            work = partial(_make_images, tmp, int(part_seed), stream, first, cfg)
            done = sorted(_run_chunks(work, count, jobs, f"toy VOC {part}", progress))
            split_ids[part] = [image_id for _, image_id, _ in done]
            objects_of.update({image_id: objs for _, image_id, objs in done})
        order = item_rng(seed, _SPLIT, 0).permutation(n_trainval)
        half = n_trainval // 2
        split_ids["train"] = sorted(split_ids["trainval"][i] for i in order[:half])
        split_ids["val"] = sorted(split_ids["trainval"][i] for i in order[half:])
        main = tmp / "ImageSets" / "Main"
        for split in SPLITS:
            (main / f"{split}.txt").write_text("\n".join(split_ids[split]) + "\n")
            for cls in CLASSES:
                (main / f"{cls}_{split}.txt").write_text(
                    _class_file_lines(split_ids[split], objects_of, cls))
        marker = {"generator": GENERATOR, "world_version": WORLD_VERSION, "kind": "voc",
                  "seed": int(seed), "test_seed": int(test_seed),
                  "n_trainval": n_trainval, "n_test": n_test, "config": cfg.to_dict()}
        (tmp / VOC_MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final

