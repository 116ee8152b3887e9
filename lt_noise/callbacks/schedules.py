"""Training schedules as callbacks, so that they are visible in the config (STYLE.md habit 7): deferred
re-weighting (DRW) and ABSGD's two λ stages."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import Callback

from lt_noise.losses import class_balanced_weights
from lt_noise.models.parts import FREEZE_OPTIONS
from lt_noise.validation import check_choice, check_int, check_interval, check_nonzero

__all__ = ["ABSGDStages", "DeferredReweighting"]


class DeferredReweighting(Callback):
    """Deferred re-weighting, DRW (Cao et al. 2019, "Learning Imbalanced Datasets with Label-Distribution-
    Aware Margin Loss", Sec. 3.3): plain (uniform) weights until ``start_epoch``, then the class-balanced
    weights of the effective number of samples with ``beta`` (Cui et al. 2019) in the method's reduction.

    Sets ``pl_module.class_weights`` (a buffer of :class:`lt_noise.methods.Classifier`) at the start of
    every training epoch from the model's observed ``class_counts``; as in the LDAM-DRW code, the weights
    are normalised to sum to the number of classes and the reduction is the weighted mean.
    """

    def __init__(self, start_epoch: int = 160, beta: float = 0.9999) -> None:
        self.start_epoch = check_int("start_epoch", start_epoch, minimum=0)
        self.beta = check_interval("beta", beta, 0.0, 1.0, low_closed=True)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        weights = pl_module.class_weights
        if trainer.current_epoch < self.start_epoch:
            weights.fill_(1.0)
            return
        counts = getattr(pl_module, "class_counts", None)
        if counts is None:
            raise ValueError("Expected the model to know its `class_counts` for deferred re-weighting, but it has none")
        weights.copy_(class_balanced_weights(counts, self.beta).to(weights))


class ABSGDStages(Callback):
    """ABSGD's two-stage λ schedule (Qi et al., "Attentional-Biased Stochastic Gradient Descent", Section
    3.6): λ = ``stage1_lam`` (default ``inf``: plain momentum SGD) before ``stage2_epoch``, then the
    method's own ``lam``, "restarting" ABSGD (the normalizer is reset once, at the switch). From stage 2
    on the network may train only in part (``stage2_freeze``: ``"backbone"`` = the classifier only, "FC";
    ``"backbone_except_last_block"`` = "LB+FC"); the frozen parts keep their batch-norm statistics too.

    For :class:`lt_noise.methods.ABSGD`, in the trainer's callbacks::

        trainer:
          callbacks:
            - class_path: lt_noise.callbacks.ABSGDStages
              init_args: {stage2_epoch: 160}          # the authors' --lamda_shots 160

    ``stage2_epoch=0`` is a single stage 2 from the start (with ``stage2_freeze``, the frozen parts are
    frozen before the optimizer is built); without this callback ABSGD runs single-stage with ``lam``.

    The stage is a pure function of the epoch, set at every epoch start (and at fit setup); the switch is
    recorded in the method's ``absgd_stage`` buffer and the normalizer in its ``weighting`` buffers, both
    in the checkpoint, so that resuming from any epoch-end checkpoint replays an uninterrupted run
    exactly. The callback itself keeps no state.

    Frozen parameters get ``requires_grad=False`` at the switch; their gradients stay ``None`` (and are
    reset to ``None`` before every optimizer step), so no optimizer moves them (momentum and weight decay
    included). A mid-run freeze under DDP needs ``strategy: ddp_find_unused_parameters_true`` (the DDP
    reducer otherwise waits for their gradients); a clear error says so.

    The method provides what this callback drives: ``lam`` (stage 2's λ), ``enter_stage(stage, lam)``
    and, from :class:`lt_noise.methods.Classifier`, ``freeze_parts(what)``.
    """

    def __init__(self, stage2_epoch: int, stage1_lam: float = math.inf, stage2_freeze: str = "none") -> None:
        self.stage2_epoch = check_int("stage2_epoch", stage2_epoch, minimum=0)
        self.stage1_lam = check_nonzero("stage1_lam", stage1_lam, allow_inf=True)
        self.stage2_freeze = check_choice("stage2_freeze", stage2_freeze, FREEZE_OPTIONS)
        self._frozen_parameters: list = []

    def stage_at(self, epoch: int) -> int:
        """The stage (1 or 2) of (0-based) ``epoch``."""
        return 2 if epoch >= self.stage2_epoch else 1

    def lam_at(self, epoch: int, lam: float) -> float:
        """λ during ``epoch``: ``stage1_lam`` before ``stage2_epoch``, then the method's ``lam``."""
        return lam if self.stage_at(epoch) == 2 else self.stage1_lam

    def apply(self, pl_module: L.LightningModule, epoch: int) -> None:
        """Put ``pl_module`` in the stage of ``epoch``: its λ, a normalizer restart at a switch, the freeze."""
        stage = self.stage_at(epoch)
        pl_module.enter_stage(stage, self.lam_at(epoch, pl_module.lam))
        if stage == 2 and self.stage2_freeze != "none":
            pl_module.freeze_parts(self.stage2_freeze)  # once: later calls change nothing
            self._frozen_parameters = [p for p in pl_module.net.parameters() if not p.requires_grad]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "enter_stage", None)):
            raise ValueError(
                f"Expected an ABSGD method (with `enter_stage`) for ABSGDStages, but got {type(pl_module).__name__}"
            )
        freeze = pl_module.hparams.get("freeze", "none")
        if self.stage2_freeze != "none" and freeze != "none":
            raise ValueError(
                f"Expected only one of the model's `freeze` (from the start) and ABSGDStages' `stage2_freeze` (from "
                f"stage 2), but got freeze={freeze!r} and stage2_freeze={self.stage2_freeze!r}"
            )
        self._frozen_parameters = []
        if stage == "fit":
            # Before the optimizer is built: a stage 2 from epoch 0 freezes its parts out of it.
            self.apply(pl_module, 0)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stage2_freeze == "none" or self.stage2_epoch == 0 or trainer.world_size <= 1:
            return
        kwargs = getattr(trainer.strategy, "_ddp_kwargs", None)
        if kwargs is not None and not kwargs.get("find_unused_parameters", False):
            raise ValueError(
                "Expected `strategy: ddp_find_unused_parameters_true` with `stage2_freeze` under DDP (parameters "
                "frozen mid-run have no gradients, which plain DDP waits for), but got find_unused_parameters=False; "
                "or run stage 2 as a second run with `init_from` and `freeze`"
            )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(pl_module, trainer.current_epoch)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        # Frozen parameters must have no gradient at all (a zero one would still move them through momentum
        # and weight decay). Backward leaves them None, and so does DDP with find_unused_parameters; this
        # guards against anything else (e.g. a zero_grad without set_to_none).
        for parameter in self._frozen_parameters:
            parameter.grad = None
