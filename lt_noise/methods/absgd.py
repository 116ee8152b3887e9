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
* ``{name: adam}`` is ABAdam (Section 3.4, eq. 9). ``adam_variant="torch"`` (default) uses
  ``torch.optim.Adam``, as the authors' PyPI package ``absgd`` does (``absgd.optimizers.ABAdam``); note that
  it differs from eq. (9), which has **no bias correction** and subtracts ``η ∇r(w)`` *outside* the
  adaptive step (decoupled decay). Without bias correction the first ~1/(1-β₂) steps are larger, up to
  ``(1-β₁)/sqrt(1-β₂) ≈ 3.2`` times at the first step, so short runs differ. ``adam_variant="eq9"``
  implements eq. (9) literally (:class:`ABAdamEq9`).

Stages (Section 3.6, "two-stage training strategy for λ"): ``stage1_lam`` (default ``inf``: plain momentum
SGD) before epoch ``stage2_epoch``, then ``lam``, "restarting" ABSGD: the normalizer is reset when the
stage changes. ``stage2_epoch=0`` (default) is single-stage Algorithm 1 with ``lam`` throughout. In stage
2 the network may train only partly (``stage2_freeze``: ``"backbone"`` = the classifier only, "FC";
``"backbone_except_last_block"`` = "LB+FC"); the frozen parts also keep their batch-norm statistics.
For the large benchmarks the paper's stage 2 starts from a stage-1 model: use ``init_from`` (and
``freeze``) of the base class with ``stage2_epoch=0`` in a second run. The stage is a pure function of the
epoch and the switch is recorded in the ``absgd_stage`` buffer, so resuming from any checkpoint replays
an uninterrupted run exactly (λ is set from the epoch at every epoch start; it is not checkpoint state).

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
* **Freezing in stage 2 mid-run.** Frozen parameters get ``requires_grad=False`` at the switch; their
  gradients stay ``None`` (and are reset to ``None`` before every optimizer step), so neither SGD, Adam
  nor :class:`ABAdamEq9` moves them (momentum and weight decay included). Under DDP this needs
  ``strategy: ddp_find_unused_parameters_true`` (the DDP reducer otherwise waits for their gradients);
  a clear error says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lt_noise.methods.classifier import FREEZE_OPTIONS, Classifier
from lt_noise.weighting import AttentionalWeights, weighted_mean

__all__ = ["ADAM_VARIANTS", "ABAdamEq9", "ABSGD"]

ADAM_VARIANTS = ("torch", "eq9")
# G_0 of eq. (9), "a constant to increase stability"; the paper gives no value: torch.optim.Adam's eps.
EQ9_EPS = 1e-8


