"""A clip's whole audio and the ground truth of what is in it.

In the oracle world a clip's audio is its scene's ambience plus its audible objects,
stationary over the window (:func:`harness.data.toy.sound.synthesize`). The soundtrack
knobs of :class:`~harness.data.toy.config.ToyConfig` add what real video has besides:
a source that is not in the frame, a music or narration bed, audio that belongs to another
scene than the picture, and events that start and stop within the window. :func:`soundtrack`
makes the audio and returns a :class:`Soundtrack` saying what went into it, which the
generator writes into the manifest so the statistics of a world can be measured.

Every decision (unrelated audio, off-screen source, beds) is drawn first, and each part
of the audio then draws from its own stream, so turning one knob off leaves the rest of
a clip's audio as it was: single-knob comparisons are paired clip by clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.data.toy.beds import music_bed, narration_bed
from harness.data.toy.config import ToyConfig
from harness.data.toy.sound import ambience, object_sound, synthesize
from harness.data.toy.world import SCENE_NAMES, SCENES, Composition, sample_composition
from harness.data.voc import CLASSES

#: length of the raised-cosine fade at each end of an event shorter than the window, s
FADE_SECONDS = 0.02
#: the extra manifest columns of a world with soundtrack knobs on (see :meth:`Soundtrack.columns`)
SOUNDTRACK_COLUMNS = ("unrelated", "heard_scene", "offscreen", "beds", "muted", "events")


@dataclass(frozen=True)
class Event:
    """One sound in a clip's audio: ``kind`` ``object`` (a drawn object of the heard
    composition), ``offscreen`` (a source not in the frame), ``music`` or ``narration``
    (a bed); ``name`` its class (a bed: its kind); when it sounds (s) and how loud it is
    while sounding, dB over the ambience."""

    kind: str
    name: str
    onset: float
    offset: float
    gain_db: float

    def text(self) -> str:
        return f"{self.kind}:{self.name}@{self.onset:.3f}-{self.offset:.3f}@{self.gain_db:+.2f}"


@dataclass(frozen=True)
class Soundtrack:
    """What a clip's audio holds: the scene it was heard in, whether that composition is
    another than the frame's, every sound, and the drawn objects that made none."""

    heard_scene: int
    unrelated: bool
    events: tuple[Event, ...]
    muted: tuple[str, ...]

    @property
    def sources(self) -> tuple[Event, ...]:
        """The events of objects and off-screen sources (not beds)."""
        return tuple(e for e in self.events if e.kind in ("object", "offscreen"))

    def columns(self) -> dict[str, str]:
        """The manifest's :data:`SOUNDTRACK_COLUMNS` for this clip (lists ``;``-joined)."""
        return {"unrelated": str(int(self.unrelated)),
                "heard_scene": SCENE_NAMES[self.heard_scene],
                "offscreen": ";".join(e.name for e in self.events if e.kind == "offscreen"),
                "beds": ";".join(e.kind for e in self.events if e.kind in ("music", "narration")),
                "muted": ";".join(self.muted),
                "events": ";".join(e.text() for e in self.events)}


def parse_events(text: str) -> list[Event]:
    """Inverse of the ``events`` column: the :class:`Event` list of one clip."""
    events = []
    for item in filter(None, text.split(";")):
        head, span, gain = item.split("@")
        kind, name = head.split(":")
        onset, offset = span.split("-")
        events.append(Event(kind, name, float(onset), float(offset), float(gain)))
    return events


def _envelope(n: int, rate: int, onset: float, offset: float) -> np.ndarray:
    """1 from ``onset`` to ``offset`` (s), 0 elsewhere, with raised-cosine fades inside."""
    env = np.zeros(n, dtype=np.float32)
    a, b = int(round(onset * rate)), min(n, int(round(offset * rate)))
    env[a:b] = 1.0
    fade = min(int(FADE_SECONDS * rate), (b - a) // 2)
    if fade > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)).astype(np.float32)
        env[a:a + fade] = ramp
        env[b - fade:b] = ramp[::-1]
    return env


def _span(rng: np.random.Generator, cfg: ToyConfig) -> tuple[float, float]:
    """When one source sounds (s): the whole window when ``event_share`` is 1; else a
    duration drawn uniformly around ``event_share`` of the window (80% of the way to 0 or
    1 on either side, so it averages ``event_share`` and stays inside), placed uniformly."""
    window = cfg.num_samples / cfg.sample_rate
    m = cfg.event_share
    if m >= 1:
        return 0.0, window
    spread = 0.8 * min(m, 1 - m)
    share = rng.uniform(m - spread, m + spread)
    onset = rng.uniform(0, 1 - share) * window
    return float(onset), float(onset + share * window)


