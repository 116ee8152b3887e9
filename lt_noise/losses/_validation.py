"""Argument and tensor checks shared by every loss (one message template, one place).

Hyperparameter checks run once, in ``__init__``; tensor checks run at each public entry
(``forward``, ``weight``, :func:`~lt_noise.losses.curriculum.soft_margin`). Every failure is a
``ValueError`` whose message says what was expected and what came, e.g.
"Expected argument `q` in (0, 1], but got 1.5".

Value checks that need the tensor's contents (class indices in range, soft-target rows summing to
one) run only for tensors on the CPU: there they are free, while on an accelerator they would force
a host synchronisation every training step. On an accelerator an out-of-range class index still
fails loudly (the device-side assert of ``gather``/``cross_entropy``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "check_class_counts",
    "check_delta",
    "check_flag",
    "check_interval",
    "check_logits",
    "check_positive_int",
    "check_real",
    "check_target",
]

# Soft targets are probability vectors; rows may carry float32 rounding (label smoothing, mixup,
# a meta-learned corrector), so their sums are compared to 1 with this absolute tolerance.
SOFT_TARGET_SUM_TOL = 1e-3


def _fmt_interval(low: float, high: float, low_closed: bool, high_closed: bool) -> str:
    left = "[" if low_closed else "("
    right = "]" if high_closed else ")"
    fmt = lambda v: "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:g}"  # noqa: E731
    return f"{left}{fmt(low)}, {fmt(high)}{right}"


def check_real(name: str, value: object) -> float:
    """Return ``value`` as a finite float; reject bools, non-numbers, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Expected argument `{name}` to be a real number, but got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Expected argument `{name}` to be finite, but got {value}")
    return value


def check_interval(
    name: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_closed: bool = False,
    high_closed: bool = False,
) -> float:
    """Return ``value`` as a float after checking it lies in the stated interval."""
    value = check_real(name, value)
    above = value >= low if low_closed else value > low
    below = value <= high if high_closed else value < high
    if not (above and below):
        interval = _fmt_interval(low, high, low_closed, high_closed)
        raise ValueError(f"Expected argument `{name}` in {interval}, but got {value:g}")
    return value


def check_flag(name: str, value: object) -> bool:
    """Return ``value`` after checking it is a bool (0/1 and strings are rejected: no silent coercion)."""
    if not isinstance(value, bool):
        raise ValueError(f"Expected argument `{name}` to be a bool, but got {value!r}")
    return value


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int after checking it is an integer >= 1 (bools and floats rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Expected argument `{name}` to be a positive integer, but got {value!r}")
    return int(value)


def check_class_counts(class_counts: Sequence[int] | np.ndarray | Tensor) -> Tensor:
    """Return the per-class training-sample counts as an int64 tensor of shape (C,).

    Accepts a sequence, a NumPy array or a tensor of positive integers (integer-valued floats are
    accepted, fractional ones are not) with at least two classes. A zero count is an error: every
    count-dependent loss takes a log or a negative power of it.
    """
    if isinstance(class_counts, (str, bytes)):
        raise ValueError(f"Expected argument `class_counts` to be a sequence of integers, but got {class_counts!r}")
    try:
        if isinstance(class_counts, Tensor):
            counts = class_counts.detach().cpu()
        else:
            counts = torch.as_tensor(np.asarray(class_counts))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"Expected argument `class_counts` to be a sequence of integers, but got {class_counts!r}"
        ) from err
    if counts.dim() != 1 or counts.numel() < 2:
        raise ValueError(
            "Expected argument `class_counts` to be one-dimensional with at least 2 classes, "
            f"but got shape {tuple(counts.shape)}"
        )
    if counts.dtype == torch.bool or counts.dtype.is_complex:
        raise ValueError(f"Expected argument `class_counts` to hold integers, but got dtype {counts.dtype}")
    if counts.dtype.is_floating_point:
        if not bool(torch.isfinite(counts).all()) or not bool((counts == counts.round()).all()):
            bad = int(torch.nonzero(~torch.isfinite(counts) | (counts != counts.round()))[0])
            raise ValueError(
                f"Expected argument `class_counts` to hold integers, but got {counts[bad].item()} at index {bad}"
            )
    counts = counts.to(torch.int64)
    if bool((counts < 1).any()):
        bad = int(torch.nonzero(counts < 1)[0])
        raise ValueError(
            f"Expected argument `class_counts` to hold positive integers, but got {int(counts[bad])} at index {bad}"
        )
    return counts


def check_logits(logits: object) -> Tensor:
    """Check ``logits`` is a floating tensor of shape (B, C) with C >= 2."""
    if not isinstance(logits, Tensor):
        raise ValueError(f"Expected `logits` to be a torch.Tensor, but got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"Expected `logits` of shape (B, C) with C >= 2 classes, but got shape {tuple(logits.shape)}"
        )
    if not logits.dtype.is_floating_point:
        raise ValueError(f"Expected `logits` to be a floating-point tensor, but got dtype {logits.dtype}")
    return logits


def check_target(target: object, logits: Tensor) -> Literal["hard", "soft"]:
    """Classify ``target`` as class indices ("hard", shape (B,), int64) or a probability vector per row
    ("soft", shape (B, C), floating) and check it matches ``logits``."""
    if not isinstance(target, Tensor):
        raise ValueError(f"Expected `target` to be a torch.Tensor, but got {type(target).__name__}")
    batch, num_classes = logits.shape
    if target.dim() == 1:
        if target.dtype != torch.int64:
            raise ValueError(f"Expected class-index `target` of dtype torch.int64, but got {target.dtype}")
        if target.shape[0] != batch:
            raise ValueError(
                f"Expected `target` of shape ({batch},) to match logits {tuple(logits.shape)}, "
                f"but got shape {tuple(target.shape)}"
            )
        if target.device.type == "cpu" and target.numel() > 0:
            low, high = int(target.min()), int(target.max())
            if low < 0 or high >= num_classes:
                raise ValueError(
                    f"Expected class indices in [0, {num_classes - 1}], but got values in [{low}, {high}]"
                )
        return "hard"
    if target.dim() == 2:
        if not target.dtype.is_floating_point:
            raise ValueError(
                f"Expected a soft `target` (probability vector per row) to be floating point, but got {target.dtype}"
            )
        if tuple(target.shape) != tuple(logits.shape):
            raise ValueError(
                f"Expected a soft `target` of shape {tuple(logits.shape)} (like logits), "
                f"but got shape {tuple(target.shape)}"
            )
        if target.device.type == "cpu" and target.numel() > 0:
            as64 = target.detach().double()
            if bool((as64 < 0).any()):
                raise ValueError(
                    f"Expected a soft `target` with non-negative entries, but got min {as64.min().item():g}"
                )
            worst = (as64.sum(dim=1) - 1.0).abs().max().item()
            if worst > SOFT_TARGET_SUM_TOL:
                raise ValueError(f"Expected the rows of a soft `target` to sum to 1, but got a row off by {worst:g}")
        return "soft"
    raise ValueError(
        "Expected `target` to be class indices of shape (B,) or probabilities of shape (B, C), "
        f"but got shape {tuple(target.shape)}"
    )


def check_delta(delta: object) -> Tensor:
    """Check a soft-margin tensor (any shape) is floating point."""
    if not isinstance(delta, Tensor) or not delta.dtype.is_floating_point:
        kind = delta.dtype if isinstance(delta, Tensor) else type(delta).__name__
        raise ValueError(f"Expected `delta` to be a floating-point torch.Tensor, but got {kind}")
    return delta
