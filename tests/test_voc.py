"""The PASCAL VOC 2007 reader on a tiny real-layout fixture, and every bad-input case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from harness.api.errors import BadInputError
from harness.data.voc import CLASSES, SPLITS, read_voc, targets_matrix
from harness.data.voc_dataset import VOCClassification


def _xml(objects):
    parts = ["<annotation><folder>VOC2007</folder><filename>x.jpg</filename>"]
    for name, difficult in objects:
        parts.append(f"<object><name>{name}</name><difficult>{difficult}</difficult>"
                     "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10.0</xmax><ymax>12</ymax>"
                     "</bndbox></object>")
    return "".join(parts) + "</annotation>"


IMAGES = {
    "000001": [("dog", 0), ("person", 0)],
    "000002": [("cat", 1)],                      # difficult only
    "000003": [("cat", 1), ("cat", 0), ("bus", 1)],  # cat present, bus difficult only
    "000004": [],
}


def make_voc(root, images=IMAGES, splits=None):
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for image_id, objects in images.items():
        Image.new("RGB", (16, 12), (1, 2, 3)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        (voc / "Annotations" / f"{image_id}.xml").write_text(_xml(objects))
    ids = list(images)
    splits = splits or {"train": ids[:2], "val": ids[2:], "trainval": ids, "test": ids[1:3]}
    for split, members in splits.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(members) + "\n")
    return voc


def test_classes_and_splits():
    assert len(CLASSES) == 20 and CLASSES[0] == "aeroplane" and CLASSES[-1] == "tvmonitor"
    assert CLASSES.index("person") == 14 and list(CLASSES) == sorted(CLASSES)
    assert SPLITS == ("train", "val", "trainval", "test")


def test_three_state_targets(tmp_path):
    make_voc(tmp_path)
    images = read_voc(tmp_path / "VOCdevkit", "trainval")
    assert [im.image_id for im in images] == list(IMAGES)
    t = targets_matrix(images)
    assert t.dtype == np.int8 and t.shape == (4, 20)
    c = CLASSES.index
    assert t[0, c("dog")] == 1 and t[0, c("person")] == 1 and t[0].sum() == 2
    assert t[1, c("cat")] == -1 and (t[1] != 0).sum() == 1
    assert t[2, c("cat")] == 1 and t[2, c("bus")] == -1
    assert not t[3].any()
    assert images[0].path.name == "000001.jpg" and images[0].objects[0].bbox == (1, 2, 10, 12)
    assert images[1].objects[0].difficult


def test_root_may_be_devkit_or_voc2007_and_splits_differ(tmp_path):
    voc = make_voc(tmp_path)
    a = read_voc(tmp_path / "VOCdevkit", "train")
    b = read_voc(voc, "train")
    assert [i.image_id for i in a] == [i.image_id for i in b] == ["000001", "000002"]
    assert [i.image_id for i in read_voc(voc, "test")] == ["000002", "000003"]


def test_torch_dataset_with_transform(tmp_path):
    voc = make_voc(tmp_path)
    ds = VOCClassification(voc, "val", transform=lambda im: torch.zeros(3, im.height, im.width))
    image, target = ds[0]
    assert image.shape == (3, 12, 16)
    assert target.dtype == torch.int8 and target[CLASSES.index("cat")] == 1
    assert ds.targets().shape == (2, 20)
    plain = VOCClassification(voc, "val")
    assert plain[1][0].mode == "RGB" and len(plain) == 2


def test_malformed_xml_names_the_file(tmp_path):
    voc = make_voc(tmp_path)
    (voc / "Annotations" / "000002.xml").write_text("<annotation><object><name>cat</name>")
    with pytest.raises(BadInputError, match=r"000002\.xml: malformed XML"):
        read_voc(voc, "trainval")


def test_xml_entity_expansion_is_refused(tmp_path):
    voc = make_voc(tmp_path)
    bomb = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">'
            '<!ENTITY y "&x;&x;&x;&x;">]><annotation><object><name>&y;</name></object>'
            '</annotation>')
    (voc / "Annotations" / "000001.xml").write_text(bomb)
    with pytest.raises(BadInputError, match=r"000001\.xml: malformed XML"):
        read_voc(voc, "train")


@pytest.mark.parametrize("objects, message", [
    ([("unicorn", 0)], "unknown or missing object class 'unicorn'"),
    ([("dog", 2)], "<difficult> must be 0 or 1"),
])
def test_bad_objects(tmp_path, objects, message):
    voc = make_voc(tmp_path)
    (voc / "Annotations" / "000001.xml").write_text(_xml(objects))
    with pytest.raises(BadInputError, match=message):
        read_voc(voc, "train")


def test_bad_box_and_root(tmp_path):
    voc = make_voc(tmp_path)
    (voc / "Annotations" / "000001.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>a</xmin></bndbox></object></annotation>")
    with pytest.raises(BadInputError, match="000001.xml: object 'dog' has a missing or malformed"):
        read_voc(voc, "train")
    (voc / "Annotations" / "000001.xml").write_text("<html></html>")
    with pytest.raises(BadInputError, match="expected <annotation>"):
        read_voc(voc, "train")


def test_missing_files_are_named(tmp_path):
    voc = make_voc(tmp_path)
    (voc / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(BadInputError, match=r"000002\.jpg: missing image"):
        read_voc(voc, "train")
    (voc / "Annotations" / "000003.xml").unlink()
    with pytest.raises(BadInputError, match=r"000003\.xml: missing annotation"):
        read_voc(voc, "val")
    (voc / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(BadInputError, match=r"test\.txt: missing split file"):
        read_voc(voc, "test")
    with pytest.raises(BadInputError, match="unknown VOC split 'training'"):
        read_voc(voc, "training")
    with pytest.raises(BadInputError, match="not a VOC2007 folder"):
        read_voc(tmp_path / "elsewhere", "train")


def test_unreadable_image_is_named(tmp_path):
    voc = make_voc(tmp_path)
    (voc / "JPEGImages" / "000001.jpg").write_bytes(b"garbage")
    with pytest.raises(BadInputError, match=r"000001\.jpg: cannot read image"):
        VOCClassification(voc, "train")[0]


@pytest.mark.parametrize("line", ["../../etc/passwd", "a b"])
def test_bad_ids_in_split_file(tmp_path, line):
    voc = make_voc(tmp_path)
    (voc / "ImageSets" / "Main" / "train.txt").write_text(f"000001\n{line}\n")
    with pytest.raises(BadInputError, match=r"train\.txt:2: malformed image id"):
        read_voc(voc, "train")
