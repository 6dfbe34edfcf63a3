"""What exists in the toy world: scenes, object classes, how they look and sound, and
which objects a scene holds.

Each class is a conjunction of a shape and a colour: every shape is worn by four classes
and every colour by five, so neither alone identifies a class. Every class has a
characteristic sound (a harmonic tone, a periodic chirp, a click train or a band of
noise), all stationary at the scale of an MFCC frame, so the sound of a clip says which
objects are in it without a random modulation phase scrambling the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.data.toy.config import ToyConfig
from harness.data.voc import CLASSES

SHAPES = ("disc", "square", "triangle", "cross", "ring")
COLOURS = {
    "red": (0.85, 0.16, 0.14),
    "blue": (0.16, 0.32, 0.88),
    "yellow": (0.95, 0.82, 0.18),
    "white": (0.94, 0.94, 0.92),
}

#: class -> (shape, colour); each shape 4 classes, each colour 5 classes
LOOKS: dict[str, tuple[str, str]] = {
    "person": ("disc", "red"), "boat": ("disc", "blue"), "bird": ("disc", "yellow"),
    "sheep": ("disc", "white"),
    "bus": ("square", "red"), "tvmonitor": ("square", "blue"), "chair": ("square", "yellow"),
    "sofa": ("square", "white"),
    "horse": ("triangle", "red"), "bottle": ("triangle", "blue"),
    "pottedplant": ("triangle", "yellow"), "aeroplane": ("triangle", "white"),
    "motorbike": ("cross", "red"), "bicycle": ("cross", "blue"), "cat": ("cross", "yellow"),
    "diningtable": ("cross", "white"),
    "train": ("ring", "red"), "car": ("ring", "blue"), "dog": ("ring", "yellow"),
    "cow": ("ring", "white"),
}


@dataclass(frozen=True)
class Sound:
    """A class's characteristic sound.

    kind ``harmonic``: partials of ``f0`` with a spectral tilt of ``tilt`` dB per octave,
    odd partials only if ``odd``, shaped by resonances ``formants`` ((centre, width) Hz);
    kind ``chirp``: sweeps from ``f0`` to ``f1`` (and ``harmonics`` - 1 overtones, at 1/k
    amplitude) repeated ``rate`` times a second;
    kind ``clicks``: damped resonances at ``f0`` (width ``width``) ``rate`` times a second;
    kind ``noise``: noise in a band centred on ``f0``, ``width`` octaves wide.
    """

    kind: str
    f0: float
    f1: float = 0.0
    rate: float = 0.0
    width: float = 0.0
    tilt: float = -6.0
    odd: bool = False
    harmonics: int = 1
    formants: tuple[tuple[float, float], ...] = ()


SOUNDS: dict[str, Sound] = {
    "aeroplane": Sound("noise", 500, width=1.5),
    "bicycle": Sound("harmonic", 880, tilt=-4, formants=((2600, 800),)),
    "bird": Sound("chirp", 2500, f1=4500, rate=16, harmonics=3),
    "boat": Sound("harmonic", 55, tilt=-3, formants=((350, 200), (1500, 600))),
    "bottle": Sound("harmonic", 440, tilt=-6, odd=True),
    "bus": Sound("harmonic", 90, tilt=-3, formants=((800, 300), (2500, 800))),
    "car": Sound("noise", 2000, width=1.0),
    "cat": Sound("chirp", 1000, f1=600, rate=14, harmonics=5),
    "chair": Sound("clicks", 2500, rate=26, width=500),
    "cow": Sound("harmonic", 130, tilt=-4, formants=((500, 200),)),
    "diningtable": Sound("clicks", 5500, rate=20, width=1000),
    "dog": Sound("harmonic", 300, tilt=-3, odd=True, formants=((1000, 500),)),
    "horse": Sound("clicks", 700, rate=32, width=200),
    "motorbike": Sound("harmonic", 160, tilt=-2, formants=((2000, 800), (4000, 1500))),
    "person": Sound("harmonic", 210, tilt=-3, formants=((700, 150), (1200, 200), (2600, 300))),
    "pottedplant": Sound("noise", 7500, width=1.0),
    "sheep": Sound("chirp", 350, f1=480, rate=20, harmonics=6),
    "sofa": Sound("noise", 200, width=1.0),
    "train": Sound("clicks", 300, rate=18, width=100),
    "tvmonitor": Sound("noise", 4200, width=0.7),
}


@dataclass(frozen=True)
class Scene:
    """A place: two background colours and a pattern; an ambience; its typical objects.

    The ambience is noise in a band centred on ``ambience_hz`` (``ambience_width``
    octaves) whose amplitude is modulated at ``am_rate`` Hz with depth ``am_depth``.
    """

    name: str
    colours: tuple[tuple[float, float, float], tuple[float, float, float]]
    pattern: str
    ambience_hz: float
    ambience_width: float
    am_rate: float
    am_depth: float
    typical: tuple[str, ...]


SCENES: tuple[Scene, ...] = (
    Scene("water", ((0.12, 0.30, 0.60), (0.30, 0.55, 0.80)), "ripples", 400, 2.0, 0.35, 0.5,
          ("boat", "bird", "person")),
    Scene("grass", ((0.20, 0.50, 0.15), (0.45, 0.70, 0.25)), "streaks", 3000, 1.5, 1.2, 0.3,
          ("cow", "sheep", "horse", "dog", "person")),
    Scene("road", ((0.33, 0.33, 0.36), (0.58, 0.58, 0.58)), "road", 180, 2.0, 0.5, 0.4,
          ("car", "bus", "motorbike", "bicycle", "person")),
    Scene("sky", ((0.45, 0.65, 0.95), (0.92, 0.94, 0.97)), "clouds", 1200, 3.0, 0.2, 0.6,
          ("aeroplane", "bird")),
    Scene("indoor", ((0.75, 0.68, 0.55), (0.45, 0.30, 0.20)), "indoor", 120, 1.0, 0.0, 0.0,
          ("chair", "sofa", "diningtable", "tvmonitor", "pottedplant", "bottle", "cat")),
    Scene("beach", ((0.90, 0.80, 0.55), (0.25, 0.50, 0.75)), "beach", 800, 3.0, 0.12, 0.8,
          ("person", "dog", "boat", "bottle", "bird")),
    Scene("forest", ((0.10, 0.30, 0.10), (0.35, 0.25, 0.12)), "trunks", 4500, 1.5, 2.5, 0.3,
          ("bird", "horse", "dog", "bicycle", "person")),
    Scene("crowd", ((0.50, 0.45, 0.45), (0.30, 0.30, 0.35)), "crowd", 500, 1.5, 4.0, 0.6,
          ("person", "train", "bicycle", "dog", "bottle")),
)
SCENE_NAMES = tuple(s.name for s in SCENES)


@dataclass(frozen=True)
class ObjectDraw:
    """One object of a composition: its class index, whether it is heard, how loud (dB),
    and how near it is (0-1; nearer objects are drawn bigger and sound louder)."""

    cls: int
    audible: bool
    gain_db: float
    nearness: float = 0.5


@dataclass(frozen=True)
class Composition:
    """What one clip or image contains: a scene and 0-3 objects (in drawing order, far
    to near)."""

    scene: int
    objects: tuple[ObjectDraw, ...]


def sample_composition(rng: np.random.Generator, config: ToyConfig,
                       counts: tuple[float, ...]) -> Composition:
    """Draw a scene uniformly, then objects with scene-dependent co-occurrence."""
    scene = int(rng.integers(len(SCENES)))
    n = int(rng.choice(len(counts), p=np.asarray(counts) / sum(counts)))
    typical = [CLASSES.index(c) for c in SCENES[scene].typical]
    objects = []
    for _ in range(n):
        if rng.random() < config.scene_affinity:
            cls = typical[int(rng.integers(len(typical)))]
        else:
            cls = int(rng.integers(len(CLASSES)))
        # the audibility draw is taken for silent classes too, so which classes are silent
        # never shifts the draws after it: the pictures are the same under every preset
        heard = rng.random() < config.sound_prob
        audible = heard and CLASSES[cls] not in config.silent_classes
        nearness = float(rng.random())
        c = config.nearness_coupling
        lo, hi = config.object_gain_db
        gain = lo + (hi - lo) * (c * nearness + (1 - c) * rng.random())
        objects.append(ObjectDraw(cls=cls, audible=bool(audible), gain_db=float(gain),
                                  nearness=nearness))
    objects.sort(key=lambda o: o.nearness)  # drawn far to near: near objects occlude
    return Composition(scene=scene, objects=tuple(objects))
