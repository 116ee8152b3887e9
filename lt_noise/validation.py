"""Argument and tensor checks shared by all of lt-noise (one message template, one place).

Hyperparameter checks run once, in ``__init__`` (or at a public function's entry); tensor checks run
at each public entry (a loss's ``forward``, :func:`~lt_noise.losses.curriculum.soft_margin`, ...).
Every failure is a ``ValueError`` whose message says what was expected and what came, e.g.
"Expected argument `q` in (0, 1], but got 1.5". Checks return the checked value, converted (a float, an
int, an int64 tensor), so callers pass the checked value on instead of checking it again.

Value checks that need a tensor's contents (class indices in range, soft-target rows summing to
one) run only for tensors on the CPU: there they are free, while on an accelerator they would force
a host synchronisation every training step. On an accelerator an out-of-range class index still
fails loudly (the device-side assert of ``gather``/``cross_entropy``).

``class_counts`` (observed training samples per class, DESIGN.md §3) follow one policy, stated in
docs/conventions.md: :func:`check_class_counts` accepts an empty class only where it is asked to
(``allow_empty=True``: descriptive uses such as the many/medium/few metrics) and rejects it everywhere
a count enters the math (a log count, a power of it).
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SEED_LIMIT",
    "check_choice",
    "check_class_counts",
    "check_factory",
    "check_delta",
    "check_finite_values",
    "check_flag",
    "check_float_dtype",
    "check_hyperparameters",
    "check_index_tensor",
    "check_int",
    "check_interval",
    "check_labels",
    "check_logits",
    "check_nonzero",
    "check_per_sample",
    "check_positive",
    "check_positive_int",
    "check_real",
    "check_seed",
    "check_target",
]

# Soft targets are probability vectors; rows may carry float32 rounding (label smoothing, mixup,
# a meta-learned corrector), so their sums are compared to 1 with this absolute tolerance.
SOFT_TARGET_SUM_TOL = 1e-3


def _show(value: object) -> str:
    """Numbers as they read (``1.2``, not ``np.float64(1.2)``); anything else as its repr."""
    return str(value) if isinstance(value, numbers.Number) and not isinstance(value, bool) else repr(value)


def _fmt_interval(low: float, high: float, low_closed: bool, high_closed: bool) -> str:
    left = "[" if low_closed else "("
    right = "]" if high_closed else ")"
    fmt = lambda v: "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:g}"  # noqa: E731
    return f"{left}{fmt(low)}, {fmt(high)}{right}"


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


# --------------------------------------------------------------------------------------------------
# Hyperparameters (scalars)


def check_real(name: str, value: object, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float; reject bools, non-numbers, NaN and (unless ``allow_inf``) infinities."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"Expected argument `{name}` to be a real number, but got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"Expected argument `{name}` to be a real number{' or ±inf' if allow_inf else ''}, but got nan")
    if not allow_inf and math.isinf(value):
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
    """Return ``value`` as a finite float after checking it lies in the stated interval.

    Whatever is wrong (not a number, NaN, outside), the message states the interval:
    "Expected argument `rate` in [0, 1), but got 1.2". Without bounds it is :func:`check_real`.
    """
    if low == -math.inf and high == math.inf:
        return check_real(name, value)
    number = not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real) and not math.isnan(value)
    inside = number and (value >= low if low_closed else value > low) and (value <= high if high_closed else value < high)
    if not inside:
        interval = _fmt_interval(low, high, low_closed, high_closed)
        raise ValueError(f"Expected argument `{name}` in {interval}, but got {_show(value)}")
    return float(value)  # type: ignore[arg-type]


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float after checking it is a finite number > 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"Expected argument `{name}` to be a finite number > 0, but got {_show(value)}")
    return float(value)


def check_nonzero(name: str, value: object, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float after checking it is a real number other than 0 (or ±inf when
    ``allow_inf``: ABSGD's λ, where inf means plain ERM)."""
    value = check_real(name, value, allow_inf=allow_inf)
    if value == 0.0:
        raise ValueError(f"Expected argument `{name}` to be a nonzero number{' or ±inf' if allow_inf else ''}, but got {value}")
    return value


def check_flag(name: str, value: object) -> bool:
    """Return ``value`` after checking it is a bool (0/1 and strings are rejected: no silent coercion)."""
    if not isinstance(value, bool):
        raise ValueError(f"Expected argument `{name}` to be a bool, but got {value!r}")
    return value