def _offscreen_class(rng: np.random.Generator, cfg: ToyConfig, scene: int,
                     absent: set[int]) -> int:
    """A sounding class not in ``absent``: with probability ``scene_affinity`` one of the
    scene's typical classes (as objects are drawn), else any."""
    sounding = [c for c in range(len(CLASSES))
                if CLASSES[c] not in cfg.silent_classes and c not in absent]
    typical = [c for c in sounding if CLASSES[c] in SCENES[scene].typical]
    pool = typical if typical and rng.random() < cfg.scene_affinity else sounding
    return pool[int(rng.integers(len(pool)))]


def oracle_truth(comp: Composition, cfg: ToyConfig) -> Soundtrack:
    """The :class:`Soundtrack` of the oracle mix: every audible object over the window."""
    window = cfg.num_samples / cfg.sample_rate
    events = tuple(Event("object", CLASSES[o.cls], 0.0, window, o.gain_db)
                   for o in comp.objects if o.audible)
    muted = tuple(CLASSES[o.cls] for o in comp.objects if not o.audible)
    return Soundtrack(comp.scene, False, events, muted)


def soundtrack(rng: np.random.Generator, comp: Composition,
               cfg: ToyConfig) -> tuple[np.ndarray, Soundtrack]:
    """The audio window (float32 [num_samples], within [-1, 1]) of the clip whose frame
    shows ``comp``, and what it holds. With every soundtrack knob off this is exactly
    :func:`synthesize` (the oracle world's audio, the same draws)."""
    if not cfg.has_soundtrack:
        return synthesize(rng, comp, cfg), oracle_truth(comp, cfg)
    draws = rng.random(4)
    keys = rng.integers(0, 2 ** 63, size=6)
    streams = [np.random.default_rng(int(k)) for k in keys]
    heard_rng, offscreen_rng, music_rng, narration_rng, timing_rng, mix_rng = streams
    unrelated = bool(draws[0] < cfg.unrelated_prob)
    heard = sample_composition(heard_rng, cfg, cfg.clip_object_counts) if unrelated else comp

    n, rate = cfg.num_samples, cfg.sample_rate
    level = cfg.ambience_rms * 10 ** (mix_rng.uniform(*cfg.clip_gain_db) / 20)
    mix = (level * ambience(mix_rng, heard.scene, cfg)).astype(np.float32)
    events: list[Event] = []

    def add(kind: str, name: str, sound: np.ndarray, gain_db: float,
            span: tuple[float, float]) -> None:
        nonlocal mix
        if span != (0.0, n / rate):
            sound = sound * _envelope(n, rate, *span)
        mix += np.float32(level * 10 ** (gain_db / 20)) * sound.astype(np.float32)
        events.append(Event(kind, name, span[0], span[1], float(gain_db)))

    for obj in heard.objects:
        if obj.audible:
            add("object", CLASSES[obj.cls], object_sound(mix_rng, obj.cls, cfg), obj.gain_db,
                _span(timing_rng, cfg))
    if draws[1] < cfg.offscreen_prob:
        absent = {o.cls for o in heard.objects} | {o.cls for o in comp.objects}
        cls = _offscreen_class(offscreen_rng, cfg, heard.scene, absent)
        gain = offscreen_rng.uniform(*cfg.object_gain_db)
        add("offscreen", CLASSES[cls], object_sound(offscreen_rng, cls, cfg), gain,
            _span(timing_rng, cfg))
    for kind, draw, prob, bed_rng, make in (
            ("music", draws[2], cfg.music_prob, music_rng, music_bed),
            ("narration", draws[3], cfg.narration_prob, narration_rng, narration_bed)):
        if draw < prob:
            gain = bed_rng.uniform(*cfg.object_gain_db)
            add(kind, kind, make(bed_rng, n, rate), gain, (0.0, n / rate))
    floor = np.float32(level * 10 ** (cfg.noise_floor_db / 20))
    mix += floor * mix_rng.standard_normal(n, dtype=np.float32)
    muted = tuple(CLASSES[o.cls] for o in heard.objects if not o.audible)
    truth = Soundtrack(heard.scene, unrelated, tuple(events), muted)
    return np.clip(mix, -1.0, 1.0).astype(np.float32), truth
