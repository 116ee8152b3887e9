"""The curriculum view of p_y-losses (Ou & Zhang, "A Curriculum View of Robust Loss Functions",
ICLR 2023; papers/003).

A loss of the labelled class's softmax probability only, L(s, y) = l(p_y), has the gradient of
w(Δ_y)·Δ_y with the sample weight w held fixed (Eq. (1)), where

    Δ_y = s_y - log Σ_{i≠y} exp(s_i)       (§4; p_y = sigmoid(Δ_y))

is the soft margin and w(Δ_y) = -dl/dp_y · dp_y/dΔ_y >= 0 the loss's sample-weighting function
(``loss.weight``). :class:`Reweighted` trains with that form, w normalised to unit maximum (§5,
App. B: "all loss functions are normalized to have unit maximum in sample weights"), optionally with
the §5.1.1 fixes for marginal initial weights:

    scale:  w*(Δ) = w(Δ · τ / |E[Δ]|)        shift:  w+(Δ) = w(Δ + |E[Δ]| - τ)

Both map the expected initial margin E[Δ] (< 0) to -τ, so the initial weights no longer vanish as the
number of classes grows (App. C.1.1 writes the shift's effective margin as Δ + |E[Δ]|·τ in one
formula, but defines β = |E[Δ]| - τ next to it; we follow §5.1.1 and β). Table 9 lists τ for
CIFAR-100 (MAE scale: 2.0 clean, 2.6-4.0 noisy; AGCE scale 2.6-5.0).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from lt_noise.distributed import all_reduce_
from lt_noise.losses._base import LabelProbabilityLoss
from lt_noise.losses._core import margin_from_logits, upcast
from lt_noise.validation import (
    check_choice,
    check_int,
    check_interval,
    check_logits,
    check_positive_int,
    check_real,
    check_target,
)

__all__ = ["Reweighted", "expected_initial_margin", "soft_margin"]

Mode = Literal["scale", "shift"]


def soft_margin(logits: Tensor, target: Tensor) -> Tensor:
    """The soft margin Δ_y = s_y - log Σ_{i≠y} exp(s_i) (curriculum paper §4), shape (B,).

    Takes logits (B, C) and class indices (B,); computed in at least float32 with logsumexp, so that
    sigmoid(Δ_y) is the softmax probability p_y. Δ_y >= 0 implies y = argmax_i s_i.
    """
    if check_target(target, check_logits(logits)) != "hard":
        raise ValueError(
            f"Expected class indices of shape (B,) as `target` (Δ_y needs one label per sample), "
            f"but got a soft target of shape {tuple(target.shape)}"
        )
    return margin_from_logits(upcast(logits), target)


def expected_initial_margin(num_classes: int, sigma: float = 1.0) -> float:
    """E[Δ_y] at initialisation for i.i.d. N(μ, σ²) class scores, curriculum paper Eq. (4):

        E[Δ_y] ≈ -log(k - 1) - σ²/2 + (exp(σ²) - 1) / (2 (k - 1))

    (a second-order Taylor approximation; independent of μ). For k = 100, σ = 1 it is -5.087 (the
    paper measures 5.097 in magnitude on CIFAR-100); for k = 10, -2.602 (2.717 measured).
    """
    k = check_int("num_classes", num_classes, minimum=2)
    sigma = check_interval("sigma", sigma, 0.0)
    return -math.log(k - 1) - sigma**2 / 2 + math.expm1(sigma**2) / (2 * (k - 1))


class Reweighted(nn.Module):
    """A p_y-loss in its curriculum form: per-sample value -ŵ(Δ̂_y).detach() · Δ_y.

    ŵ = w / max w is the loss's sample-weighting function scaled to unit maximum, and Δ̂_y the margin
    at which it is read: Δ_y (``mode=None``), Δ_y·τ/|E[Δ]| (``"scale"``) or Δ_y + |E[Δ]| - τ
    (``"shift"``). With ``mode=None`` the gradient w.r.t. the logits is that of ``loss`` divided by
    max w, for every p_y-loss: a positive constant factor, i.e. a learning-rate change.

    The normalising constant max w is ``loss.max_weight()``, computed once here: a closed form where
    one exists (CE: 1, the supremum as Δ -> -inf; MAE: 1/4; RCE: -A/4; GCE: (q/(1+q))^q/(1+q); SCE;
    TCE) and otherwise the argmax of w over a grid of Δ in [-60, 60], refined around the peak (Focal,
    AGCE, AUL, AEL; see :meth:`LabelProbabilityLoss.max_weight`). Scaling or shifting Δ only
    reparametrises the real line, so the maximum is the same with either fix.

    The per-sample value is a surrogate whose gradient is the curriculum's, not a loss value to
    report: log ``loss(logits, target)`` for that.

    Args:
        loss: a p_y-loss (:class:`~lt_noise.losses._base.LabelProbabilityLoss` with ``is_py_loss``).
        mode: None, "scale" or "shift" (§5.1.1).
        tau: τ > 0, the margin -τ at which the fixed weighting function reads E[Δ]; required with a
            mode, not allowed without one.
        expected_margin: E[Δ] for the fixes (only its magnitude is used, as in the paper):
            None: Eq. (4) at the logits' number of classes with σ = 1 (:func:`expected_initial_margin`);
            a number: that value (e.g. Table 9's measured 5.097 for CIFAR-100);
            "measure": the mean Δ_y over the first ``measure_batches`` batches seen in training mode,
            accumulated in buffers (so a checkpoint restores it and a resumed run does not re-measure;
            under torch.distributed the sums are all-reduced, so every rank uses the global mean).
            Until a batch has been measured (e.g. Lightning's sanity-check validation, in eval mode),
            Eq. (4) stands in.
        measure_batches: how many training batches ``"measure"`` averages. Default 1: only the first
            batch is seen by the network at its initialisation, which is what E[Δ] describes.

    Class indices only: Δ_y needs one label per sample.
    """

    def __init__(
        self,
        loss: LabelProbabilityLoss,
        mode: Mode | None = None,
        tau: float | None = None,
        expected_margin: float | Literal["measure"] | None = None,
        *,
        measure_batches: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(loss, LabelProbabilityLoss) or not loss.is_py_loss:
            raise ValueError(
                "Expected argument `loss` to be a loss of p_y alone (MAE, RCE, CE without label smoothing, "
                f"Focal, GCE, SCE, AGCE, AUL, AEL, TCE), but got {loss!r}"
            )
        check_choice("mode", mode, (None, "scale", "shift"))
        if mode is None:
            if tau is not None or expected_margin is not None:
                raise ValueError(
                    "Expected `tau` and `expected_margin` to be None without a `mode` (they set the scale/shift "
                    f"fix), but got tau={tau!r}, expected_margin={expected_margin!r}"
                )
        else:
            if tau is None:
                raise ValueError(f"Expected argument `tau` > 0 with mode={mode!r}, but got None")
            tau = check_interval("tau", tau, 0.0)
            if isinstance(expected_margin, str):
                if expected_margin != "measure":
                    raise ValueError(
                        "Expected argument `expected_margin` to be None, a number or 'measure', "
                        f"but got {expected_margin!r}"
                    )
            elif expected_margin is not None:
                expected_margin = check_real("expected_margin", expected_margin)
                if expected_margin == 0.0:
                    raise ValueError("Expected argument `expected_margin` to be non-zero, but got 0")
        self.loss = loss
        self.mode = mode
        self.tau = tau
        self.expected_margin = expected_margin
        self.measure_batches = check_positive_int("measure_batches", measure_batches)
        self.normalizer = loss.max_weight()
        # "measure" state, as buffers so that checkpoints restore it (float64 sums: exact enough
        # for any number of samples); unused by the other settings.
        self.register_buffer("margin_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("margin_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("measured_batches", torch.zeros((), dtype=torch.int64))
        self._measuring_done = False  # host-side cache of measured_batches >= measure_batches

    @property
    def measuring(self) -> bool:
        return self.expected_margin == "measure"

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-sample -ŵ(Δ̂_y).detach() · Δ_y, shape (B,)."""
        delta = soft_margin(logits, target)
        if self.training and self.measuring:
            self._measure(delta.detach())
        return -self._weights(delta.detach(), logits.shape[1]) * delta

    def sample_weights(self, logits: Tensor, target: Tensor) -> Tensor:
        """ŵ(Δ̂_y) in [0, 1] (up to rounding) per sample (B,), detached: the weights ``forward`` applies.

        For diagnostics such as the paper's snr = w̄_clean / w̄_noise; does not update the "measure" state.
        """
        with torch.no_grad():
            return self._weights(soft_margin(logits, target), logits.shape[1])

    def margin_estimate(self, num_classes: int) -> Tensor | float:
        """The E[Δ] the fixes use now (a 0-dim tensor while measuring, else a float)."""
        if self.measuring:
            if self._measurement_complete() or bool(self.margin_count > 0):
                return self.margin_sum / self.margin_count
            return expected_initial_margin(num_classes)
        if self.expected_margin is None:
            return expected_initial_margin(num_classes)
        return self.expected_margin

    def _weights(self, delta: Tensor, num_classes: int) -> Tensor:
        if self.mode is None:
            read_at = delta
        else:
            magnitude = self.margin_estimate(num_classes)
            magnitude = magnitude.abs().to(delta.dtype) if isinstance(magnitude, Tensor) else abs(magnitude)
            read_at = delta * (self.tau / magnitude) if self.mode == "scale" else delta + (magnitude - self.tau)
        return self.loss.weight(read_at) / self.normalizer

    def _measurement_complete(self) -> bool:
        # One host read of the buffer until it says "complete"; no synchronisation after that.
        if not self._measuring_done:
            self._measuring_done = int(self.measured_batches) >= self.measure_batches
        return self._measuring_done

    def _measure(self, delta: Tensor) -> None:
        if self._measurement_complete():
            return
        count = torch.tensor(float(delta.numel()), dtype=torch.float64, device=delta.device)
        stats = torch.stack([delta.double().sum(), count])
        all_reduce_(stats)
        self.margin_sum += stats[0]
        self.margin_count += stats[1]
        self.measured_batches += 1

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._measuring_done = False  # the restored buffers decide again

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode}, tau={self.tau}, expected_margin={self.expected_margin!r}, "
            f"normalizer={self.normalizer:.6g}"
        )