def check_int(name: str, value: object, *, minimum: int | None = None, optional: bool = False) -> int | None:
    """Return ``value`` as an int after checking it is an integer (>= ``minimum``); bools and floats are
    rejected, NumPy integers accepted. ``optional``: None passes through."""
    if value is None and optional:
        return None
    if not _is_int(value) or (minimum is not None and value < minimum):  # type: ignore[operator]
        what = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ValueError(f"Expected argument `{name}` to be {'None or ' if optional else ''}{what}, but got {_show(value)}")
    return int(value)  # type: ignore[call-overload]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int after checking it is an integer >= 1 (bools and floats rejected)."""
    return check_int(name, value, minimum=1)  # type: ignore[return-value]


def check_choice(name: str, value: object, choices: Sequence[object]) -> object:
    """Return ``value`` after checking it is one of ``choices`` (shown as a tuple)."""
    if value not in choices:
        raise ValueError(f"Expected argument `{name}` in {tuple(choices)}, but got {value!r}")
    return value


# The largest NumPy legacy seed is 2**32 - 1 (np.random.RandomState and SeedSequence-free generators).
SEED_LIMIT = 2**32


def check_seed(
    value: object, *, name: str = "seed", optional: bool = False, sequence: bool = False, below: int | None = None
) -> int | np.random.SeedSequence | None:
    """Return a seed after checking it is an integer >= 0 (and < ``below`` when given).

    ``optional``: None passes through (meaning "unseeded" to the caller); ``sequence``: a
    ``numpy.random.SeedSequence`` passes through too.
    """
    if value is None and optional:
        return None
    if sequence and isinstance(value, np.random.SeedSequence):
        return value
    if not _is_int(value) or value < 0 or (below is not None and value >= below):  # type: ignore[operator]
        kinds = ["None"] if optional else []
        kinds.append("an integer in [0, 2**32)" if below == SEED_LIMIT else f"an integer in [0, {below})" if below else "an integer >= 0")
        if sequence:
            kinds.append("a numpy SeedSequence")
        raise ValueError(f"Expected argument `{name}` to be {' or '.join(kinds)}, but got {_show(value)}")
    return int(value)  # type: ignore[call-overload]


