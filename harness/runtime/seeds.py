"""Seeds of independent random streams, derived from a run's seed and stream numbers.

A stage that draws from several random streams (the split, the initialisation, each
epoch's augmentation, each iteration's crops) seeds each from the run seed and the
stream's numbers, so that a resumed run re-creates exactly the draws of an uninterrupted
one and no stream's draws shift when another stream draws more.

Two derivations live here, because committed results were made with each and changing
either would change those results: :func:`derive_seed` (numpy's ``SeedSequence``) seeds
pretext training, :func:`hashed_seed` (sha256 of the numbers) seeds the VOC07 evaluators.
Both give a 63-bit integer, which every generator (numpy, torch) accepts.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*parts: int) -> int:
    """An independent 63-bit seed for one random stream, from the run seed and stream ids
    (numpy's ``SeedSequence`` over ``parts``; the pretext's streams)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


def hashed_seed(*parts: int) -> int:
    """A 63-bit seed from the sha256 of ``parts`` (stable across runs, machines and numpy
    versions; the VOC07 evaluators' streams)."""
    digest = hashlib.sha256(repr(tuple(int(p) for p in parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
