"""PASCAL VOC 2007 classification data, read from the standard ``VOCdevkit/VOC2007`` layout.

The layout::

    VOC2007/
      JPEGImages/<id>.jpg
      Annotations/<id>.xml          (one <object> per instance: <name>, <difficult>, <bndbox>)
      ImageSets/Main/<split>.txt    (one image id per line; split in SPLITS)

Each image gets a multi-label target over the 20 classes with three states, as in the
official per-class lists: 1 the class is present (some non-difficult instance), -1 only
difficult instances (ignored in training and in AP), 0 absent. XML is parsed with
defusedxml; a missing or malformed file is reported by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from xml.etree.ElementTree import ParseError

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import parse as parse_xml

from harness.api.errors import BadInputError

#: the 20 VOC classes in the standard order (the order of every target vector)
CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
SPLITS: tuple[str, ...] = ("train", "val", "trainval", "test")

PRESENT, ABSENT, DIFFICULT = 1, 0, -1
_IMAGE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class VOCObject:
    """One annotated instance: class name, box (xmin, ymin, xmax, ymax; 1-based pixels)."""

    name: str
    bbox: tuple[int, int, int, int]
    difficult: bool


@dataclass(frozen=True)
class VOCImage:
    """One image of a split and its 20-class target (1 present, 0 absent, -1 difficult-only)."""

    image_id: str
    path: Path
    targets: np.ndarray
    objects: tuple[VOCObject, ...] = ()


def voc2007_dir(root: str | Path) -> Path:
    """The ``VOC2007`` folder: ``root`` itself, or ``root/VOC2007`` (root = VOCdevkit)."""
    root = Path(root)
    for candidate in (root / "VOC2007", root):
        if (candidate / "Annotations").is_dir() and (candidate / "JPEGImages").is_dir():
            return candidate
    raise BadInputError(f"{root}: not a VOC2007 folder (expected VOC2007/ or Annotations/ and "
                        "JPEGImages/ inside)")


def read_split_ids(voc: Path, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/Main/<split>.txt``, in file order."""
    if split not in SPLITS:
        raise BadInputError(f"unknown VOC split {split!r} (choose from {', '.join(SPLITS)})")
    path = voc / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise BadInputError(f"{path}: missing split file")
    ids = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        token = line.strip()
        if not token:
            continue
        if not _IMAGE_ID.match(token):
            raise BadInputError(f"{path}:{n}: malformed image id {token!r}")
        ids.append(token)
    if len(set(ids)) != len(ids):
        raise BadInputError(f"{path}: duplicate image ids")
    return ids


def parse_annotation(path: Path) -> tuple[VOCObject, ...]:
    """The objects of one annotation XML (safely parsed); BadInputError names a bad file."""
    if not path.is_file():
        raise BadInputError(f"{path}: missing annotation file")
    try:
        tree = parse_xml(str(path))
    except (ParseError, DefusedXmlException) as exc:
        raise BadInputError(f"{path}: malformed XML ({exc})") from None
    root = tree.getroot()
    if root.tag != "annotation":
        raise BadInputError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    return tuple(_parse_object(path, obj) for obj in root.iter("object"))


def _parse_object(path: Path, obj) -> VOCObject:
    name = (obj.findtext("name") or "").strip()
    if name not in CLASS_INDEX:
        raise BadInputError(f"{path}: unknown or missing object class {name!r}")
    difficult_text = (obj.findtext("difficult") or "0").strip()
    if difficult_text not in ("0", "1"):
        raise BadInputError(f"{path}: <difficult> must be 0 or 1, got {difficult_text!r}")
    box = obj.find("bndbox")
    try:
        bbox = tuple(int(float(box.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (AttributeError, TypeError, ValueError):
        raise BadInputError(f"{path}: object {name!r} has a missing or malformed <bndbox>") \
            from None
    return VOCObject(name=name, bbox=bbox, difficult=difficult_text == "1")  # type: ignore[arg-type]


def targets_of(objects: tuple[VOCObject, ...]) -> np.ndarray:
    """int8 [20]: 1 if a non-difficult instance exists, -1 if only difficult ones, else 0."""
    targets = np.zeros(len(CLASSES), dtype=np.int8)
    for obj in objects:
        i = CLASS_INDEX[obj.name]
        if not obj.difficult:
            targets[i] = PRESENT
        elif targets[i] == ABSENT:
            targets[i] = DIFFICULT
    return targets


def read_voc(root: str | Path, split: str) -> list[VOCImage]:
    """Every image of ``split`` with its targets; ``root`` is VOCdevkit or VOC2007."""
    voc = voc2007_dir(root)
    images = []
    for image_id in read_split_ids(voc, split):
        objects = parse_annotation(voc / "Annotations" / f"{image_id}.xml")
        path = voc / "JPEGImages" / f"{image_id}.jpg"
        if not path.is_file():
            raise BadInputError(f"{path}: missing image (listed in {split}.txt)")
        images.append(VOCImage(image_id=image_id, path=path, targets=targets_of(objects),
                               objects=objects))
    return images


def targets_matrix(images: list[VOCImage]) -> np.ndarray:
    """int8 [N, 20] stacked targets of ``images``."""
    if not images:
        return np.zeros((0, len(CLASSES)), dtype=np.int8)
    return np.stack([im.targets for im in images])
