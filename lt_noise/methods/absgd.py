"""ABSGD and ABAdam: attentional-biased per-sample weights on top of :class:`Classifier`.

Paper: *Attentional-Biased Stochastic Gradient Descent* (``papers/004``), Algorithm 1 and eq. (2)::

    s_{t+1} = (1 - γ) s_t + γ (1/B) Σ_i exp(L_i / λ)          p_i = exp(L_i / λ) / s_{t+1}
    w_{t+1} = w_t - η ((1/B) Σ_i p_i ∇L_i + ∇r(w_t)) + β (w_t - w_{t-1})

The weights come from :class:`lt_noise.weighting.AttentionalWeights` (log-space normalizer, global under
DDP) and the objective handed to the optimizer is ``(1/B) Σ_i p_i L_i`` with the weights held constant
(:func:`lt_noise.weighting.weighted_mean`); that reduction is this class's :meth:`ABSGD.reduce`, the only
place where losses are reduced. The optimizer comes from the ``optimizer`` settings of the base class:

* ``{name: sgd, momentum: 0.9}`` (the default) is ABSGD, eq. (2): ``torch.optim.SGD`` with momentum is the
  heavy-ball update of eq. (2) written with a velocity buffer, with ``r(w) = wd/2 ||w||²``.
* ``{name: adam}`` is ABAdam (Section 3.4, eq. 9) as the authors' PyPI package ``absgd`` runs it
  (``absgd.optimizers.ABAdam`` is ``torch.optim.Adam``); note that it differs from eq. (9), which has **no
  bias correction** and subtracts ``η ∇r(w)`` *outside* the adaptive step (decoupled decay). Without bias
  correction the first ~1/(1-β₂) steps are larger, up to ``(1-β₁)/sqrt(1-β₂) ≈ 3.2`` times at the first
  step, so short runs differ. ``{name: abadam_eq9}`` is eq. (9) literally
  (:class:`lt_noise.optim.ABAdamEq9`, a named optimizer of :mod:`lt_noise.optim`).

Stages (Section 3.6, "two-stage training strategy for λ") are a schedule, the callback
:class:`lt_noise.callbacks.ABSGDStages` in the trainer's callbacks: ``stage1_lam`` (default ``inf``: plain
momentum SGD) before epoch ``stage2_epoch``, then this method's ``lam``, "restarting" ABSGD: the
normalizer is reset when the stage changes; from stage 2 the network may train only partly
(``stage2_freeze``). Without the callback ABSGD is single-stage Algorithm 1 with ``lam`` throughout. For
the large benchmarks the paper's stage 2 starts from a stage-1 model: use ``init_from`` (and ``freeze``)
of the base class in a second run. The stage in effect is recorded in the ``absgd_stage`` buffer (with
the normalizer in ``weighting``'s buffers), so resuming from any checkpoint replays an uninterrupted run
exactly. The method's own ``stage1_lam``, ``stage2_epoch``, ``stage2_freeze`` (and ``adam_variant``)
arguments of earlier versions still work, deprecated: they build that callback (and that optimizer).

Conventions settled here (the paper is silent; the authors' code at github.com/qiqi-helloworld/ABSGD,
files ``mylosses.py``, ``train.py``, ``myutils.py``, ``noisy_label/loss.py``, was read, not copied):

* **Class-balanced losses** (Table 2: ABSGD + CB-CE/CB-Focal/CB-LDAM). The authors weight the per-sample
  loss by the class weight *before* the attentional weighting: ``L_i = w_{y_i} ℓ_i`` (``CrossEntropyLoss(
  weight=..., reduction='none')``), so the class weight is inside ``exp(L_i/λ)`` too, and the reduction is
  ``(1/B) Σ p_i w_{y_i} ℓ_i`` (no division by ``Σ w``). Here the class weights are the base class's
  ``class_weights`` buffer, set by :class:`lt_noise.callbacks.DeferredReweighting` (the authors'
  ``--train_rule reweight --CB_shots 160``: effective-number weights normalised to sum to C from that
  epoch). With all-ones class weights this is Algorithm 1 exactly.
* **ERM stage.** When λ means ERM (``±inf``) the reduction is the base class's (class-weighted mean),
  so a λ = inf step is exactly a plain :class:`Classifier` step.
* **Non-finite losses.** The weights are computed without their own finiteness check (no extra host
  synchronisation per step); a non-finite loss makes the reduced loss non-finite, which the base class's
  ``check_finite`` reports (step and sample indices) or skips; a skipped batch's normalizer update is
  undone, so "skip" mode goes on with the normalizer of before that batch.
* **Freezing in stage 2 mid-run** (:class:`lt_noise.callbacks.ABSGDStages`). Frozen parameters get
  ``requires_grad=False`` at the switch; their gradients stay ``None`` (and are reset to ``None`` before
  every optimizer step), so no optimizer moves them (momentum and weight decay included). Under DDP
  this needs ``strategy: ddp_find_unused_parameters_true``; a clear error says so.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Literal

import torch
from torch import Tensor

from lt_noise.callbacks.schedules import ABSGDStages
from lt_noise.methods.classifier import Classifier
from lt_noise.optim import ABAdamEq9
from lt_noise.validation import check_choice, check_nonzero
from lt_noise.weighting import AttentionalWeights, weighted_mean

__all__ = ["ADAM_VARIANTS", "ABAdamEq9", "ABSGD"]

# The deprecated `adam_variant` argument: "torch" = optimizer name "adam", "eq9" = name "abadam_eq9".
ADAM_VARIANTS = ("torch", "eq9")


class ABSGD(Classifier):
    """ABSGD (momentum SGD) / ABAdam (Adam): attentional weights in the reduction; see the module docstring.

    Every argument of :class:`Classifier` is accepted (keyword-only) and passed on; these are ABSGD's own:

    Args:
        lam: λ (of stage 2 when :class:`lt_noise.callbacks.ABSGDStages` runs the two stages), nonzero:
            > 0 emphasises large losses (min-max DRO, eq. 3: imbalance; the paper tunes 1..10 on CIFAR,
            10..30 on ImageNet-LT and friends), < 0 small losses (min-min DRO, eq. 4: label noise;
            -0.1..-3 on CIFAR, -1..-15 on Clothing1M); ``inf`` is plain ERM.
        gamma: γ in (0, 1], the moving-average parameter of the normalizer (Algorithm 1, Step 4; the
            paper's best on CIFAR-LT is 0.5, Fig. 4).
        alpha: the authors' step-size factor α > 0 (``u = (1-γ) u + γ α mean``): scales every weight by
            1/α. 1 is the paper's Algorithm 1; the authors' scripts use 0.3-0.5.
        init: ``"zero"``: the authors' ``s_0 = 0`` (first weights average 1/(γα)); ``"first_batch"``:
            ``s_1 = α g_1`` (first weights average 1/α). Applies again after each stage restart.
        floor: ``None``; ``"add"``: weights ``p_i + 1`` (the authors' noisy-label code, Tables 6-7);
            ``"max"``: ``max(p_i, 1)``. See :class:`lt_noise.weighting.AttentionalWeights`.
        stage1_lam, stage2_epoch, stage2_freeze: deprecated; the arguments of
            :class:`lt_noise.callbacks.ABSGDStages`, which they build (a DeprecationWarning says how).
        adam_variant: deprecated; ``"eq9"`` with ``optimizer: {name: adam}`` is ``optimizer: {name:
            abadam_eq9}``.

    Attributes:
        weighting: the :class:`~lt_noise.weighting.AttentionalWeights` (its normalizer is checkpointed).
        last_weights: the attentional weights ``(B,)`` of the last training batch (``None`` in an ERM
            stage, meaning all ones), for diagnostics such as
            :class:`lt_noise.callbacks.AttentionalWeightFigures`.
    """

    # The per-class attentional weights over training (the paper's Fig. 4) in every run.
    DEFAULT_CALLBACKS = Classifier.DEFAULT_CALLBACKS + ("AttentionalWeightFigures",)

    def __init__(
        self,
        *,
        lam: float = 1.0,
        gamma: float = 0.5,
        alpha: float = 1.0,
        init: Literal["zero", "first_batch"] = "zero",
        floor: Literal["add", "max"] | None = None,
        stage1_lam: float = math.inf,
        stage2_epoch: int = 0,
        stage2_freeze: Literal["none", "backbone", "backbone_except_last_block"] = "none",
        adam_variant: Literal["torch", "eq9"] = "torch",
        **kwargs: Any,
    ) -> None:
        # Every other keyword goes to Classifier, whose keyword-only signature rejects misspelled ones.
        lam = check_nonzero("lam", lam, allow_inf=True)
        # The stages as the callback (validated there); built only when the deprecated arguments ask for two
        # stages or a stage-2 freeze (the defaults are the single stage the method runs without a callback).
        stages = ABSGDStages(stage2_epoch=stage2_epoch, stage1_lam=stage1_lam, stage2_freeze=stage2_freeze)
        if stage2_freeze != "none" and kwargs.get("freeze", "none") != "none":
            raise ValueError(
                f"Expected only one of `freeze` (from the start) and `stage2_freeze` (from stage 2), but got "
                f"freeze={kwargs['freeze']!r} and stage2_freeze={stage2_freeze!r}"
            )
        check_choice("adam_variant", adam_variant, ADAM_VARIANTS)
        super().__init__(**kwargs)
        if adam_variant == "eq9" and self.optimizer_config.name != "adam":
            raise ValueError(
                f"Expected optimizer name 'adam' with adam_variant='eq9' (ABAdam, eq. 9), but got "
                f"{self.optimizer_config.name!r}"
            )
        self.lam = lam
        self.adam_variant = adam_variant
        # gamma, alpha, init and floor are validated by AttentionalWeights. Its own finiteness check is
        # off: the base class's check_finite on the reduced loss covers it (see the module docstring).
        self.weighting = AttentionalWeights(lam, gamma, alpha=alpha, init=init, floor=floor, sync_dist=True, check_finite=False)
        # The stage (1 or 2) whose λ and normalizer are in effect: a switch resets the normalizer once. Without
        # a stage schedule the whole run is stage 2 (λ = lam).
        self.register_buffer("absgd_stage", torch.tensor(2, dtype=torch.int64))
        self.stage_schedule: ABSGDStages | None = None
        if stage2_epoch != 0 or stage2_freeze != "none":
            warnings.warn(
                f"ABSGD's stage1_lam / stage2_epoch / stage2_freeze arguments are deprecated: give the stages as the "
                f"callback lt_noise.callbacks.ABSGDStages(stage2_epoch={stage2_epoch}, stage1_lam={stage1_lam}, "
                f"stage2_freeze={stage2_freeze!r}) in the trainer's callbacks",
                DeprecationWarning,
                stacklevel=2,
            )
            self.stage_schedule = stages
            stages.apply(self, 0)  # the first stage from construction on, as before (a stage-2 freeze too)
        if adam_variant == "eq9":
            warnings.warn(
                "ABSGD's adam_variant='eq9' is deprecated: use optimizer {name: abadam_eq9}", DeprecationWarning, stacklevel=2
            )
        self.last_weights: Tensor | None = None
        self._normalizer_before: tuple[Tensor, Tensor] | None = None

    # ----------------------------------------------------------------------------------------------
    # The stages (driven by lt_noise.callbacks.ABSGDStages)
    def enter_stage(self, stage: int, lam: float) -> None:
        """Use λ = ``lam`` from now on; entering another stage than the current one restarts the normalizer
        (Section 3.6) and records the stage in the ``absgd_stage`` buffer."""
        self.weighting.lam = lam
        if int(self.absgd_stage) != stage:  # one host read per epoch
            self.weighting.reset()
            self.absgd_stage.fill_(stage)

    def configure_callbacks(self) -> list:
        callbacks = super().configure_callbacks()
        if self.stage_schedule is None:
            return callbacks
        present = self.trainer.callbacks if self._trainer is not None else []
        if any(isinstance(c, ABSGDStages) and c is not self.stage_schedule for c in present):
            raise ValueError(
                "Expected the ABSGD stages either as the callback ABSGDStages or as the method's deprecated "
                "stage1_lam / stage2_epoch / stage2_freeze arguments, but got both"
            )
        return callbacks + ([] if self.stage_schedule in present else [self.stage_schedule])

    # ----------------------------------------------------------------------------------------------
    # The reduction (eq. 2)
    def reduce(self, losses: Tensor, targets: Tensor, index: Tensor) -> Tensor:
        """``(1/B) Σ_i p_i L_i`` with ``L_i = w_{y_i} ℓ_i`` (class weights, all ones unless DRW sets them)
        and ``p_i`` from :attr:`weighting`; the base class's reduction when λ means ERM."""
        if self.weighting.is_erm:
            self.last_weights = None
            return super().reduce(losses, targets, index)
        losses = losses * self.class_weights[targets]
        if self.weighting.training and self.on_nonfinite == "skip":
            self._normalizer_before = (self.weighting.log_normalizer.clone(), self.weighting.num_updates.clone())
        weights = self.weighting(losses)
        self.last_weights = weights
        return weighted_mean(losses, weights)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int):
        self._normalizer_before = None
        loss = super().training_step(batch, batch_idx)
        if loss is None and self._normalizer_before is not None:
            # a skipped (non-finite) batch: undo its normalizer update
            log_normalizer, num_updates = self._normalizer_before
            self.weighting.log_normalizer.copy_(log_normalizer)
            self.weighting.num_updates.copy_(num_updates)
            self.last_weights = None
        self._normalizer_before = None
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if not self.weighting.is_erm:  # log s_t once per epoch (a per-step log would cost every step)
            self.log("train/absgd_log_normalizer", self.weighting.log_normalizer.detach().clone())

    # ----------------------------------------------------------------------------------------------
    # Optimisation
    def configure_optimizers(self):
        if self.adam_variant != "eq9":
            return super().configure_optimizers()
        # The deprecated adam_variant="eq9": the named optimizer abadam_eq9 with the same settings.
        optimizer = dataclasses.replace(self.optimizer_config, name="abadam_eq9").build(self.trainable_parameters())
        scheduler = self.lr_schedule.build(optimizer, self.trainer.max_epochs if self._trainer else None)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
