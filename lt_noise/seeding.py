"""Seeds: the run's base seed, and the seeds of the independent random streams derived from it.

Every random draw of lt-noise that must replay exactly (on resume, on another DDP world size, on
another machine) is seeded by a pure function of explicit integers: the datamodule's and the method's
base seed (:func:`global_seed`), the epoch or step, and the sample index or a stream key
(:func:`sample_seed`). Methods and datamodules import their seeds from here.
"""

from __future__ import annotations

import os

__all__ = ["global_seed", "sample_seed", "splitmix64"]

_MASK64 = (1 << 64) - 1


def splitmix64(value: int) -> int:
    """One round of SplitMix64 (Steele et al. 2014): a cheap bijective mixer of 64-bit integers, so that
    nearby inputs such as (seed, epoch, index) triples give unrelated outputs."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The RNG seed of one sample's augmentation in one epoch (a 63-bit non-negative int).

    Also the seed of any keyed stream: ``sample_seed(seed ^ STREAM_KEY, step, 0)`` (per-step noise, mixup
    draws, Dynamic Loss's Gumbel noise and meta-set orders).
    """
    return splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ index) >> 1


def global_seed(seed: int | None) -> int:
    """``seed``, or the seed given to ``seed_everything`` (``PL_GLOBAL_SEED``) when None, else 0."""
    if seed is not None:
        return int(seed)
    return int(os.environ.get("PL_GLOBAL_SEED", 0))
