"""Mixup (Zhang et al., ICLR 2018) as a training option: :func:`draw_mixup`, :func:`mixup_partners` and
:class:`MixupClassifier`.

A mixup step trains on convex combinations of pairs of images of the batch::

    λ ~ Beta(α, α),   π = a random pairing of the batch,   x̃_i = λ x_i + (1 - λ) x_π(i)
    loss = λ · R(L(f(x̃), y), y) + (1 - λ) · R(L(f(x̃), y_π), y_π)

with ``L`` the per-sample loss and ``R`` the method's reduction (:meth:`Classifier.reduce`). With the
default all-ones class weights ``R`` is the mean, so the loss is the batch mean of the per-sample
``λ L(y) + (1 - λ) L(y_π)``: the ``mixup_criterion`` of the public mixup / MiSLAS code
(dvlab-research/MiSLAS, ``methods.py``; read, not copied), which mixes the two reduced losses the same way.
Reducing each label set with its own class weights keeps DRW's weights meaningful for both labels.

Conventions: one λ per step; ``α = 0`` turns mixup off (the MiSLAS code's ``lam = 1``); the pairing is a
uniformly random permutation π of the batch, applied to the batch ordered by training index (any order of
the same samples gives the same pairs).

Randomness and distribution: λ and π are drawn from a NumPy generator seeded by ``(seed, global_step)``
(``seed`` is the base class's step seed, saved in checkpoints), the same on every rank. So a resumed run
replays the uninterrupted one exactly, and with ``mixup_scope: global`` (default) a DDP run mixes exactly
as one process does with the same global batch: each rank all-gathers the batch (images, labels, indices),
orders it by index, and mixes its own samples with their partners anywhere in the global batch (DESIGN.md
§6 parity, at the cost of one all-gather of the images per step). ``mixup_scope: local`` pairs within each
rank's shard only, as the MiSLAS code does on each GPU (no communication; then 2 processes of batch B
are not bitwise one process of batch 2B). The generator is not torch's global RNG, because that one is
reseeded per rank.

Training dynamics (:meth:`Classifier.record_training_logits`, read by the label-issue report): the logits
of the mixed image ``x̃_i`` are recorded for the sample that dominates it, ``i`` when ``λ >= 1/2`` and
``π(i)`` otherwise; mixing shrinks the margins, so the scores of a mixup run are noisier than without.

Users: PAL's Table 2 row "CE+mixup+PAL" and MiSLAS's stage 1 (``mixup_alpha`` 1.0 on CIFAR, 0.2 on
ImageNet-LT; MiSLAS configs).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from lt_noise.methods.classifier import Classifier
from lt_noise.seeding import sample_seed
from lt_noise.validation import check_choice, check_interval

__all__ = ["MIXUP_SCOPES", "MixupClassifier", "check_mixup_alpha", "draw_mixup", "mixup_partners"]

MIXUP_SCOPES = ("global", "local")
# Key of mixup's random stream (mixed with the step seed by sample_seed); distinct from the base class's
# per-step stream and from the augmentation streams.
_MIXUP_STREAM = 0x3A1C


def check_mixup_alpha(alpha: Any) -> float:
    """``alpha`` as a float, or a ValueError unless it is a finite number >= 0 (0 = no mixup)."""
    return check_interval("mixup_alpha", alpha, 0.0, math.inf, low_closed=True)


def draw_mixup(alpha: float, size: int, seed: int) -> tuple[float, np.ndarray]:
    """``(λ, π)``: ``λ ~ Beta(alpha, alpha)`` and a uniformly random permutation ``π`` of ``range(size)``,
    from ``np.random.default_rng(seed)``; ``alpha = 0`` gives ``λ = 1`` and the identity."""
    alpha = check_mixup_alpha(alpha)
    if alpha == 0.0:
        return 1.0, np.arange(size)
    rng = np.random.default_rng(seed)
    lam = float(rng.beta(alpha, alpha))
    return lam, rng.permutation(size)


def mixup_partners(index: Tensor, permutation: np.ndarray | Tensor) -> Tensor:
    """For each row of a batch with training indices ``index``, the row of its mixup partner.

    The batch is put in canonical order (by training index; stable for repeated indices, which carry
    identical data), and the sample at canonical position ``c`` is paired with the one at canonical
    position ``π(c)``, so the pairs do not depend on the order in which the samples arrived.
    """
    order = torch.argsort(index.detach().cpu(), stable=True)
    permutation = torch.as_tensor(permutation, dtype=torch.long)
    if permutation.shape != order.shape:
        raise ValueError(f"Expected a permutation of {len(order)} positions, but got shape {tuple(permutation.shape)}")
    partner = torch.empty_like(order)
    partner[order] = order[permutation]
    return partner.to(index.device)


class MixupClassifier(Classifier):
    """ERM with mixup (the module docstring): MiSLAS's stage 1, and the mixup option of PAL and FNPAL.

    Every argument of :class:`Classifier` is accepted (keyword-only) and passed on.

    Args:
        mixup_alpha: ``α >= 0`` of ``λ ~ Beta(α, α)``; 0 (default) trains without mixup, exactly as
            :class:`Classifier`. MiSLAS: 1.0 on CIFAR-LT, 0.2 on ImageNet-LT.
        mixup_scope: under DDP, pair samples across the global batch (``"global"``, default: the same
            run as one process) or within each rank's shard (``"local"``: no all-gather).
    """

    # A representative step for tools/bench_step.py: with mixup (the default, 0, is a plain Classifier).
    BENCHMARK_KWARGS = {"mixup_alpha": 1.0}

    def __init__(self, *, mixup_alpha: float = 0.0, mixup_scope: Literal["global", "local"] = "global", **kwargs: Any) -> None:
        # Every other keyword goes to Classifier, whose keyword-only signature rejects misspelled ones.
        alpha = check_mixup_alpha(mixup_alpha)
        check_choice("mixup_scope", mixup_scope, MIXUP_SCOPES)
        super().__init__(**kwargs)
        self.mixup_alpha = alpha
        self.mixup_scope = mixup_scope

    def mixup_loss(self, logits: Tensor, targets: Tensor, index: Tensor, partner_targets: Tensor,
                   partner_index: Tensor, lam: float) -> Tensor:
        """``λ R(L(logits, y), y) + (1 - λ) R(L(logits, y_π), y_π)`` (the module docstring)."""
        loss = lam * self.reduce(self.per_sample_loss(logits, targets), targets, index)
        if lam < 1.0:
            partner_loss = self.per_sample_loss(logits, partner_targets)
            loss = loss + (1.0 - lam) * self.reduce(partner_loss, partner_targets, partner_index)
        return loss

    def _global_batch(self, x: Tensor, targets: Tensor, index: Tensor) -> tuple[Tensor, Tensor, Tensor, int]:
        """The batch the pairs are drawn from, and the offset of this rank's samples in it."""
        world = self.trainer.world_size if self._trainer is not None else 1
        if world == 1 or self.mixup_scope == "local":
            return x, targets, index, 0
        gathered = [self.all_gather(t).flatten(0, 1) for t in (x, targets, index)]
        return gathered[0], gathered[1], gathered[2], self.global_rank * len(x)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int):
        if self.mixup_alpha == 0.0:
            return super().training_step(batch, batch_idx)
        x, targets, index = batch
        all_x, all_targets, all_index, offset = self._global_batch(x, targets, index)
        seed = sample_seed(self._seed ^ _MIXUP_STREAM, self.global_step, 0)  # the same on every rank
        lam, permutation = draw_mixup(self.mixup_alpha, len(all_index), seed)
        partner = mixup_partners(all_index, permutation)[offset : offset + len(x)]  # rows of the global batch
        mixed = lam * x + (1.0 - lam) * all_x[partner]
        partner_targets, partner_index = all_targets[partner], all_index[partner]
        logits = self(mixed)
        loss = self.mixup_loss(logits, targets, index, partner_targets, partner_index, lam)
        if not self.check_finite(loss, index):
            return None
        # The training dynamics of each sample (Classifier.record_training_logits): a mixed image's logits
        # go to the sample that dominates it, the row's own (λ >= 1/2) or its partner; λ is one per step,
        # so every sample of the (global) batch gets exactly one record per step.
        if lam >= 0.5:
            self.record_training_logits(logits, targets, index)
        else:
            self.record_training_logits(logits, partner_targets, partner_index)
        predicted = logits.argmax(dim=1)
        accuracy = lam * (predicted == targets).float().mean() + (1.0 - lam) * (predicted == partner_targets).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(targets))
        self.log("train/acc", accuracy, batch_size=len(targets))
        return loss

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.trainer.world_size > 1:  # every rank must draw the same λ and pairs
            self._seed = int(self.trainer.strategy.broadcast(self._seed, src=0))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # The seed of mixup's draws: a resumed run (perhaps started with another global seed) draws the same.
        checkpoint["lt_noise"]["mixup"] = {"seed": int(self._seed)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint["lt_noise"].get("mixup")
        if saved is not None:
            self._seed = int(saved["seed"])
