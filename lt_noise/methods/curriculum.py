"""The Curriculum method: any p_y-loss trained in its curriculum (sample-weight) form.

From Ou & Zhang, "A Curriculum View of Robust Loss Functions" (ICLR 2023; papers/003).
A loss of the labelled class's softmax probability alone, L(s, y) = l(p_y), has the gradient of

    L̃(s, y) = -ŵ(Δ̂_y).detach() · Δ_y                       (Eq. (1), sign as in our losses: w >= 0)

with the soft margin Δ_y = s_y - log Σ_{i≠y} exp(s_i) and the loss's sample-weighting function ŵ
scaled to unit maximum (App. B: "all loss functions are normalized to have unit maximum in sample
weights"). ``mode`` chooses where ŵ is read (§5.1.1):

- ``None``: at Δ_y, so the gradient is that of the loss divided by max w (a learning-rate change);
- ``"scale"``: at Δ_y · τ / |E[Δ_y]|,
- ``"shift"``: at Δ_y + |E[Δ_y]| - τ,

both of which move the expected initial margin E[Δ_y] to -τ, so that the initial weights no longer
vanish as the number of classes grows (the cause of MAE's and AGCE's underfitting on CIFAR-100, §5.1).
E[Δ_y] is given, taken from Eq. (4) at the model's number of classes, or measured on the first
training batches (``expected_margin``). Table 9 lists τ per noise setting on CIFAR-100.

The training objective is the method's usual reduction (the class-weighted mean of
:class:`~lt_noise.methods.Classifier`, so DRW still applies) of L̃. L̃'s value is only a gradient
surrogate, so ``train/loss`` logs the underlying loss l(p_y) instead, reduced the same way.

The diagnostics of the paper (α_t, snr, Δ_y histograms of clean and noisy samples, w(Δ_y) with the
initial Δ_y distribution) are a separate callback, :class:`lt_noise.callbacks.CurriculumDiagnostics`,
usable with any method: add it under ``trainer.callbacks``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from lt_noise.losses import Reweighted
from lt_noise.methods.classifier import Classifier

__all__ = ["Curriculum"]


class Curriculum(Classifier):
    """Train a p_y-loss in its curriculum form, optionally with the scale or shift fix (papers/003, §4-5).

    Args:
        mode: ``None`` (the loss's own weighting, unit maximum), ``"scale"`` or ``"shift"`` (§5.1.1).
        tau: τ > 0 of the fix: the margin -τ at which the fixed weighting reads E[Δ_y]. Required with a
            ``mode`` and not allowed without one. Table 9 (CIFAR-100): MAE scale 2.0 (clean) to 4.0
            (80% symmetric noise), AGCE scale 2.6 to 5.0; shift 2.0-4.0 (MAE), 4.0-5.0 (AGCE).
        expected_margin: E[Δ_y] of the fix (only its magnitude is used): ``None`` = Eq. (4) at
            ``num_classes`` with σ = 1; a number, e.g. -5.097, the value the paper measured on
            CIFAR-100 (Table 9's caption); or ``"measure"`` = the mean Δ_y over the first
            ``measure_batches`` training batches, kept in buffers so checkpoints restore it (under DDP
            the mean is global: every rank contributes its shard).
        measure_batches: how many training batches ``"measure"`` averages (default 1: only the first
            batch sees the network exactly at initialisation, which is what E[Δ_y] describes).
        **classifier_args: every argument of :class:`~lt_noise.methods.Classifier` (backbone, head,
            loss, loss_args, optimizer, ...). ``loss`` must be a loss of p_y alone (``ce`` without
            label smoothing, ``focal``, ``mae``, ``rce``, ``gce``, ``sce``, ``agce``, ``aul``, ``ael``,
            ``tce``); anything else is a ``ValueError``. Unknown names are a ``TypeError`` from
            ``Classifier``: nothing is swallowed.

    ``self.loss_fn`` is the :class:`~lt_noise.losses.Reweighted` wrapper (its ``sample_weights`` are the
    weights the diagnostics read); ``self.base_loss`` the loss it reweights.
    """

    # The representative step of tools/bench_step.py: the paper's headline setting, MAE with the scale
    # fix (E[Δ_y] from Eq. (4)); τ = 2.0 is Table 9's clean-data value.
    BENCHMARK_KWARGS: ClassVar[dict[str, Any]] = {"loss": "mae", "mode": "scale", "tau": 2.0}

    def __init__(
        self,
        *,
        mode: Literal["scale", "shift"] | None = None,
        tau: float | None = None,
        expected_margin: float | Literal["measure"] | None = None,
        measure_batches: int = 1,
        **classifier_args: Any,
    ) -> None:
        super().__init__(**classifier_args)
        # Reweighted validates the loss (p_y only), mode, tau, expected_margin and measure_batches.
        self.loss_fn = Reweighted(
            self.loss_fn, mode=mode, tau=tau, expected_margin=expected_margin, measure_batches=measure_batches
        )

    @property
    def base_loss(self) -> torch.nn.Module:
        """The p_y-loss l whose curriculum form is trained (its value is what ``train/loss`` logs)."""
        return self.loss_fn.loss

    def sample_weights(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The weights ŵ(Δ̂_y) in [0, 1] that the objective applies to each sample (B,), detached."""
        return self.loss_fn.sample_weights(logits, targets)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int):
        x, targets, index = batch
        logits = self(x)
        objective = self.reduce(self.per_sample_loss(logits, targets), targets, index)
        if not self.check_finite(objective, index):
            return None
        self.record_training_logits(logits, targets, index)
        with torch.no_grad():
            value = self.reduce(self.base_loss(logits.detach(), targets), targets, index)
        self.log("train/loss", value, prog_bar=True, batch_size=len(targets))
        self.log("train/acc", (logits.argmax(dim=1) == targets).float().mean(), batch_size=len(targets))
        return objective
