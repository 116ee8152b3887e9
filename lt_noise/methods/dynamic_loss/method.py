"""The Dynamic Loss LightningModule: its hyperparameters, the dynamic loss, the bilevel step, the phases of
an epoch and the checkpoint (the algorithm and its choices: the package docstring, docs/dynamic_loss.md).

Engineering (DESIGN.md §7):

* Loaders. At ``setup("fit")`` the method registers :meth:`DynamicLoss.epoch_train_dataloader` with the
  datamodule (:meth:`~lt_noise.data.modules.LTNoiseDataModule.register_epoch_loader`) and sets
  ``reload_dataloaders_every_n_epochs = 1``, so Lightning asks for a fresh loader at every epoch start,
  *before* it iterates it (and, after a resume, before the first epoch). That loader ranks, splits
  (:mod:`.ranking`) and serves the epoch plan (:mod:`.plan`); Lightning's progress bar, logging,
  validation, DDP sharding and checkpoints all keep working; nothing is iterated behind its back.
  Reloading every epoch also rebuilds the validation loader every epoch (a cheap extra).
* DDP. The meta-net is kept out of DDP (``_ddp_params_and_buffers_to_ignore``), its initial weights are
  broadcast at fit start, its gradients are all-reduced and averaged here. The virtual step runs
  ``torch.func.functional_call`` on the unwrapped ``self.net`` with *detached* copies of the weights, so
  no DDP hook fires; its gradient is averaged with a differentiable all-reduce
  (:func:`lt_noise.distributed.global_mean`) so that the virtual step uses the global batch (a 2-process
  run then equals a 1-process run with the doubled batch). The real classifier step uses
  ``manual_backward`` so that DDP syncs it as usual. The meta optimizer is stepped directly (not through
  ``toggle_optimizer``, which would freeze the classifier), so ``global_step`` counts classifier steps
  only (meta, warm-up and fine-tuning steps). The per-epoch LR schedule is stepped after the epoch's last
  batch, before the epoch-end validation (where Lightning steps automatic schedules), so that a
  checkpoint written after validation holds the next epoch's LR.
* Seeds. The split (``SeedSequence([seed, epoch])``) and the Gumbel noise use the method's seed (the
  global seed at construction, kept in the checkpoint); batch orders and augmentations use the
  datamodule's seed, as its own loaders do. The Gumbel noise of step t is drawn for the whole global
  batch from a generator seeded by ``(seed, t)`` and each rank takes its own rows.
* Exact resume (from an epoch-end checkpoint). The meta-net, its Adam state, the classifier optimizer
  and scheduler are in the checkpoint; the method seed too. The ranking, bins and split of an epoch are
  regenerated from the restored weights and ``(seed, epoch)``. Resuming from a mid-epoch checkpoint is
  not exact (the split would be re-ranked with mid-epoch weights).
* Precision. The classifier's forwards (virtual step, meta loss, real step, ranking) run under the
  trainer's precision (bf16 autocast included; losses are computed in float32, the loss modules upcast);
  the meta-net runs outside autocast in its own dtype (float32, or float64 under ``64-true``): under bf16
  autocast its sigmoid would round g to exactly 1 for logits above ~6, and the corrector's gradient to
  exactly 0. fp16 with a gradient scaler is not supported: the second-order gradient is not scaled.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import DataLoader

from lt_noise.data.modules.base import LTNoiseDataModule
from lt_noise.data.sampling import META_FRACTION, PRIMARY_FRACTION, RANK_BINS, EpochSplit, meta_split_sizes
from lt_noise.distributed import all_reduce_mean_, global_mean, world, world_size
from lt_noise.methods.classifier import Classifier
from lt_noise.methods.dynamic_loss.functional import (
    corrector_pretraining_loss,
    gumbel_max_labels,
    gumbel_noise,
    sgd_virtual_update,
)
from lt_noise.methods.dynamic_loss.plan import PHASES, BatchDescriptor, batch_plan_loader, epoch_plan
from lt_noise.methods.dynamic_loss.ranking import (
    check_same_split_on_all_ranks,
    rank_training_set,
    ranking_loader,
    split_epoch,
)
from lt_noise.models.metanet import HIDDEN_DIM, MetaNet, correct_labels
from lt_noise.models.network import last_block
from lt_noise.seeding import sample_seed
from lt_noise.validation import check_choice, check_int, check_interval, check_positive

__all__ = ["CORRECTOR_PRETRAIN_ITERS", "META_LR", "WARMUP_EPOCHS", "DynamicLoss"]

# Paper Table 7, "MetaNet": Adam with a fixed learning rate 3e-3 and weight decay 0, for every dataset.
META_LR = 3e-3
# Paper Table 7, "Warmup Epoch" for CIFAR-10/100 and Animal-10N (1 for WebVision, 0 for ImageNet-LT).
WARMUP_EPOCHS = 5
# Authors' code (DyanamicMeta.warmup): the label corrector is pre-trained only while the global iteration
# counter is below 2000; the cap does not bind for the paper's CIFAR settings. Not our default: the
# pre-training saturates the corrector (docs/dynamic_loss.md, "The label corrector"), so
# `corrector_pretrain_iters` defaults to 0; set it to this value for the authors' recipe.
CORRECTOR_PRETRAIN_ITERS = 2000

# The random stream of the Gumbel noise of y' (a key mixed with the method's seed by sample_seed).
_GUMBEL_STREAM = 0x6A3B


class DynamicLoss(Classifier):
    """Dynamic Loss (Jiang et al. 2023): see the package docstring for the algorithm and
    docs/dynamic_loss.md for every choice.

    Takes every argument of :class:`Classifier` (passed through ``**kwargs``; the classifier's
    ``optimizer`` must be SGD, which the virtual step replays), plus:

    Args:
        bins: R, the number of loss-rank bins per class (paper Table 7: 100; 50 for CIFAR-100).
        hidden: width of the meta-net's embeddings and hidden layers (authors: 64).
        warmup_epochs: epochs of plain CE with label-corrector pre-training before the meta steps
            (Table 7: 5 for CIFAR and Animal-10N, 1 for WebVision, 0 for ImageNet-LT).
        primary_fraction: M0, the primary-set size per class as a fraction of the smallest observed class.
        meta_fraction: M1, the meta-set size per class as a fraction of the smallest observed class.
        meta_sampling: ``"hierarchical"`` (the paper) or ``"naive"`` (Table 4, no H: the M1 lowest-loss
            samples of each whole class).
        meta_lr: learning rate of the meta-net's Adam (Table 7: 3e-3).
        meta_lr_schedule: ``"follow"`` (default): the meta-net's learning rate follows the classifier's
            schedule, ``meta_lr * lr_t / lr_0``; ``"fixed"``: constant ``meta_lr`` (Table 7, the
            authors' code). Why not fixed: the meta-gradient is proportional to the classifier's current
            lr (it reaches θ through the virtual step ω - lr_t ∇), but Adam normalises it away, so with
            a fixed rate the meta-net keeps moving at full speed while the classifier it steers anneals;
            late in a cosine schedule the margins and the corrector then wind up until the classifier's
            loss spikes and training collapses (docs/dynamic_loss.md, "Stability").
        meta_weight_decay: weight decay of the meta-net's Adam (Table 7: 0).
        use_corrector: learn the label corrector G_l (False: Table 4 row "G_m").
        use_margin: learn the margin generator G_m (False: Table 4 rows "G_l", "G_l + B").
        fixed_margin: ``"balanced_softmax"`` adds log n_j (observed counts, paper eq. 4) to the logits in
            place of a learned margin (Table 4 "B"; needs ``use_margin=False`` and ``class_counts``).
        metanet_mode: ``"mlp"`` or ``"vector"`` (Table 4 "V").
        classwise: class-wise (True) or class-agnostic label corrector.
        finetune_on_meta: one fine-tuning pass over the meta set after each post-warm-up epoch (code).
        corrector_pretrain_iters: pre-train the label corrector during warm-up only while the global
            step is below this. Default 0 (no pre-training): the authors pre-train for up to 2000
            iterations with a loss minimised by g = 1, which drives the corrector's logits to 10-20 within
            one epoch, where the sigmoid's slope (< 1e-7) leaves the meta-gradient (~1e-4, with the
            right sign per bin) below Adam's epsilon, so the corrector never moves again; the initial
            bias (g = 0.98) already trusts the labels. See docs/dynamic_loss.md, "The label corrector".
        virtual_params: ``"last_block"`` (:func:`lt_noise.models.last_block` and the head; default),
            ``"head"`` or ``"all"`` (exact second order): the parameters the virtual step updates and
            the meta-gradient flows through (see docs/dynamic_loss.md).
        meta_batch_size: meta batch size per process (None: the datamodule's training batch size, as in
            the authors' code).
        rank_batch_size: batch size of the ranking pass (None: the datamodule's evaluation batch size).
    """

    # tools/bench_step.py: time meta steps (no warm-up), and the per-epoch ranking + split.
    BENCHMARK_KWARGS: dict[str, Any] = {"warmup_epochs": 0}

    def __init__(
        self,
        *,
        bins: int = RANK_BINS,
        hidden: int = HIDDEN_DIM,
        warmup_epochs: int = WARMUP_EPOCHS,
        primary_fraction: float = PRIMARY_FRACTION,
        meta_fraction: float = META_FRACTION,
        meta_sampling: Literal["hierarchical", "naive"] = "hierarchical",
        meta_lr: float = META_LR,
        meta_lr_schedule: Literal["follow", "fixed"] = "follow",
        meta_weight_decay: float = 0.0,
        use_corrector: bool = True,
        use_margin: bool = True,
        fixed_margin: Literal["none", "balanced_softmax"] = "none",
        metanet_mode: Literal["mlp", "vector"] = "mlp",
        classwise: bool = True,
        finetune_on_meta: bool = True,
        corrector_pretrain_iters: int = 0,
        virtual_params: Literal["all", "last_block", "head"] = "last_block",
        meta_batch_size: int | None = None,
        rank_batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        # Every other keyword goes to Classifier, whose keyword-only signature rejects misspelled ones.
        super().__init__(**kwargs)
        num_classes, class_counts = self.num_classes, self.class_counts
        if self.optimizer_config.name != "sgd":
            raise ValueError(
                f"Expected optimizer `name` 'sgd' (the virtual step of paper eq. 7 replays an SGD update), "
                f"but got {self.optimizer_config.name!r}"
            )
        check_int("warmup_epochs", warmup_epochs, minimum=0)
        check_int("corrector_pretrain_iters", corrector_pretrain_iters, minimum=0)
        check_int("meta_batch_size", meta_batch_size, minimum=1, optional=True)
        check_int("rank_batch_size", rank_batch_size, minimum=1, optional=True)
        check_choice("meta_sampling", meta_sampling, ("hierarchical", "naive"))
        check_choice("meta_lr_schedule", meta_lr_schedule, ("follow", "fixed"))
        check_choice("fixed_margin", fixed_margin, ("none", "balanced_softmax"))
        if fixed_margin != "none" and use_margin:
            raise ValueError("Expected `use_margin: false` with a fixed margin (Table 4 'G_l + B'), but got use_margin=True")
        if fixed_margin != "none" and class_counts is None:
            raise ValueError("Expected `class_counts` for fixed_margin='balanced_softmax' (log n_j), but got None")
        check_choice("virtual_params", virtual_params, ("all", "last_block", "head"))
        check_positive("meta_lr", meta_lr)
        check_interval("meta_weight_decay", meta_weight_decay, 0.0, math.inf, low_closed=True)
        # Fractions are checked (with the message of lt_noise.data.sampling) on a dummy class count.
        meta_split_sizes([1 << 20], primary_fraction=primary_fraction, meta_fraction=meta_fraction)
        if not getattr(self.loss_fn, "supports_soft_targets", True):
            raise ValueError(
                f"Expected a loss that accepts soft targets (the corrected labels of eq. 3), but "
                f"{type(self.loss_fn).__name__} takes class indices only"
            )

        self.num_bins = bins
        self.warmup_epochs = warmup_epochs
        self.primary_fraction = float(primary_fraction)
        self.meta_fraction = float(meta_fraction)
        self.meta_sampling = meta_sampling
        self.meta_lr = float(meta_lr)
        self.meta_lr_schedule = meta_lr_schedule
        self.meta_weight_decay = float(meta_weight_decay)
        self.fixed_margin = fixed_margin
        self.finetune_on_meta = finetune_on_meta
        self.corrector_pretrain_iters = corrector_pretrain_iters
        self.virtual_params = virtual_params
        self.meta_batch_size = meta_batch_size
        self.rank_batch_size = rank_batch_size
        # With manual optimisation the method steps its two optimizers (and the LR schedule) itself.
        self.automatic_optimization = False

        self.metanet = MetaNet(
            num_classes, bins=bins, hidden=hidden, mode=metanet_mode, classwise=classwise,
            use_corrector=use_corrector, use_margin=use_margin,
        )
        counts = torch.tensor(class_counts if class_counts is not None else [1] * num_classes, dtype=torch.float32)
        # Table 4 "B": the Balanced-Softmax prior log n_j (paper eq. 4); the counts have no empty class
        # (checked by Classifier, docs/conventions.md).
        self.register_buffer("log_class_counts", counts.log())
        # The current epoch's ranking (regenerated at every epoch start, so not checkpointed).
        self.register_buffer("rank_bins", torch.zeros(0, dtype=torch.long), persistent=False)
        self.split: EpochSplit | None = None
        self._virtual_names = self._select_virtual_params(virtual_params)
        # Kept out of DDP: the meta-net (its gradients are averaged here) and the per-epoch ranking
        # (identical on every rank by construction; DDP would broadcast it at every forward).
        ignore = [f"metanet.{name}" for name, _ in self.metanet.named_parameters()]
        ignore += [f"metanet.{name}" for name, _ in self.metanet.named_buffers()]
        self._ddp_params_and_buffers_to_ignore = ignore + ["rank_bins", "log_class_counts"]
        self._rank_loader: DataLoader | None = None
        self._rank_loader_key: tuple[Any, ...] | None = None
        self._plan_loader: DataLoader | None = None
        self._plan_loader_key: tuple[Any, ...] | None = None
        self._gumbel_generator: torch.Generator | None = None
        # The meta-gradient dL_meta/dg(r, y) of the label corrector, summed over the current epoch's meta
        # steps (and how many samples contributed), for the diagnostics; reset at every epoch start.
        self.register_buffer("corrector_grad_sum", torch.zeros(bins, num_classes, dtype=torch.float64), persistent=False)
        self.register_buffer("corrector_grad_count", torch.zeros(bins, num_classes, dtype=torch.float64), persistent=False)
        self._ddp_params_and_buffers_to_ignore += ["corrector_grad_sum", "corrector_grad_count"]
        self._track_corrector = False
        if self.metanet.use_corrector:
            self.metanet.corrector.register_forward_hook(self._corrector_forward_hook)

    # ----------------------------------------------------------------------------------------------
    # Parameters and optimizers
    def _select_virtual_params(self, scope: str) -> list[str]:
        names = [name for name, p in self.net.named_parameters() if p.requires_grad]
        if scope == "all":
            return names
        keep = {id(p) for p in self.net.head.parameters()}
        if scope == "last_block":
            keep |= {id(p) for p in last_block(self.net.backbone).parameters()}
        return [name for name, p in self.net.named_parameters() if p.requires_grad and id(p) in keep]

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The classifier's parameters (the meta-net has its own optimizer)."""
        return (p for name, p in self.named_parameters() if p.requires_grad and not name.startswith("metanet."))

    def configure_optimizers(self):
        config = super().configure_optimizers()
        meta_optimizer = torch.optim.Adam(self.metanet.parameters(), lr=self.meta_lr, weight_decay=self.meta_weight_decay)
        return [config["optimizer"], meta_optimizer], [config["lr_scheduler"]]

    # ----------------------------------------------------------------------------------------------
    # The dynamic loss
    def margin(self) -> Tensor:
        """q (K,) added to the logits in training: the learned margin, or log n_j for ``fixed_margin``."""
        if self.fixed_margin == "balanced_softmax":
            return self.log_class_counts + self.metanet.margin()
        return self.metanet.margin()

    def _metanet_precision(self) -> contextlib.AbstractContextManager:
        """Autocast off: the meta-net computes in its own dtype (see the module docstring, "Precision")."""
        return torch.autocast(self.device.type, enabled=False)

    def dynamic_targets(self, bins: Tensor, labels: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor]:
        """``(y*, q)`` of eq. 2: corrected soft labels (B, K) (eq. 3) and the margin (K,) (eq. 5), computed
        by the meta-net outside autocast; y* in at least the meta-net's dtype."""
        with self._metanet_precision():
            y_pred = y_pred.to(torch.promote_types(y_pred.dtype, self.log_class_counts.dtype))
            return self.metanet.corrected_targets(bins, labels, y_pred), self.margin()

    def _corrector_forward_hook(self, module: nn.Module, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        """While a meta step builds its graph, have the meta-gradient of each sample's g(r|y) added to
        ``corrector_grad_sum`` at its (bin, class) cell when the meta loss is back-propagated."""
        if not (self._track_corrector and output.requires_grad):
            return
        bins, labels = inputs

        def accumulate(grad: Tensor) -> None:
            cells = (bins.to(self.corrector_grad_sum.device), labels.to(self.corrector_grad_sum.device))
            self.corrector_grad_sum.index_put_(cells, grad.detach().to(self.corrector_grad_sum.dtype), accumulate=True)
            self.corrector_grad_count.index_put_(cells, torch.ones_like(self.corrector_grad_count[cells]), accumulate=True)

        output.register_hook(accumulate)

    @torch.no_grad()
    def corrected_labels(self, bins: Tensor, labels: Tensor, predictions: Tensor) -> Tensor:
        """The hard label the corrector assigns: ``argmax y*`` of eq. 3 with y' = one-hot(predictions).

        With a hard y', this is the observed label where g(r|y) > 1/2 (or where the prediction agrees)
        and the prediction elsewhere; the paper's Fig. 6 plots the accuracy of these labels.
        """
        onehot = nn.functional.one_hot(labels, self.num_classes).float()
        predicted = nn.functional.one_hot(predictions, self.num_classes).float()
        if not self.metanet.use_corrector:
            return labels.clone()
        with self._metanet_precision():
            g = self.metanet.label_weights(bins, labels).float()
        return correct_labels(g, onehot, predicted).argmax(dim=1)

    def _clone_buffers(self) -> dict[str, Tensor]:
        # The virtual forwards run in train mode on *copies* of the BN statistics (the authors' `higher`
        # functional model clones the buffers), so only the real step updates the running statistics.
        return {name: buffer.clone() for name, buffer in self.net.named_buffers()}

    def virtual_step(
        self, x: Tensor, labels: Tensor, index: Tensor, bins: Tensor, optimizer: torch.optim.Optimizer, gumbel: Tensor | None
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Paper eq. 7: the fast weights ω̂(θ) after one SGD step of the dynamic loss on ``x``.

        The loss ``reduce(CE(y*(θ), f_ω(x) + q(θ)))`` is evaluated with ``functional_call`` on detached
        copies of the classifier's weights (train mode, BN statistics on copies); its gradient with
        ``create_graph=True`` (averaged over DDP ranks, differentiably) enters the update of
        :func:`sgd_virtual_update` with the optimizer's current lr, momentum buffers and weight decay.

        Args:
            x: (B, ...) un-augmented inputs.
            labels: (B,) observed labels; index: (B,) training indices; bins: (B,) loss-rank bins.
            optimizer: the classifier's (torch) SGD optimizer.
            gumbel: (B, K) Gumbel noise for the hard sample y' (None without a label corrector).

        Returns:
            ``(fast_weights, logits)``: a name -> tensor dict of every classifier parameter (the updated
            ones differentiable in θ) and the pre-update logits (B, K) of ``x``.
        """
        parameters = dict(self.net.named_parameters())
        leaves = {name: parameters[name].detach().requires_grad_(True) for name in self._virtual_names}
        frozen = {name: p.detach() for name, p in parameters.items() if name not in leaves}
        logits = functional_call(self.net, {**frozen, **leaves, **self._clone_buffers()}, (self._prepare_input(x),))
        if gumbel is not None:
            y_pred = gumbel_max_labels(logits, gumbel)
        else:  # no label corrector: y' is unused
            y_pred = logits.new_zeros(logits.shape, dtype=torch.promote_types(logits.dtype, torch.float32))
        targets, margin = self.dynamic_targets(bins, labels, y_pred)
        loss = self.reduce(self.per_sample_loss(logits + margin, targets), labels, index)
        names = list(leaves)
        grads = list(torch.autograd.grad(loss, [leaves[n] for n in names], create_graph=True, allow_unused=True))
        grads = global_mean(grads)
        fast = dict(frozen)
        hyper = self._sgd_settings(optimizer)
        for name, grad in zip(names, grads):
            lr, momentum, weight_decay, nesterov, buffer = hyper[id(parameters[name])]
            (fast[name],) = sgd_virtual_update(
                [leaves[name]], [grad], lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                momentum_buffers=[buffer],
            )
        return fast, logits

    @staticmethod
    def _sgd_settings(optimizer: torch.optim.Optimizer) -> dict[int, tuple[float, float, float, bool, Tensor | None]]:
        settings = {}
        for group in optimizer.param_groups:
            if group.get("dampening", 0.0):
                raise ValueError(f"Expected SGD without dampening in the virtual step, but got {group['dampening']}")
            for p in group["params"]:
                buffer = optimizer.state.get(p, {}).get("momentum_buffer")
                settings[id(p)] = (
                    float(group["lr"]), float(group["momentum"]), float(group["weight_decay"]), bool(group["nesterov"]),
                    None if buffer is None else buffer.detach(),
                )
        return settings

    def meta_objective(self, fast_weights: dict[str, Tensor], x: Tensor, labels: Tensor) -> Tensor:
        """Paper eq. 8's loss: plain loss of the virtually updated classifier on a meta batch.

        As in the authors' code: observed labels, no margin, train mode (BN statistics on copies), the
        plain mean over the batch.
        """
        logits = functional_call(self.net, {**fast_weights, **self._clone_buffers()}, (self._prepare_input(x),))
        return self.per_sample_loss(logits, labels).mean()

    # ----------------------------------------------------------------------------------------------
    # Meta-net updates
    def _follow_classifier_lr(self, meta_optimizer: Any, optimizer: Any) -> None:
        """``meta_lr_schedule="follow"``: the meta-net's lr is ``meta_lr`` times the classifier's current
        lr over its base lr (a function of the schedule's state, so resume replays it)."""
        if self.meta_lr_schedule != "follow":
            return
        factor = float(optimizer.param_groups[0]["lr"]) / self.optimizer_config.lr
        for group in getattr(meta_optimizer, "optimizer", meta_optimizer).param_groups:
            group["lr"] = self.meta_lr * factor

    def _meta_update(self, loss: Tensor, meta_optimizer: Any) -> None:
        """Adam step of the meta-net on ``loss`` with gradients averaged over DDP ranks."""
        optimizer = getattr(meta_optimizer, "optimizer", meta_optimizer)  # the raw torch optimizer
        params = [p for p in self.metanet.parameters() if p.requires_grad]
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss, inputs=params)
        all_reduce_mean_([p.grad for p in params if p.grad is not None])
        optimizer.step()

    def _gumbel(self, draws: int, batch: int) -> Tensor:
        """(draws, batch, K) Gumbel noise for this rank's rows of the global batch of step ``global_step``.

        Drawn for all W·batch rows from a generator seeded by (seed, global_step) on the model's device;
        rank r takes rows r, r+W, ... (its samples' positions in the global batch, see plan.epoch_plan).
        """
        size, rank = world()
        if self._gumbel_generator is None or self._gumbel_generator.device != self.device:
            self._gumbel_generator = torch.Generator(device=self.device)
        self._gumbel_generator.manual_seed(sample_seed(self._seed ^ _GUMBEL_STREAM, self.global_step, 0))
        uniform = torch.rand((draws, batch * size, self.num_classes), generator=self._gumbel_generator, device=self.device)
        return gumbel_noise(uniform)[:, rank::size]

    # ----------------------------------------------------------------------------------------------
    # Ranking and split
    def _datamodule(self, datamodule: Any = None) -> LTNoiseDataModule:
        datamodule = datamodule if datamodule is not None else getattr(self.trainer, "datamodule", None)
        if not isinstance(datamodule, LTNoiseDataModule):
            raise ValueError(
                "Expected an lt-noise datamodule (LTNoiseDataModule) passed to the trainer: Dynamic Loss builds "
                f"its own per-epoch loaders from it, but got {type(datamodule).__name__}"
            )
        return datamodule

    def _ranking_loader(self, datamodule: LTNoiseDataModule) -> DataLoader:
        """The ranking pass's loader (:func:`ranking.ranking_loader`), cached per datamodule, batch and rank."""
        size, rank = world()
        batch = self.rank_batch_size or datamodule.eval_batch_size
        key = (id(datamodule), datamodule.train_size, batch, size, rank)
        if self._rank_loader is None or self._rank_loader_key != key:
            self._rank_loader = ranking_loader(datamodule, batch_size=batch, num_replicas=size, rank=rank)
            self._rank_loader_key = key
        return self._rank_loader

    def _autocast(self) -> contextlib.AbstractContextManager:
        trainer = self._trainer
        if trainer is None:
            return contextlib.nullcontext()
        return trainer.precision_plugin.forward_context()

    def rank_training_set(self, datamodule: LTNoiseDataModule | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample losses (N,) float64 and arg-max predictions (N,) int64 of the whole training set
        (eval mode, the un-augmented view, the configured loss against the observed label; identical on
        every DDP rank): :func:`lt_noise.methods.dynamic_loss.ranking.rank_training_set`."""
        datamodule = self._datamodule(datamodule)
        return rank_training_set(self, self._ranking_loader(datamodule), datamodule.train_size, autocast=self._autocast)

    def rank_and_split(self, datamodule: LTNoiseDataModule | None = None, *, epoch: int | None = None) -> EpochSplit:
        """The per-epoch machinery: rank the training set, bin it, and split off the meta set.

        Public so that benchmarks can time it (it is the method's extra per-epoch cost). ``epoch``
        defaults to the trainer's current epoch, or to ``warmup_epochs`` (the first epoch with a split)
        without a trainer. Warm-up epochs get bins but no meta set. The split of epoch e is seeded by
        ``SeedSequence([seed, e])``; its sizes are ``meta_split_sizes`` of the observed class counts.
        """
        datamodule = self._datamodule(datamodule)
        if epoch is None:
            epoch = self.current_epoch if self._trainer is not None else self.warmup_epochs
        losses, predictions = self.rank_training_set(datamodule)
        return split_epoch(
            losses, predictions, np.asarray(datamodule.observed_targets, dtype=np.int64), epoch=epoch,
            num_classes=self.num_classes, num_bins=self.num_bins, warmup_epochs=self.warmup_epochs,
            primary_fraction=self.primary_fraction, meta_fraction=self.meta_fraction,
            meta_sampling=self.meta_sampling, seed=self._seed,
        )

    def epoch_overhead(self, datamodule: LTNoiseDataModule) -> EpochSplit:
        """The per-epoch work outside the training steps (for tools/bench_step.py): :meth:`rank_and_split`."""
        return self.rank_and_split(datamodule)

    def _epoch_plan(
        self, split: EpochSplit, datamodule: LTNoiseDataModule, *, num_replicas: int | None = None, rank: int | None = None
    ) -> list[BatchDescriptor]:
        """This rank's batch descriptors for the epoch (:func:`plan.epoch_plan`; default: this process's rank)."""
        size, own_rank = world()
        return epoch_plan(
            split, seed=datamodule.seed, batch_size=datamodule.batch_size, drop_last=datamodule.drop_last,
            meta_batch_size=self.meta_batch_size, finetune_on_meta=self.finetune_on_meta,
            num_replicas=size if num_replicas is None else num_replicas, rank=own_rank if rank is None else rank,
        )

    def _batch_plan_loader(self, datamodule: LTNoiseDataModule) -> DataLoader:
        size, rank = world()
        key = (id(datamodule), size, rank)
        if self._plan_loader is None or self._plan_loader_key != key:
            self._plan_loader = batch_plan_loader(datamodule, num_replicas=size, rank=rank)
            self._plan_loader_key = key
        return self._plan_loader

    def epoch_train_dataloader(self, datamodule: LTNoiseDataModule) -> DataLoader:
        """The epoch's loader: registered with the datamodule at ``setup("fit")``
        (:meth:`~lt_noise.data.modules.LTNoiseDataModule.register_epoch_loader`), so that its
        ``train_dataloader`` returns it, and Lightning asks for it at every epoch start."""
        datamodule = self._datamodule(datamodule)
        split = self.rank_and_split(datamodule, epoch=self.trainer.current_epoch)
        check_same_split_on_all_ranks(split, self.device)
        self.split = split
        self.rank_bins = torch.from_numpy(split.bins).to(self.device)
        self.corrector_grad_sum.zero_()
        self.corrector_grad_count.zero_()
        loader = self._batch_plan_loader(datamodule)
        loader.sampler.plan = self._epoch_plan(split, datamodule)  # type: ignore[union-attr]
        return loader

    # ----------------------------------------------------------------------------------------------
    # Lightning hooks
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        # A fresh training loader at every epoch start, built here (the datamodule's declared protocol).
        self._datamodule().register_epoch_loader(self.epoch_train_dataloader)
        self.trainer.reload_dataloaders_every_n_epochs = 1

    def teardown(self, stage: str) -> None:
        # Unregister, and drop the cached loaders (and their persistent workers) at the end of fit.
        super().teardown(stage)
        if stage == "fit":
            datamodule = getattr(self.trainer, "datamodule", None)
            if isinstance(datamodule, LTNoiseDataModule):
                datamodule.register_epoch_loader(None)
            self._rank_loader = self._plan_loader = None
            self._rank_loader_key = self._plan_loader_key = None

    def on_fit_start(self) -> None:
        if world_size() > 1:
            for tensor in list(self.metanet.parameters()) + list(self.metanet.buffers()):
                dist.broadcast(tensor.data, src=0)
            self._seed = int(self.trainer.strategy.broadcast(self._seed, src=0))

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        phase = batch["phase"]
        if phase == "warmup":
            return self._warmup_step(*batch["train"])
        if phase == "meta":
            return self._meta_step(batch["train"], batch["meta"])
        if phase == "finetune":
            return self._finetune_step(*batch["meta"])
        raise ValueError(f"Expected a batch phase in {PHASES}, but got {phase!r}")

    def _classifier_step(self, loss: Tensor, optimizer: Any) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def _warmup_step(self, x_weak: Tensor, x_strong: Tensor, labels: Tensor, index: Tensor):
        optimizer, meta_optimizer = self.optimizers()
        logits = self(x_strong)
        loss = self.reduce(self.per_sample_loss(logits, labels), labels, index)
        if not self.check_finite(loss, index):
            return None
        self.record_training_logits(logits, labels, index)
        if self.metanet.use_corrector and self.global_step < self.corrector_pretrain_iters:
            # As the authors: a forward of the un-augmented view with the pre-update classifier in train
            # mode (it also updates the BN statistics), softmax y', and one meta-optimizer step.
            with torch.no_grad():
                probability = self(x_weak).float().softmax(dim=1).gather(1, labels[:, None]).squeeze(1)
            with self._metanet_precision():
                weights = self.metanet.label_weights(self.rank_bins[index], labels).float()
            pretrain = corrector_pretraining_loss(weights, probability)
            self._meta_update(pretrain, meta_optimizer)
            self.log("train/pretrain_loss", pretrain.detach(), batch_size=len(labels))
        self._classifier_step(loss, optimizer)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(labels))
        return loss.detach()

    def _meta_step(self, train: tuple[Tensor, ...], meta: tuple[Tensor, ...]):
        x_weak, x_strong, labels, index = train
        x_meta, meta_labels, meta_index = meta
        optimizer, meta_optimizer = self.optimizers()
        self._follow_classifier_lr(meta_optimizer, optimizer.optimizer)
        bins = self.rank_bins[index]
        gumbel = self._gumbel(2, len(labels)) if self.metanet.use_corrector else [None, None]
        self._track_corrector = True  # the diagnostics' meta-gradient of g (see _corrector_forward_hook)
        try:
            fast, logits_weak = self.virtual_step(x_weak, labels, index, bins, optimizer.optimizer, gumbel[0])
        finally:
            self._track_corrector = False
        meta_loss = self.meta_objective(fast, x_meta, meta_labels)
        if not self.check_finite(meta_loss, meta_index):
            return None
        self._meta_update(meta_loss, meta_optimizer)
        with torch.no_grad():
            # Eq. 9: y* and q from the updated meta-net, y' a fresh sample from the pre-update logits.
            if gumbel[1] is not None:
                y_pred = gumbel_max_labels(logits_weak, gumbel[1])
            else:
                y_pred = logits_weak.new_zeros(logits_weak.shape, dtype=torch.float32)
            targets, margin = self.dynamic_targets(bins, labels, y_pred)
        logits = self(x_strong)
        loss = self.reduce(self.per_sample_loss(logits + margin, targets), labels, index)
        if not self.check_finite(loss, index):
            return None
        self.record_training_logits(logits, labels, index)  # the network's logits, without the margin q
        self._classifier_step(loss, optimizer)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(labels))
        self.log("train/meta_loss", meta_loss.detach(), batch_size=len(meta_labels))
        return loss.detach()

    def _finetune_step(self, x: Tensor, labels: Tensor, index: Tensor):
        optimizer, _ = self.optimizers()
        with torch.no_grad(), self._metanet_precision():
            margin = self.margin()
        logits = self(x)
        loss = self.reduce(self.per_sample_loss(logits + margin, labels), labels, index)
        if not self.check_finite(loss, index):
            return None
        self.record_training_logits(logits, labels, index)
        self._classifier_step(loss, optimizer)
        self.log("train/finetune_loss", loss.detach(), batch_size=len(labels))
        return loss.detach()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Manual optimisation: Lightning does not step the per-epoch LR schedule. Step it after the
        # epoch's last batch, *before* the epoch-end validation, where Lightning steps automatic
        # schedules too, so that a checkpoint written after validation holds the next epoch's LR.
        if batch_idx + 1 == self.trainer.num_training_batches:
            scheduler = self.lr_schedulers()
            if scheduler is not None:
                scheduler.step()

    # ----------------------------------------------------------------------------------------------
    # Checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["lt_noise"]["dynamic_loss"] = {"seed": int(self._seed)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint["lt_noise"].get("dynamic_loss")
        if saved is not None:
            self._seed = int(saved["seed"])
