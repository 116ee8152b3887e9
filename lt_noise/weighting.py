"""ABSGD attentional weights: ``p_i = exp(L_i/λ) / s_{t+1}`` with a moving-average normalizer in log space.

Paper: *Attentional-Biased Stochastic Gradient Descent* (``papers/004``), Algorithm 1, eq. (2) and (8)::

    g_t     = (1/B) Σ_i exp(L_i / λ)                                   (Step 3)
    s_{t+1} = (1 - γ) s_t + γ g_t                                       (Step 4)
    p_i     = exp(L_i / λ) / s_{t+1}                                    (Step 5, eq. 8)
    w_{t+1} = w_t - η ((1/B) Σ_i p_i ∇L_i + ∇r(w_t)) + β (w_t - w_{t-1})  (eq. 2)

λ > 0 puts more weight on large losses (the min-max IR-DRO objective, eq. 3: imbalance); λ < 0 on small
losses (the min-min objective, eq. 4: label noise); |λ| = ∞ is plain ERM / momentum SGD (Section 3.6).
The weights are *not* normalised to sum to one within the batch (Section 3.1): their batch mean is about
one once ``s`` has settled.

Conventions settled here (paper silent, authors' code read: github.com/qiqi-helloworld/ABSGD files
``mylosses.py``, ``noisy_label/loss.py``, ``wilds-competition/mylosses.py``, and ``losses.py`` of the PyPI
package ``absgd``):

* **Normalizer start.** The authors start ``u = 0``, so the first normalizer is ``γ·α·g_1`` and the first
  weights have batch mean ``1/(γα)`` (larger than one). ``init="zero"`` (default) reproduces this;
  ``init="first_batch"`` takes ``s_1 = α·g_1`` (as if γ were 1 on the first update), which gives first
  weights of batch mean ``1/α`` and removes the start-up transient.
* **Step-size factor α.** Every authors' version updates ``u = (1-γ) u + γ·(α·mean(exp(L/λ)))``
  (package default α = 1, their experiment scripts 0.3-0.5). Since the normalizer then is α times the
  α = 1 normalizer at every step (for both inits), α only rescales all weights by ``1/α``, i.e. the
  learning rate. α = 1 is the paper.
* **Reduction.** Eq. (2) divides by the batch size B, not by Σ p_i; the authors' code does the same
  (``p = exp(L/λ) / (u·B)`` then ``sum(p·L)``). Use :func:`weighted_mean`.
* **λ ≥ 200 shortcut.** The authors' repository scripts treat ``myLambda >= 200`` as plain ERM (weights
  ``1/B``, ``u`` untouched); their first stage runs with λ = 200. The PyPI package has no such threshold
  (λ is ``None`` = ERM before the milestone). Here it is opt-in: ``erm_threshold=AUTHORS_ERM_THRESHOLD``.
  By default only λ = ±inf is ERM.
* **Noisy-label floor.** Not in the paper. The authors' noisy-label code (``noisy_label/loss.py``,
  Tables 6-7) adds a uniform term: ``p = exp(L/λ)/(u·B) + 1/B``, i.e. weight ``p_i + 1`` in the paper's
  scaling: ``floor="add"``. ``mylosses.py`` keeps, commented out as a "further boosting" trick, a clip to
  the uniform weight, ``max(p_i, 1)``: ``floor="max"``. Neither applies in the ERM case.
* **Overflow.** The authors compute ``exp(L/λ)`` directly, which overflows (``inf/inf = nan`` weights)
  when ``L/λ ≳ 88`` in float32, and underflows to a zero normalizer (``0/0``) for λ < 0 and large losses.
  Here ``log s`` is the state and everything is done with ``logsumexp``/``logaddexp``, so the results are
  equal to the plain formula wherever that is finite and finite everywhere else. The weights are bounded
  by ``B_global / (γα)`` because ``s_{t+1} ≥ γα exp(L_i/λ) / B_global``.
* **ABAdam** (Section 3.4, eq. 9) is the same weighted mean fed to Adam instead of momentum SGD. Note that
  eq. (9) has no bias correction and subtracts ``η ∇r(w)`` outside the adaptive step (decoupled decay),
  unlike ``torch.optim.Adam`` (bias-corrected, L2 decay inside the gradient).
* **Two stages** (Section 3.6): ERM (λ = inf) first, then ABSGD "restarted" with a finite λ. Setting
  :attr:`AttentionalWeights.lam` does *not* reset the normalizer (the authors' code never resets ``u``:
  their λ = 200 stage just never touches it, so it is still 0 when stage 2 starts; a switch between two
  finite λ keeps the old ``u``). Call :meth:`AttentionalWeights.reset` when restarting, as the paper says.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lt_noise.distributed import all_reduce_, world, world_size
from lt_noise.validation import (
    check_choice,
    check_flag,
    check_interval,
    check_per_sample,
    check_nonzero,
    check_positive,
)

__all__ = [
    "AUTHORS_ERM_THRESHOLD",
    "AttentionalWeights",
    "attentional_weights",
    "log_mean_exp",
    "update_log_normalizer",
    "weighted_mean",
]

# The authors' repository scripts switch to plain ERM for `myLambda >= 200` (mylosses.py,
# noisy_label/loss.py); their first training stage is run with `--init_lamda 200`.
AUTHORS_ERM_THRESHOLD = 200.0

# Names of the normalizer initialisations and of the noisy-label floors (see the module docstring).
INITS = ("zero", "first_batch")
FLOORS = (None, "add", "max")

# At most this many offending batch indices are listed in the non-finite-loss error message.
_MAX_REPORTED_INDICES = 20


# ----------------------------------------------------------------------------------------------------
# Pure functions: the math exists once, here.
# ----------------------------------------------------------------------------------------------------


def log_mean_exp(scaled_losses: Tensor) -> Tensor:
    """``log((1/B) Σ_i exp(z_i))`` of a 1-D tensor ``z = L/λ``, without overflow (Step 3, in log space)."""
    return torch.logsumexp(scaled_losses, dim=0) - math.log(scaled_losses.numel())


def update_log_normalizer(
    log_normalizer: Tensor,
    log_batch_mean: Tensor,
    gamma: float | Tensor,
    alpha: float = 1.0,
) -> Tensor:
    """One moving-average step of Algorithm 1 (Step 4) in log space.

    Returns ``log s_{t+1} = log((1-γ) s_t + γ α g_t)`` computed as
    ``logaddexp(log(1-γ) + log s_t, log(γα) + log g_t)``, where ``log_normalizer = log s_t`` (``-inf`` for
    the authors' ``s_0 = 0``) and ``log_batch_mean = log g_t`` (see :func:`log_mean_exp`). ``gamma = 1``
    forgets ``s_t`` entirely. Nothing is validated here: :class:`AttentionalWeights` does it once.
    """
    gamma = torch.as_tensor(gamma, dtype=log_batch_mean.dtype, device=log_batch_mean.device)
    kept = torch.log1p(-gamma) + log_normalizer  # log((1-γ) s_t); -inf when γ = 1 or s_t = 0
    new = torch.log(gamma * alpha) + log_batch_mean  # log(γ α g_t)
    return torch.logaddexp(kept, new)


def attentional_weights(scaled_losses: Tensor, log_normalizer: Tensor) -> Tensor:
    """The weights ``p_i = exp(z_i) / s = exp(z_i - log s)`` of eq. (8), with ``z = L/λ`` and ``log s``."""
    return torch.exp(scaled_losses - log_normalizer)


def weighted_mean(losses: Tensor, weights: Tensor) -> Tensor:
    """The reduction of eq. (2): ``(1/B) Σ_i p_i L_i``, with the weights treated as constants.

    It divides by the batch size B, not by ``Σ_i p_i`` (paper eq. 2 and ABAdam's ``G`` in eq. 9; the
    authors' code computes ``sum(exp(L/λ) / (u·B) · L)``). With all weights one it is the plain mean.
    Under DDP each rank reduces its own batch; DDP's gradient averaging then gives the global
    ``(1/(world_size·B)) Σ p_i ∇L_i`` when all ranks have the same batch size.
    """
    check_per_sample("losses", losses)
    check_per_sample("weights", weights)
    if weights.shape != losses.shape:
        raise ValueError(
            f"Expected `weights` of the same shape as `losses` {tuple(losses.shape)}, "
            f"but got {tuple(weights.shape)}"
        )
    return (weights.detach().to(losses.dtype) * losses).mean()


def _global_stats(scaled_losses: Tensor, sync_dist: bool) -> tuple[Tensor, Tensor]:
    """(log of the mean of exp(z) over the global batch, number of non-finite z in the global batch).

    Under torch.distributed every rank contributes ``(logsumexp(z), count, bad)`` through one
    ``all_gather`` (in log space, so no rank overflows), and every rank gets the same result.
    """
    count = torch.tensor(float(scaled_losses.numel()), dtype=scaled_losses.dtype, device=scaled_losses.device)
    local = torch.stack(
        [
            torch.logsumexp(scaled_losses, dim=0),
            count,
            (~torch.isfinite(scaled_losses)).sum().to(scaled_losses.dtype),
        ]
    )
    size = world_size() if sync_dist else 1
    if size > 1:
        gathered = [torch.empty_like(local) for _ in range(size)]
        dist.all_gather(gathered, local)
        stats = torch.stack(gathered)
        log_sum = torch.logsumexp(stats[:, 0], dim=0)
        count, bad = stats[:, 1].sum(), stats[:, 2].sum()
    else:
        log_sum, count, bad = local[0], local[1], local[2]
    return log_sum - torch.log(count), bad


# ----------------------------------------------------------------------------------------------------
# The module.
# ----------------------------------------------------------------------------------------------------


class AttentionalWeights(nn.Module):
    """ABSGD's per-sample weights with their moving-average normalizer (Algorithm 1, eq. 8).

    ``forward(losses)`` takes the per-sample losses ``(B,)`` (detached here; gradients never flow through
    the weights) and returns the weights ``p_i = exp(L_i/λ) / s_{t+1}`` ``(B,)``, detached, in the losses'
    dtype, after updating ``s_{t+1} = (1-γ) s_t + γ α mean_i exp(L_i/λ)``. Reduce with
    :func:`weighted_mean` (``(1/B) Σ p_i L_i``, eq. 2). See the module docstring for the conventions.

    State (buffers: checkpointed, moved by ``.to()``): ``log_normalizer`` = ``log s_t`` (``-inf`` before
    the first update, the authors' ``s_0 = 0``) and ``num_updates`` (int64, normalizer updates so far).
    ``log s`` is the real state; :attr:`normalizer` = ``exp(log s)`` is for display and may be 0 or inf.

    * **Train mode** updates the state. **Eval mode** never does: it weights with the stored ``s_t``
      (as the authors' diagnostics do), or, before the first update, with the normalizer the first
      training step would produce from this batch.
    * **ERM**: ``lam = ±inf`` (or ``lam >= erm_threshold``) returns ones and leaves the state untouched.
    * **DDP**: when ``torch.distributed`` is initialised with world size > 1 (and ``sync_dist``), the batch
      mean of ``exp(L/λ)`` is the global one (an ``all_gather`` of per-rank log-sum-exps and counts): two
      ranks with B samples each produce the normalizer of one process with those 2B samples. Every rank
      must call ``forward`` the same number of times. The weights are the rank's own samples' weights.
    * **Precision**: computed in the promotion of the losses' dtype, the buffer's dtype and float32; call
      ``.double()`` on the module for float64. In float32 the weights carry a relative error of about
      ``6e-8·|L/λ|`` (as the plain formula does, since ``L/λ`` itself is rounded). Keep the module out of
      half precision (``.half()`` would round the stored ``log s``); autocast does not touch buffers.

    Args:
        lam: λ, nonzero; > 0 emphasises hard samples (imbalance, min-max DRO eq. 3), < 0 easy samples
            (noise, min-min DRO eq. 4), ``float('inf')`` is plain ERM. Settable later (stages).
        gamma: γ in (0, 1], the moving-average parameter (paper: tuned in 0.1..1; 1 uses the current
            batch only).
        alpha: α > 0, the authors' step-size factor: the update adds ``γ·α·mean``. α = 1 is the paper;
            the authors' scripts use 0.3-0.5, which scales all weights by ``1/α``.
        init: ``"zero"`` (authors: ``s_0 = 0``, so ``s_1 = γ α g_1``) or ``"first_batch"``
            (``s_1 = α g_1``).
        floor: ``None``; ``"add"`` returns ``p_i + 1`` (authors' noisy-label code); ``"max"`` returns
            ``max(p_i, 1)`` (authors' disabled "boosting" trick). ERM weights are never floored.
        erm_threshold: if given (> 0), any ``lam >= erm_threshold`` is plain ERM, as in the authors'
            scripts with :data:`AUTHORS_ERM_THRESHOLD` = 200. Default: only ±inf is ERM.
        sync_dist: use the global batch under torch.distributed (default). False: per-rank normalizers.
        check_finite: raise ValueError on non-finite losses (default). It reads one number back from the
            device each step (a synchronisation); under DDP every rank raises together. With False,
            a non-finite loss silently turns the normalizer into NaN for good.
    """

    log_normalizer: Tensor
    num_updates: Tensor

    def __init__(
        self,
        lam: float,
        gamma: float,
        *,
        alpha: float = 1.0,
        init: Literal["zero", "first_batch"] = "zero",
        floor: Literal["add", "max"] | None = None,
        erm_threshold: float | None = None,
        sync_dist: bool = True,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        self.gamma = check_interval("gamma", gamma, 0.0, 1.0, high_closed=True)
        self.alpha = check_positive("alpha", alpha)
        self.init = check_choice("init", init, INITS)
        self.floor = check_choice("floor", floor, FLOORS)
        self.erm_threshold = None if erm_threshold is None else check_positive("erm_threshold", erm_threshold)
        self.sync_dist = check_flag("sync_dist", sync_dist)
        self.check_finite = check_flag("check_finite", check_finite)
        self._lam = check_nonzero("lam", lam, allow_inf=True)
        self.register_buffer("log_normalizer", torch.tensor(-math.inf))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.int64))

    # -- hyperparameters and state ------------------------------------------------------------------

    @property
    def lam(self) -> float:
        """λ. Setting it (e.g. for the second stage) validates it and keeps the normalizer; see reset()."""
        return self._lam

    @lam.setter
    def lam(self, value: float) -> None:
        self._lam = check_nonzero("lam", value, allow_inf=True)

    @property
    def is_erm(self) -> bool:
        """True when the current λ means plain ERM (±inf, or >= erm_threshold when one is set)."""
        if math.isinf(self._lam):
            return True
        return self.erm_threshold is not None and self._lam >= self.erm_threshold

    @property
    def normalizer(self) -> Tensor:
        """``s_t = exp(log s_t)``, for display: 0 before the first update, may over/underflow."""
        return self.log_normalizer.exp()

    def reset(self) -> None:
        """Forget the normalizer (back to the state before the first update): restart ABSGD (Section 3.6)."""
        self.log_normalizer.fill_(-math.inf)
        self.num_updates.zero_()

    def extra_repr(self) -> str:
        return (
            f"lam={self._lam}, gamma={self.gamma}, alpha={self.alpha}, init={self.init!r}, "
            f"floor={self.floor!r}, erm_threshold={self.erm_threshold}"
        )

    # -- forward -------------------------------------------------------------------------------------

    def forward(self, losses: Tensor) -> Tensor:
        """Weights ``(B,)`` for the per-sample ``losses`` ``(B,)``; updates the normalizer in train mode."""
        check_per_sample("losses", losses)
        if losses.numel() == 0:
            raise ValueError("Expected a non-empty batch of per-sample losses, but got shape (0,)")
        losses = losses.detach()
        dtype = torch.promote_types(losses.dtype, self.log_normalizer.dtype)
        dtype = torch.promote_types(dtype, torch.float32)

        if self.is_erm:
            if self.check_finite:
                bad = (~torch.isfinite(losses)).sum().to(dtype)
                if self.sync_dist:
                    all_reduce_(bad)
                self._raise_if_bad(losses, bad, scaled=losses)
            return torch.ones_like(losses)

        scaled = losses.to(dtype) / self._lam
        log_batch_mean, bad = _global_stats(scaled, self.sync_dist)
        if self.check_finite:
            self._raise_if_bad(losses, bad, scaled=scaled)

        stored = self.log_normalizer.to(dtype)
        first = self.num_updates == 0
        if self.init == "first_batch":
            gamma = torch.where(first, 1.0, torch.tensor(self.gamma, dtype=dtype, device=losses.device))
        else:
            gamma = self.gamma
        if self.training:
            log_normalizer = update_log_normalizer(stored, log_batch_mean, gamma, self.alpha)
            self.log_normalizer.copy_(log_normalizer)
            self.num_updates.add_(1)
        elif bool(first):
            log_normalizer = update_log_normalizer(stored, log_batch_mean, gamma, self.alpha)
        else:
            log_normalizer = stored

        weights = attentional_weights(scaled, log_normalizer)
        if self.floor == "add":
            weights = weights + 1.0
        elif self.floor == "max":
            weights = weights.clamp(min=1.0)
        return weights.to(losses.dtype)

    def _raise_if_bad(self, losses: Tensor, bad: Tensor, *, scaled: Tensor) -> None:
        if float(bad) == 0:
            return
        local = torch.nonzero(~torch.isfinite(scaled)).flatten().tolist()
        rank = world()[1]
        if not local:
            where = f"{int(bad)} non-finite values of L/lam on another rank (this is rank {rank})"
        else:
            shown = ", ".join(str(i) for i in local[:_MAX_REPORTED_INDICES])
            hidden = len(local) - _MAX_REPORTED_INDICES
            more = f" and {hidden} more" if hidden > 0 else ""
            values = ", ".join(f"{losses[i].item()}" for i in local[:3])
            finite = bool(torch.isfinite(losses[local[0]]))
            kind = "losses whose L/lam overflows" if finite else "non-finite losses"
            where = f"{kind} at batch indices [{shown}{more}] (rank {rank}; values {values}, ...)"
        raise ValueError(
            f"Expected finite per-sample losses, but got {where} after {int(self.num_updates)} normalizer "
            f"updates (lam={self._lam}). The normalizer was left unchanged."
        )