def check_float_dtype(dtype: object, *, name: str = "dtype") -> torch.dtype:
    """Return ``dtype`` after checking it is a floating-point ``torch.dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"Expected argument `{name}` to be a floating-point torch.dtype, but got {dtype!r}")
    return dtype


# --------------------------------------------------------------------------------------------------
# Data facts


def check_class_counts(
    class_counts: Sequence[int] | np.ndarray | Tensor,
    *,
    num_classes: int | None = None,
    allow_empty: bool = False,
    min_classes: int = 2,
) -> Tensor:
    """Return the per-class training-sample counts as an int64 tensor of shape (C,).

    Accepts a sequence, a NumPy array or a tensor of non-negative integers (integer-valued floats are
    accepted, fractional ones are not) with at least ``min_classes`` classes, ``num_classes`` of them
    when given.
    A zero count (an empty class) is an error unless ``allow_empty``: every count-dependent loss takes
    a log or a negative power of it (the policy: docs/conventions.md).
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
    if counts.dim() != 1 or counts.numel() < min_classes:
        raise ValueError(
            f"Expected argument `class_counts` to be one-dimensional with at least {min_classes} classes, "
            f"but got shape {tuple(counts.shape)}"
        )
    if num_classes is not None and counts.numel() != num_classes:
        raise ValueError(
            f"Expected argument `class_counts` to have num_classes={num_classes} entries, but got {counts.numel()}"
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
    smallest = 0 if allow_empty else 1
    if bool((counts < smallest).any()):
        bad = int(torch.nonzero(counts < smallest)[0])
        kind = "non-negative" if allow_empty else "positive"
        empty = "" if allow_empty or int(counts[bad]) < 0 else " (an empty class: this use takes a log or a power of each count)"
        raise ValueError(
            f"Expected argument `class_counts` to hold {kind} integers, but got {int(counts[bad])} at index {bad}{empty}"
        )
    return counts


def check_labels(labels: object, num_classes: int | None = None, *, name: str = "labels") -> np.ndarray:
    """Return class indices as an int64 NumPy array (not a copy when already one) after checking they are
    1-D integers in [0, num_classes) (or >= 0 when ``num_classes`` is None). Tensors are accepted."""
    if num_classes is not None:
        check_int("num_classes", num_classes, minimum=1)
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"Expected argument `{name}` to be a 1-D array of class indices, but got shape {array.shape}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"Expected argument `{name}` to have an integer dtype, but got {array.dtype}")
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            bad = array[(array < 0) | (array >= (num_classes if num_classes is not None else np.iinfo(np.int64).max))]
            expected = "non-negative class indices" if num_classes is None else f"class indices in [0, {num_classes})"
            raise ValueError(
                f"Expected argument `{name}` to hold {expected}, but got values in [{low}, {high}] "
                f"({bad.size} out of range, e.g. {int(bad[0])})"
            )
    return array.astype(np.int64, copy=False)


def check_finite_values(values: object, *, name: str, length: int | None = None) -> np.ndarray:
    """Return a 1-D array of real numbers as float64 (not a copy when already one) after checking its length
    and that every entry is finite (the message lists the first offending indices)."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"Expected argument `{name}` to be 1-D, but got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)) or array.dtype == np.bool_:
        raise ValueError(f"Expected argument `{name}` to hold real numbers, but got dtype {array.dtype}")
    if length is not None and array.shape[0] != length:
        raise ValueError(f"Expected argument `{name}` to have one entry per label ({length}), but got {array.shape[0]}")
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"Expected argument `{name}` to be finite, but got {bad.size} non-finite value(s) at "
            f"sample indices {bad[:10].tolist()}{' ...' if bad.size > 10 else ''} (first: {array[bad[0]]})"
        )
    return array


# --------------------------------------------------------------------------------------------------
# Registries (losses, backbones, heads): factories whose hyperparameters can be checked


def check_factory(kind: str, name: str, factory: Callable[..., Any], given: Sequence[str], *,
                  required: bool = False) -> dict[str, inspect.Parameter]:
    """The hyperparameters of a registered factory (its parameters other than ``given``, the facts the
    builder passes), after checking they are named parameters with defaults: no ``*args``/``**kwargs``
    (so that a misspelt hyperparameter cannot be swallowed). ``required``: the factory must take every
    one of ``given`` (otherwise it takes those it names)."""
    params = inspect.signature(factory).parameters
    for param in params.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ValueError(
                f"Expected the factory of {kind} '{name}' to take named parameters only (no *args, **kwargs "
                f"or positional-only ones, so that misspelt hyperparameters can be caught), but got {param}"
            )
        if param.name not in given and param.default is param.empty:
            raise ValueError(
                f"Expected every hyperparameter of {kind} '{name}' to have a default, but `{param.name}` has none"
            )
    missing = [arg for arg in given if arg not in params]
    if required and missing:
        raise ValueError(f"Expected the factory of {kind} '{name}' to take {list(given)}, but it lacks {missing}")
    return {key: p for key, p in params.items() if key not in given}


def check_hyperparameters(kind: str, name: str, known: Iterable[str], hparams: Iterable[str]) -> None:
    """Reject hyperparameters a factory does not take, listing those it does."""
    unknown = sorted(set(hparams) - set(known))
    if unknown:
        raise ValueError(f"Expected hyperparameters of {kind} '{name}' among {sorted(known)}, but got unknown {unknown}")


# --------------------------------------------------------------------------------------------------
# Tensors at a public entry


def check_per_sample(name: str, tensor: object) -> Tensor:
    """Check ``tensor`` is a 1-D floating-point tensor of per-sample values, shape (B,)."""
    if not isinstance(tensor, Tensor):
        raise ValueError(f"Expected `{name}` to be a torch.Tensor, but got {type(tensor).__name__}")
    if tensor.ndim != 1:
        raise ValueError(
            f"Expected `{name}` to be a 1-D tensor of per-sample values, shape (B,), but got shape {tuple(tensor.shape)}"
        )
    if not tensor.is_floating_point():
        raise ValueError(f"Expected `{name}` to be a floating-point tensor, but got dtype {tensor.dtype}")
    return tensor


def check_index_tensor(name: str, tensor: object, upper: int, *, length: int | None = None) -> Tensor:
    """Check ``tensor`` is a 1-D integer tensor (of ``length``) with values in [0, upper).

    One device synchronisation: on an accelerator an out-of-range index would otherwise be a
    device-side assert.
    """
    if not isinstance(tensor, Tensor):
        raise ValueError(f"Expected argument `{name}` to be a torch.Tensor, but got {type(tensor).__name__}")
    if tensor.ndim != 1:
        raise ValueError(f"Expected argument `{name}` to be 1-D (B,), but got shape {tuple(tensor.shape)}")
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"Expected argument `{name}` to hold integers, but got dtype {tensor.dtype}")
    if length is not None and tensor.shape[0] != length:
        raise ValueError(f"Expected argument `{name}` to have length {length}, but got {tensor.shape[0]}")
    if tensor.numel() and bool(((tensor < 0) | (tensor >= upper)).any()):
        bad = tensor[(tensor < 0) | (tensor >= upper)]
        raise ValueError(
            f"Expected argument `{name}` in [0, {upper - 1}], but got {bad.numel()} value(s) out of range, "
            f"e.g. {int(bad[0])}"
        )
    return tensor


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
