"""Numerically safe building blocks shared by the losses (no argument checks here: callers check).

Everything is computed in at least float32: logits that arrive in bf16/fp16 (a bf16 autocast
region) are cast up first, and float64 stays float64 so that gradcheck works. Probabilities are
never formed and then logged; the log-probabilities come from ``logsumexp``/``log_softmax`` and the
softmax-as-sigmoid identity of the curriculum paper (§4): p_y = sigmoid(Δ_y) with the soft margin
Δ_y = s_y - log Σ_{i≠y} exp(s_i).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["class_mask", "label_logit", "log1m_softmax", "margin_from_logits", "upcast"]


def upcast(x: Tensor) -> Tensor:
    """Return ``x`` in float32 unless it already is float32 or float64 (bf16/fp16 are cast up)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def class_mask(logits: Tensor, index: Tensor) -> Tensor:
    """Boolean (B, C) mask, True at column ``index[b]`` of row b.

    A scatter rather than ``F.one_hot``, which validates its input with a host synchronisation on
    some devices.
    """
    return torch.zeros_like(logits, dtype=torch.bool).scatter_(1, index.unsqueeze(1), True)


def label_logit(logits: Tensor, target: Tensor) -> Tensor:
    """s_y for class indices ``target`` (B,): shape (B,)."""
    return logits.gather(1, target.unsqueeze(1)).squeeze(1)


def margin_from_logits(logits: Tensor, target: Tensor) -> Tensor:
    """The soft margin Δ_y = s_y - log Σ_{i≠y} exp(s_i) (curriculum paper §4), shape (B,).

    The labelled logit is masked with -inf before the logsumexp: its softmax weight (and thus its
    gradient through the logsumexp) is exactly zero, and C >= 2 keeps the sum non-empty.
    """
    is_label = class_mask(logits, target)
    others = logits.masked_fill(is_label, float("-inf")).logsumexp(dim=1)
    return label_logit(logits, target) - others


def log1m_softmax(logits: Tensor) -> Tensor:
    """log(1 - p_j) for every class j, shape (B, C), finite with finite gradients for any logits.

    For every class but the row's arg-max, p_j <= 1/2, where log1p(-p_j) is accurate. For the arg-max
    class, 1 - p_j = Σ_{i≠j} p_i is formed as a masked logsumexp instead, which stays accurate when
    p_j rounds to 1. The unused branch is fed a harmless constant so that its gradient (which
    ``where`` multiplies by zero) cannot be 0 * inf = NaN.
    """
    log_p = logits.log_softmax(dim=1)
    is_top = class_mask(logits, logits.argmax(dim=1))
    # -1.0 is an arbitrary log-probability below log(1/2); only its finiteness matters.
    safe_log_p = log_p.masked_fill(is_top, -1.0)
    rest = torch.log1p(-safe_log_p.exp())
    top = logits.masked_fill(is_top, float("-inf")).logsumexp(dim=1) - logits.logsumexp(dim=1)
    return torch.where(is_top, top.unsqueeze(1), rest)
