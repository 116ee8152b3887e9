"""Dynamic Loss's pure math: the differentiable virtual SGD step (eq. 7), the Gumbel-max sample of y'
(eq. 3) and the label corrector's warm-up loss. Tensors in, tensors out; no state, no module."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["PRETRAIN_EPS", "corrector_pretraining_loss", "gumbel_max_labels", "gumbel_noise", "sgd_virtual_update"]

# Authors' code: the pre-training loss is -y·log(y* + 1e-8); the epsilon keeps the log finite at y* = 0.
PRETRAIN_EPS = 1e-8


def sgd_virtual_update(
    params: Sequence[Tensor],
    grads: Sequence[Tensor | None],
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    momentum_buffers: Sequence[Tensor | None] | None = None,
) -> list[Tensor]:
    """One differentiable step of ``torch.optim.SGD`` (dampening 0): the fast weights ω̂ of paper eq. 7.

    ``d = grad + weight_decay·p``; with momentum ``m = momentum·buffer + d`` (``m = d`` without a buffer,
    as torch does on its first step) and ``d = m`` (or ``d + momentum·m`` with Nesterov); ``p - lr·d``.
    This is the update the authors' code replays through ``higher``'s differentiable SGD with a copy of
    the real optimizer's state. Parameters whose gradient is None are returned unchanged (torch's SGD
    skips them too). Pass grads made with ``create_graph=True`` to differentiate through the step.
    """
    if len(params) != len(grads):
        raise ValueError(f"Expected as many grads as params ({len(params)}), but got {len(grads)}")
    buffers = list(momentum_buffers) if momentum_buffers is not None else [None] * len(params)
    if len(buffers) != len(params):
        raise ValueError(f"Expected as many momentum buffers as params ({len(params)}), but got {len(buffers)}")
    updated = []
    for param, grad, buffer in zip(params, grads, buffers):
        if grad is None:
            updated.append(param)
            continue
        step = grad + weight_decay * param if weight_decay else grad
        if momentum:
            velocity = step if buffer is None else momentum * buffer + step
            step = step + momentum * velocity if nesterov else velocity
        updated.append(param - lr * step)
    return updated


def gumbel_max_labels(logits: Tensor, gumbel: Tensor) -> Tensor:
    """One-hot samples of Categorical(softmax(logits)) by the Gumbel-max trick, detached.

    ``argmax(logits + G)`` with standard Gumbel noise G is the forward value of the authors' hard
    ``F.gumbel_softmax(logits, tau=1, hard=True)`` (for any tau). Taking the noise as an argument lets the
    method draw it for the whole global batch and give each DDP rank its own rows.

    Args:
        logits: (B, K) classifier logits (detached by this function).
        gumbel: (B, K) standard Gumbel noise, ``-log(-log(U))``.

    Returns:
        (B, K) one-hot rows in at least float32 (float64 for float64 logits): the soft targets built
        from them must not inherit a bf16 autocast dtype.
    """
    if logits.ndim != 2 or gumbel.shape != logits.shape:
        raise ValueError(
            f"Expected `logits` (B, K) and `gumbel` of the same shape, but got {tuple(logits.shape)} and "
            f"{tuple(gumbel.shape)}"
        )
    dtype = torch.promote_types(logits.dtype, torch.float32)
    with torch.no_grad():
        index = (logits.detach().to(dtype) + gumbel.to(dtype)).argmax(dim=1)
        return nn.functional.one_hot(index, logits.shape[1]).to(dtype)


def corrector_pretraining_loss(label_weights: Tensor, observed_probability: Tensor) -> Tensor:
    """The warm-up loss of the label corrector: ``mean(-log(g + (1 - g)·p_y + 1e-8))``.

    The authors' warm-up (``DyanamicMeta.warmup``) takes the cross entropy between the observed one-hot
    label y and ``y* = g·y + (1 - g)·softmax(f(x_weak))`` (eq. 3 with y' the soft prediction), i.e. the
    expression above with p_y the predicted probability of the observed class. Its gradient in g is
    negative wherever p_y < 1: it teaches g(r|y) to trust the labels before the meta steps start.

    Args:
        label_weights: (B,) g(r_i | y_i) in [0, 1], differentiable.
        observed_probability: (B,) p_{y_i}, detached.
    """
    if label_weights.shape != observed_probability.shape or label_weights.ndim != 1:
        raise ValueError(
            f"Expected `label_weights` and `observed_probability` of the same shape (B,), but got "
            f"{tuple(label_weights.shape)} and {tuple(observed_probability.shape)}"
        )
    target_mass = label_weights + (1.0 - label_weights) * observed_probability.detach()
    return -(target_mass + PRETRAIN_EPS).log().mean()


def gumbel_noise(uniform: Tensor) -> Tensor:
    """Standard Gumbel noise ``-log(-log(U))`` from uniform draws ``U`` in [0, 1), clamped at the dtype's
    smallest positive value so that ``U = 0`` gives a large finite draw instead of ``-inf``."""
    tiny = torch.finfo(uniform.dtype).tiny
    return -(-uniform.clamp(min=tiny).log()).log()