class ABAdamEq9(torch.optim.Optimizer):
    """ABAdam exactly as eq. (9) of the ABSGD paper (Section 3.4)::

        v_{t+1} = β₁ v_t + (1 - β₁) G          u_{t+1} = β₂ u_t + (1 - β₂) G²
        w_{t+1} = w_t - η ( v_{t+1} / (sqrt(u_{t+1}) + G₀) + ∇r(w_t) ),    ∇r(w) = weight_decay · w

    with ``G`` the parameter's gradient (of ``(1/B) Σ p_i L_i``). Unlike ``torch.optim.Adam`` there is no
    bias correction of ``v``/``u``, and the weight decay is decoupled (outside the adaptive step; as
    ``torch.optim.AdamW`` has it). Parameters whose gradient is ``None`` are not touched.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = EQ9_EPS,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"Expected argument `lr` > 0, but got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Expected argument `betas` to be two numbers in [0, 1), but got {betas}")
        if not eps > 0:
            raise ValueError(f"Expected argument `eps` > 0, but got {eps}")
        if weight_decay < 0:
            raise ValueError(f"Expected argument `weight_decay` >= 0, but got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                v, u = state["exp_avg"], state["exp_avg_sq"]
                v.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                u.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                update = v / (u.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(param, alpha=group["weight_decay"])  # ∇r(w_t), at the current weights
                param.add_(update, alpha=-group["lr"])
        return loss


def _check_number(name: str, value: object, *, allow_inf: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"Expected argument `{name}` to be a real number, but got {value!r}")
    if not allow_inf and math.isinf(value):
        raise ValueError(f"Expected argument `{name}` to be finite, but got {value}")
    return float(value)


class ABSGD(Classifier):
    """ABSGD (momentum SGD) / ABAdam (Adam) with the two-stage λ schedule; see the module docstring.

    Every argument of :class:`Classifier` is accepted (keyword-only) and passed on; these are ABSGD's own:

    Args:
        lam: λ of stage 2 (the whole run when ``stage2_epoch=0``), nonzero: > 0 emphasises large losses
            (min-max DRO, eq. 3: imbalance; the paper tunes 1..10 on CIFAR, 10..30 on ImageNet-LT and
            friends), < 0 small losses (min-min DRO, eq. 4: label noise; -0.1..-3 on CIFAR, -1..-15 on
            Clothing1M); ``inf`` is plain ERM.
        gamma: γ in (0, 1], the moving-average parameter of the normalizer (Algorithm 1, Step 4; the
            paper's best on CIFAR-LT is 0.5, Fig. 4).
        alpha: the authors' step-size factor α > 0 (``u = (1-γ) u + γ α mean``): scales every weight by
            1/α. 1 is the paper's Algorithm 1; the authors' scripts use 0.3-0.5.
        init: ``"zero"``: the authors' ``s_0 = 0`` (first weights average 1/(γα)); ``"first_batch"``:
            ``s_1 = α g_1`` (first weights average 1/α). Applies again after each stage restart.
        floor: ``None``; ``"add"``: weights ``p_i + 1`` (the authors' noisy-label code, Tables 6-7);
            ``"max"``: ``max(p_i, 1)``. See :class:`lt_noise.weighting.AttentionalWeights`.
        stage1_lam: λ before ``stage2_epoch`` (default ``inf``: momentum SGD, Section 3.6; the authors'
            scripts' ``--init_lamda 200``). The ablation of Fig. 3 uses 100 then 1.
        stage2_epoch: first (0-based) epoch of stage 2, >= 0; 0 means a single stage with ``lam``.
        stage2_freeze: what does not train from stage 2 on: ``"none"``, ``"backbone"`` (classifier only)
            or ``"backbone_except_last_block"`` (last block and classifier). Exclusive with ``freeze``.
        adam_variant: with ``optimizer: {name: adam}``: ``"torch"`` (``torch.optim.Adam``, the authors'
            package) or ``"eq9"`` (the paper's eq. 9 literally, :class:`ABAdamEq9`).

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
        lam = _check_number("lam", lam, allow_inf=True)
        stage1_lam = _check_number("stage1_lam", stage1_lam, allow_inf=True)
        for name, value in (("lam", lam), ("stage1_lam", stage1_lam)):
            if value == 0.0:
                raise ValueError(f"Expected argument `{name}` to be a nonzero number or ±inf, but got {value}")
        if isinstance(stage2_epoch, bool) or not isinstance(stage2_epoch, int) or stage2_epoch < 0:
            raise ValueError(f"Expected argument `stage2_epoch` to be an int >= 0, but got {stage2_epoch!r}")
        if stage2_freeze not in FREEZE_OPTIONS:
            raise ValueError(f"Expected argument `stage2_freeze` in {FREEZE_OPTIONS}, but got {stage2_freeze!r}")
        if stage2_freeze != "none" and kwargs.get("freeze", "none") != "none":
            raise ValueError(
                f"Expected only one of `freeze` (from the start) and `stage2_freeze` (from stage 2), but got "
                f"freeze={kwargs['freeze']!r} and stage2_freeze={stage2_freeze!r}"
            )
        if adam_variant not in ADAM_VARIANTS:
            raise ValueError(f"Expected argument `adam_variant` in {ADAM_VARIANTS}, but got {adam_variant!r}")
        super().__init__(**kwargs)
        if adam_variant == "eq9" and self.optimizer_config.name != "adam":
            raise ValueError(
                f"Expected optimizer name 'adam' with adam_variant='eq9' (ABAdam, eq. 9), but got "
                f"{self.optimizer_config.name!r}"
            )
        self.lam = lam
        self.stage1_lam = stage1_lam
        self.stage2_epoch = stage2_epoch
        self.stage2_freeze = stage2_freeze
        self.adam_variant = adam_variant
        first_stage = self.stage_at(0)
        # gamma, alpha, init and floor are validated by AttentionalWeights. Its own finiteness check is
        # off: the base class's check_finite on the reduced loss covers it (see the module docstring).
        self.weighting = AttentionalWeights(
            self.lam_at(0), gamma, alpha=alpha, init=init, floor=floor, sync_dist=True, check_finite=False
        )
        # The stage (1 or 2) whose λ and normalizer are in effect: a switch resets the normalizer once.
        self.register_buffer("absgd_stage", torch.tensor(first_stage, dtype=torch.int64))
        self._stage2_frozen = False
        self._frozen_parameters: list[nn.Parameter] = []
        if first_stage == 2:
            self._apply_stage2_freeze()
        self.last_weights: Tensor | None = None
        self._normalizer_before: tuple[Tensor, Tensor] | None = None

    # ----------------------------------------------------------------------------------------------
    # The λ schedule (Section 3.6): a pure function of the epoch
    def stage_at(self, epoch: int) -> int:
        """The stage (1 or 2) of (0-based) ``epoch``."""
        return 2 if epoch >= self.stage2_epoch else 1

    def lam_at(self, epoch: int) -> float:
        """λ during (0-based) ``epoch``: ``stage1_lam`` before ``stage2_epoch``, then ``lam``."""
        return self.lam if self.stage_at(epoch) == 2 else self.stage1_lam

    def _apply_stage2_freeze(self) -> None:
        if self.stage2_freeze != "none" and not self._stage2_frozen:
            self.freeze_parts(self.stage2_freeze)
            self._stage2_frozen = True
            self._frozen_parameters = [p for p in self.net.parameters() if not p.requires_grad]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        super().on_before_optimizer_step(optimizer)
        # Frozen parameters must have no gradient at all (a zero one would still move them through momentum
        # and weight decay). Backward leaves them None, and so does DDP with find_unused_parameters (checked
        # by the DDP test); this guards against anything else (e.g. a zero_grad without set_to_none).
        for parameter in self._frozen_parameters:
            parameter.grad = None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.stage2_freeze == "none" or self.stage2_epoch == 0 or self.trainer.world_size <= 1:
            return
        kwargs = getattr(self.trainer.strategy, "_ddp_kwargs", None)
        if kwargs is not None and not kwargs.get("find_unused_parameters", False):
            raise ValueError(
                "Expected `strategy: ddp_find_unused_parameters_true` with `stage2_freeze` under DDP (parameters "
                "frozen mid-run have no gradients, which plain DDP waits for), but got find_unused_parameters=False; "
                "or run stage 2 as a second run with `init_from` and `freeze`"
            )

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        epoch = self.current_epoch
        stage = self.stage_at(epoch)
        self.weighting.lam = self.lam_at(epoch)
        if int(self.absgd_stage) != stage:  # one host read per epoch
            self.weighting.reset()  # "restarting" ABSGD with the new λ (Section 3.6)
            self.absgd_stage.fill_(stage)
        if stage == 2:
            self._apply_stage2_freeze()

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
    # Optimisation and diagnostics
    def configure_optimizers(self):
        if self.adam_variant != "eq9":
            return super().configure_optimizers()
        config = self.optimizer_config
        optimizer = ABAdamEq9(
            self.trainable_parameters(), lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay
        )
        scheduler = self.lr_schedule.build(optimizer, self.trainer.max_epochs if self._trainer else None)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
