"""The toy world's tunable parameters, as one typed object recorded with every dataset,
and its named presets (:data:`PRESETS`): ``oracle``, the world every record before the
presets was made in, and ``realistic``, whose audio follows what public labels of real
video measure (docs/toy-worlds.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from harness.api.errors import BadInputError

#: VOC classes with no sound class in AudioSet's ontology of 527 classes
AUDIOSET_SILENT = ("bottle", "chair", "diningtable", "pottedplant", "sofa")


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
    #: (realistic: 0.8, after LLP/AVVP, where 82% of visible event-seconds are audible)
    sound_prob: float = 0.9
    #: classes that never make a sound (empty: every class has its characteristic sound;
    #: realistic: :data:`AUDIOSET_SILENT`, the VOC classes AudioSet's ontology has no sound for)
    silent_classes: tuple[str, ...] = ()
    #: level of each audible source relative to the ambience, dB (drawn uniformly; realistic:
    #: 0-24 dB, DESED's event-to-background range)
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
    # The soundtrack knobs below came after the first records. At their defaults (the oracle
    # world) they draw nothing and stay out of :meth:`to_dict`, so the oracle's datasets,
    # identities and cache keys are what they were before the knobs existed.
    #: probability that a clip also holds one audible source that is not in the frame
    #: (realistic: 0.35, after LLP/AVVP, where 35% of audible event-seconds have no
    #: visible source; VGGSounder: 38% of labels are heard but not seen)
    offscreen_prob: float = 0.0
    #: probability of a narration (voice-over) bed under the clip (realistic: 0.2,
    #: VGGSounder: 19.8% of clips)
    narration_prob: float = 0.0
    #: probability of a music bed under the clip (realistic: 0.2, VGGSounder: 20.3% of
    #: clips; AudioSet's ontology counts "Music" on 48.5% of all clips)
    music_prob: float = 0.0
    #: probability that a clip's audio belongs to another composition than its frame
    #: (realistic: 0.1, VGGSounder: 10.8% of clips show a static image unrelated to the sound)
    unrelated_prob: float = 0.0
    #: mean share of the window a source sounds for (1: stationary over the whole window;
    #: below 1 each source starts and stops within the window; realistic: 0.55, after
    #: LLP/AVVP, where an event lasts 5.5 s of a 10 s clip on average)
    event_share: float = 1.0

    def __post_init__(self) -> None:
        from harness.data.voc import CLASSES

        def bad(msg: str) -> BadInputError:
            return BadInputError(f"toy config: {msg}")

        # the preset knobs in one canonical type, so that 0 and 0.0 are one identity
        for name, convert in (*((k, float) for k in ("sound_prob", *SOUNDTRACK_KNOBS)),
                              ("object_gain_db", lambda v: tuple(float(x) for x in v)),
                              ("silent_classes", tuple)):
            try:
                object.__setattr__(self, name, convert(getattr(self, name)))
            except (TypeError, ValueError):
                raise bad(f"{name} has the wrong type: {getattr(self, name)!r}") from None

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
        if len(self.object_gain_db) != 2 or not -40 <= self.object_gain_db[0] <= 40 \
                or not -40 <= self.object_gain_db[1] <= 40:
            raise bad(f"object_gain_db must be (low, high) within -40..40 dB, got {self.object_gain_db}")
        if self.object_gain_db[0] > self.object_gain_db[1] or self.clip_gain_db[0] > self.clip_gain_db[1]:
            raise bad("gain ranges must be (low, high)")
        for name in SOUNDTRACK_KNOBS:
            if name != "event_share" and not 0 <= getattr(self, name) <= 1:
                raise bad(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.05 <= self.event_share <= 1:
            raise bad(f"event_share must be in [0.05, 1], got {self.event_share}")
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
        """JSON-able form (tuples become lists), recorded in dataset.json and hashed into
        identities and cache keys. A soundtrack knob at its default is left out, so an
        oracle world's form is the one it had before those knobs existed."""
        defaults = ToyConfig.__dataclass_fields__
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                if k not in SOUNDTRACK_KNOBS or v != defaults[k].default}

    @property
    def has_soundtrack(self) -> bool:
        """Whether any soundtrack knob is on: off-screen sources, beds, unrelated audio or
        events shorter than the window (else a clip's audio is the oracle's mix)."""
        return any(getattr(self, k) != ToyConfig.__dataclass_fields__[k].default
                   for k in SOUNDTRACK_KNOBS)

    @classmethod
    def preset(cls, name: str, **changes: Any) -> "ToyConfig":
        """The config of preset ``name`` (:data:`PRESETS`), with some fields changed."""
        if name not in PRESETS:
            raise BadInputError(f"toy config: unknown preset {name!r} (known: {', '.join(PRESETS)})")
        return ToyConfig().replace(**{**PRESETS[name], **changes})

    @property
    def preset_label(self) -> str:
        """The preset whose audio knobs (:data:`PRESET_KNOBS`) this config has, by name;
        when it matches none, the nearest with the knobs that differ (``realistic with
        music_prob=0.0``). Derived from the knobs, so it cannot disagree with them."""
        def same(k: str, ref: "ToyConfig") -> bool:
            a, b = getattr(self, k), getattr(ref, k)
            return set(a) == set(b) if k == "silent_classes" else a == b

        best: tuple[int, str, list[str]] | None = None
        for name in PRESETS:
            diff = [k for k in PRESET_KNOBS if not same(k, ToyConfig.preset(name))]
            if best is None or len(diff) < best[0]:
                best = (len(diff), name, diff)
        assert best is not None
        _, name, diff = best
        if not diff:
            return name
        changed = ", ".join(f"{k}={_knob_text(getattr(self, k))}" for k in diff)
        return f"{name} with {changed}"

    def picture_config(self) -> "ToyConfig":
        """This config with every audio-only field at its default: what a toy VOC (which
        has no audio) is drawn and recorded with, so the same pictures have the same
        identity under every preset."""
        base = ToyConfig.__dataclass_fields__
        return ToyConfig.from_dict({**self.to_dict(), **{
            k: list(base[k].default) if isinstance(base[k].default, tuple) else base[k].default
            for k in AUDIO_FIELDS}})

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


