"""The toy world's tunable parameters, as one typed object recorded with every dataset."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from harness.api.errors import BadInputError


@dataclass(frozen=True)
class ToyConfig:
    """Everything (besides the seed and the counts) that determines a toy dataset.

    The defaults are the ones the pipeline uses. They follow what a prototype of this world
    measured: sounding objects loud against the ambience, object sounds
    stationary over the window, every class with a sound, and a visually hard scene
    (clutter, colour jitter, small objects, shapes and colours shared across classes).
    How each is drawn is in :mod:`harness.data.toy.world` (scenes and objects),
    :mod:`harness.data.toy.sound` and :mod:`harness.data.toy.picture`.
    """

    #: side of the square frames, pixels (64 by default; 96-112 also work)
    image_size: int = 64
    #: audio sample rate of the written windows, Hz (the mfcc plugin's rate; the
    #: sound_texture plugin resamples to 20 kHz)
    sample_rate: int = 21000
    #: audio window length, seconds (the paper's 3.75 s)
    clip_seconds: float = 3.75
    #: probability of 0, 1, 2, 3 objects in a clip
    clip_object_counts: tuple[float, ...] = (0.08, 0.42, 0.32, 0.18)
    #: probability of 0, 1, 2, 3 objects in a toy VOC image (VOC images always have one)
    voc_object_counts: tuple[float, ...] = (0.0, 0.5, 0.3, 0.2)
    #: share of object draws taken from the scene's typical classes (the rest: any class)
    scene_affinity: float = 0.75
    #: object size range as a fraction of the frame side (drawn log-uniformly)
    object_scale: tuple[float, float] = (0.14, 0.5)
    #: objects stretched by up to this aspect ratio (and rotated freely)
    max_aspect: float = 1.35
    #: probability that a visible object of a sounding class is audible in a clip
    sound_prob: float = 0.9
    #: classes that never make a sound (empty: every class has its characteristic sound)
    silent_classes: tuple[str, ...] = ()
    #: level of each audible object relative to the ambience, dB (drawn uniformly)
    object_gain_db: tuple[float, float] = (12.0, 24.0)
    #: how much an object's nearness sets both its size and its loudness (0: independent,
    #: 1: the nearest objects are always the biggest and loudest), as in real scenes
    nearness_coupling: float = 0.7
    #: random overall level of a clip, dB (drawn uniformly; keeps loudness from being a cue)
    clip_gain_db: tuple[float, float] = (-6.0, 6.0)
    #: RMS of the ambience at 0 dB clip gain (full scale = 1)
    ambience_rms: float = 0.005
    #: white-noise floor relative to the ambience, dB
    noise_floor_db: float = -30.0
    #: relative jitter of every object sound's frequencies, per instance
    pitch_jitter: float = 0.03
    #: mean number of clutter items (specks and strokes) per picture (Poisson)
    clutter: float = 7.0
    #: per-channel colour jitter of objects and backgrounds (absolute, 0-1 scale)
    colour_jitter: float = 0.1
    #: global brightness / contrast jitter of a picture (relative)
    brightness_jitter: float = 0.2
    #: standard deviation of per-pixel Gaussian noise (0-1 scale)
    pixel_noise: float = 0.03
    #: a VOC object whose longer box side is below this fraction of the image is difficult
    difficult_size: float = 0.18
    #: a VOC object with less than this share of itself visible is difficult
    difficult_visible: float = 0.45
    #: an object with less than this share visible is not in the picture's ground truth
    min_visible: float = 0.12
    #: JPEG quality of toy VOC images
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        from harness.data.voc import CLASSES

        def bad(msg: str) -> BadInputError:
            return BadInputError(f"toy config: {msg}")

        if not 32 <= self.image_size <= 512:
            raise bad(f"image_size must be in 32..512, got {self.image_size}")
        if not 8000 <= self.sample_rate <= 48000:
            raise bad(f"sample_rate must be in 8000..48000, got {self.sample_rate}")
        if not 0.5 <= self.clip_seconds <= 30:
            raise bad(f"clip_seconds must be in 0.5..30, got {self.clip_seconds}")
        for name in ("clip_object_counts", "voc_object_counts"):
            p = getattr(self, name)
            if len(p) != 4 or min(p) < 0 or abs(sum(p) - 1) > 1e-6:
                raise bad(f"{name} must be 4 probabilities summing to 1, got {p}")
        if self.voc_object_counts[0] != 0:
            raise bad("voc_object_counts[0] must be 0 (every VOC image has an object)")
        lo, hi = self.object_scale
        if not 0.02 <= lo <= hi <= 1:
            raise bad(f"object_scale must satisfy 0.02 <= low <= high <= 1, got {self.object_scale}")
        for name in ("scene_affinity", "sound_prob", "difficult_visible", "min_visible",
                     "nearness_coupling"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(f"{name} must be in [0, 1], got {getattr(self, name)}")
        unknown = [c for c in self.silent_classes if c not in CLASSES]
        if unknown:
            raise bad(f"silent_classes names unknown classes {unknown}")
        if self.object_gain_db[0] > self.object_gain_db[1] or self.clip_gain_db[0] > self.clip_gain_db[1]:
            raise bad("gain ranges must be (low, high)")
        if not 0 < self.ambience_rms < 0.1:
            raise bad(f"ambience_rms must be in (0, 0.1), got {self.ambience_rms}")
        if self.max_aspect < 1 or self.clutter < 0 or self.pixel_noise < 0 or self.pitch_jitter < 0:
            raise bad("max_aspect >= 1, clutter, pixel_noise and pitch_jitter >= 0 are required")
        if not 1 <= self.jpeg_quality <= 100:
            raise bad(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")

    @property
    def num_samples(self) -> int:
        """Samples in one audio window."""
        return int(round(self.clip_seconds * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples become lists), recorded in dataset.json."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ToyConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise BadInputError(f"toy config: unknown parameter(s) {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def replace(self, **changes: Any) -> "ToyConfig":
        """A copy with some fields changed (validated)."""
        return ToyConfig.from_dict({**self.to_dict(), **changes})
