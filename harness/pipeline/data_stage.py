"""The data stage: the clip dataset and the downstream VOC folder a run reads, and what the
record says about them.

Without ``--clips`` / ``--voc`` a run generates the toy world's clips and its toy VOC07
(with the profile's sealed test split) once into the cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from harness.api.errors import BadInputError
from harness.profiles import Profile
from harness.runtime.cache import cache_root, hash_file, hash_params, stage_key
from harness.runtime.cache_lock import entry_lock


def toy_clips(profile: Profile, world_seed: int, progress: bool) -> Path:
    """The toy world's clip dataset (the profile's preset and knobs), generated once into
    the cache. The default world's config, and so its cache key, is the oracle's."""
    from harness.data.toy import WORLD_VERSION, generate_clips
    from harness.data.toy.config import world_config

    cfg = world_config(profile.toy_world)
    out = cache_root() / "toy" / stage_key("toy-clips", WORLD_VERSION, profile.toy_clips,
                                           world_seed, cfg.to_dict())
    with entry_lock(out):
        if not (out / "manifest.csv").is_file():
            shutil.rmtree(out, ignore_errors=True)   # the cache's own leftovers (older code)
            generate_clips(out, profile.toy_clips, world_seed, config=cfg, progress=progress)
    return out


def toy_voc(world_seed: int, images: tuple[int, int], progress: bool,
            test_seed: int | None = None) -> Path:
    """The toy VOC07 (another seed of the same world), generated once into the cache.

    trainval comes from :func:`toy_voc_seed`; the test split from ``test_seed`` (None: the
    trainval seed). :func:`profile_toy_voc` is the one a run uses.
    """
    from harness.data.toy import WORLD_VERSION, ToyConfig, generate_voc

    cfg = ToyConfig()
    voc_seed = toy_voc_seed(world_seed)
    sealed = [] if test_seed is None else [test_seed]
    out = cache_root() / "toy" / stage_key("toy-voc", WORLD_VERSION, voc_seed, list(images),
                                           cfg.to_dict(), *sealed)
    with entry_lock(out):
        if not (out / "VOC2007").is_dir():
            generate_voc(out, voc_seed, config=cfg, n_trainval=images[0], n_test=images[1],
                         progress=progress, test_seed=test_seed)
    return out


def toy_voc_seed(world_seed: int) -> int:
    """The seed of world ``world_seed``'s toy VOC trainval (not the clips' seed)."""
    return world_seed + 1_000_003


def toy_test_seed(profile: Profile, world_seed: int) -> int | None:
    """The sealed test split's seed of world ``world_seed``: the profile's plus the world's,
    so every world has its own test images (None if the profile seals none)."""
    return None if profile.toy_test_seed is None else profile.toy_test_seed + world_seed


def profile_toy_voc(profile: Profile, world_seed: int, progress: bool) -> Path:
    """The toy VOC of ``profile`` for world ``world_seed``, with its sealed test split."""
    return toy_voc(world_seed, profile.toy_voc_images, progress,
                   test_seed=toy_test_seed(profile, world_seed))


def downstream_identity(kind: str, root: Path, fingerprint: str,
                        world_seed: int | None) -> dict[str, Any]:
    """The record's ``downstream`` section: the folder's kind, fingerprint and path, and
    for a toy VOC what drew it (from the generator's marker file): world and test seeds,
    world version, split sizes and a digest of the world's configuration; for a real
    folder its split sizes (``n_trainval``, ``n_test``)."""

    from harness.data.toy.generate import VOC_MARKER
    from harness.data.voc import voc2007_dir

    out: dict[str, Any] = {"kind": kind, "fingerprint": fingerprint, "path": str(root)}
    marker = voc2007_dir(root) / VOC_MARKER
    if not marker.is_file():
        # a real folder: its split sizes, by which the leaderboard tells VOC2007 from others
        from harness.data.voc import read_split_ids

        main = voc2007_dir(root) / "ImageSets" / "Main"
        out.update({f"n_{split}": len(read_split_ids(voc2007_dir(root), split))
                    for split in ("trainval", "test") if (main / f"{split}.txt").is_file()})
        return out
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{marker}: unreadable toy VOC marker ({exc})") from None
    out.update({"world_seed": world_seed, "voc_seed": meta.get("seed"),
                "test_seed": meta.get("test_seed", meta.get("seed")),
                "world_version": meta.get("world_version"),
                "n_trainval": meta.get("n_trainval"), "n_test": meta.get("n_test"),
                "toy_config": hash_params(meta.get("config"))})
    return out


def voc_fingerprint(root: Path) -> str:
    """Content key of a VOC folder: its split lists and annotations (images are named there)."""
    from harness.data.voc import voc2007_dir

    voc = voc2007_dir(root)
    files = sorted((voc / "ImageSets" / "Main").glob("*.txt")) + sorted((voc / "Annotations").glob("*.xml"))
    return hash_params([[f.relative_to(voc).as_posix(), hash_file(f)] for f in files])


def voc_cache_key(root: Path) -> str:
    """What the evaluation cache is keyed on: :func:`voc_fingerprint` plus the size and
    modification time of every image (their sha256 with ``HARNESS_VERIFY_CACHE=1``, see
    :func:`harness.runtime.cache.file_stamp`), so a JPEG replaced in place is evaluated anew."""
    from harness.runtime.cache import file_stamp
    from harness.data.voc import voc2007_dir

    images = sorted((voc2007_dir(root) / "JPEGImages").glob("*"))
    stats = [[p.name, *file_stamp(p)] for p in images]
    return hash_params([voc_fingerprint(root), stats])