#: the knobs added with the presets (see the comment above them in :class:`ToyConfig`)
SOUNDTRACK_KNOBS = ("offscreen_prob", "narration_prob", "music_prob", "unrelated_prob",
                    "event_share")
#: the knobs a preset sets, in the order the issue's table names them
PRESET_KNOBS = ("sound_prob", "silent_classes", "object_gain_db", *SOUNDTRACK_KNOBS)
#: fields that change only the audio: the pictures (and every draw they use) ignore them
AUDIO_FIELDS = ("sample_rate", "clip_seconds", "sound_prob", "silent_classes",
                "object_gain_db", "clip_gain_db", "ambience_rms", "noise_floor_db",
                "pitch_jitter", *SOUNDTRACK_KNOBS)

#: named worlds: the fields each sets (the rest at :class:`ToyConfig`'s defaults). The
#: pictures are the same in all of them; only the audio differs.
PRESETS: dict[str, dict[str, Any]] = {
    # sound names the objects: every class audible (p 0.9), 12-24 dB over the ambience,
    # stationary over the window, nothing else in the audio -- the defaults
    "oracle": {},
    # the audio of real video, each value from public labels (see the fields' comments and
    # docs/toy-worlds.md): LLP/AVVP, VGGSounder, AudioSet's ontology, DESED
    "realistic": {"sound_prob": 0.8, "silent_classes": AUDIOSET_SILENT,
                  "object_gain_db": (0.0, 24.0), "offscreen_prob": 0.35,
                  "narration_prob": 0.2, "music_prob": 0.2, "unrelated_prob": 0.1,
                  "event_share": 0.55},
}
DEFAULT_PRESET = "oracle"


def _knob_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def parse_knob(name: str, text: str) -> Any:
    """The value of knob ``name`` (a :data:`PRESET_KNOBS` field) written as on a command
    line: a number; ``LOW,HIGH`` for a dB range; comma-separated classes (or ``none``) for
    the silent classes. Bad text is a BadInputError naming the knob."""
    if name not in PRESET_KNOBS:
        raise BadInputError(f"toy config: unknown knob {name!r} (known: {', '.join(PRESET_KNOBS)})")
    text = str(text).strip()
    if name == "silent_classes":
        return () if text.lower() in ("", "none") else tuple(c.strip() for c in text.split(","))
    try:
        if name == "object_gain_db":
            low, high = (float(v) for v in text.split(","))
            return (low, high)
        return float(text)
    except ValueError:
        form = "LOW,HIGH in dB" if name == "object_gain_db" else "a number"
        raise BadInputError(f"toy config: {name} must be {form}, got {text!r}") from None


def config_from_knobs(preset: str, knobs: dict[str, Any], *, option=None,
                      **fields: Any) -> ToyConfig:
    """Preset ``preset`` with the given knobs (:data:`PRESET_KNOBS`; None: the preset's
    value; text is read by :func:`parse_knob`) and other ``fields`` changed. A bad knob
    is a BadInputError that names it as ``option(name)`` (default ``--name-with-dashes``,
    the ``harness data toy`` option)."""
    option = option or (lambda name: "--" + name.replace("_", "-"))
    base = ToyConfig.preset(preset, **fields)
    changes: dict[str, Any] = {}
    for name, value in knobs.items():
        if value is None:
            continue
        try:
            value = parse_knob(name, value) if isinstance(value, str) else value
            base.replace(**{name: value})  # checks this knob alone, to name it
        except BadInputError as exc:
            raise BadInputError(f"{option(name)}: {exc}") from None
        changes[name] = value
    return base.replace(**changes)


def world_config(world: dict[str, Any] | None, *, option=None, **fields: Any) -> ToyConfig:
    """The config of a run's toy world, given as ``{"preset": NAME, KNOB: VALUE, ...}``
    (empty or None: the default preset), with other ``fields`` changed."""
    world = dict(world or {})
    preset = world.pop("preset", DEFAULT_PRESET)
    unknown = sorted(set(world) - set(PRESET_KNOBS))
    if unknown:
        where = option(unknown[0]) if option else "toy world"
        raise BadInputError(f"{where}: unknown knob {unknown[0]!r} "
                            f"(known: preset, {', '.join(PRESET_KNOBS)})")
    return config_from_knobs(str(preset), world, option=option, **fields)


def world_overrides(world: dict[str, Any] | None, *, option=None) -> dict[str, Any]:
    """The canonical form of a toy world given as for :func:`world_config`: the preset
    unless it is the default, and each knob whose value differs from the preset's, in
    JSON form. Empty for the default world, so a run on it records no override."""
    cfg = world_config(world, option=option)
    preset = str((world or {}).get("preset", DEFAULT_PRESET))
    base = ToyConfig.preset(preset).to_dict()
    full = {k: v for k, v in cfg.to_dict().items() if k in PRESET_KNOBS}
    out: dict[str, Any] = {} if preset == DEFAULT_PRESET else {"preset": preset}
    out.update({k: v for k, v in full.items() if base.get(k, _default_json(k)) != v})
    out.update({k: _default_json(k) for k in PRESET_KNOBS if k not in full and k in base})
    return out


def _default_json(name: str) -> Any:
    value = ToyConfig.__dataclass_fields__[name].default
    return list(value) if isinstance(value, tuple) else value
