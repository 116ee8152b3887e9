"""Dynamic Loss: a meta-learned label corrector and margin generator with hierarchical meta-set sampling.

Paper: Jiang et al., "Dynamic Loss For Robust Learning", AAAI 2023 (``papers/002_*``). The classifier
f_ω is trained with the dynamic loss (eq. 2)

    DL = CE(y*, f_ω(x) + q),   y* = g(r|y)·y + (1 - g(r|y))·y'  (eq. 3),   q = G_m(1)  (eq. 5)

whose label corrector g and margin generator q form a meta-net G_θ (:class:`lt_noise.models.MetaNet`),
learned by the bilevel step of eqs. 7-9 on a small class-balanced, low-loss *meta set* that hierarchical
sampling draws afresh every epoch (section "Hierarchical Sampling Strategy", Algorithm 1).

What happens, per epoch ``e`` (0-based) and per step::

    epoch start   rank: eval mode, un-augmented view, per-sample loss vs the observed label over the whole
                  training set; bin r of every sample within its observed class (loss_rank_bins, R bins).
                  e >= warmup_epochs: split = hierarchical_meta_split (or naive_meta_split) seeded by
                  SeedSequence([seed, e]) -> meta set (int(M1·n_min) per class) + training remainder.
    warm-up step  CE on the augmented view (plain ERM) + one Adam step of the label corrector on
                  -log(g + (1-g)·softmax_y(f(x_weak))) (while global_step < corrector_pretrain_iters).
    meta step     (eq. 7) virtual SGD step ω̂(θ) on the un-augmented view with the dynamic loss;
                  (eq. 8) meta loss CE(f_ω̂(x_meta), y_meta), θ <- Adam(∂/∂θ);
                  (eq. 9) real step on the augmented view with y*, q from the updated θ.
    epoch end     one fine-tuning pass over the meta set with CE(f(x) + q.detach(), y) (authors' code).

Choices, paper vs the authors' code (jiangwenj02/dynamic_loss @ 0863227, read, not copied; file:line
citations in the project's design memo) vs ours:

================================  ===========================  ==============================  =====================
topic                             paper                        authors' code                   ours
================================  ===========================  ==============================  =====================
virtual step (eq. 7)              ω - α∇                       SGD of the real optimizer:      code (current lr from
                                                               lr, momentum buffer copy, wd    the scheduler)
meta update (eq. 8)               gradient step β              Adam 3e-3, wd 0, fixed lr       code (``meta_lr``)
meta loss                         ℓ on X_c                     CE, observed label, no margin,  code
                                                               augmented view, train mode
views                             not stated                   un-augmented: ranking, virtual  code
                                                               step, y'; augmented: meta
                                                               loss, real step, fine-tuning
y' (eq. 3)                        "prediction"                 hard Gumbel sample of the       code (Gumbel-max with
                                                               pre-update un-augmented logits  rank-independent noise)
                                                               (a fresh draw for eq. 9)
warm-up                           SGD on D (Alg. 1)            + corrector pre-training, LR    code; LR warm-up per
                                                               warm-up 0.1x->1x per iteration  epoch (LRSchedule)
ranking                           each epoch after warm-up     every epoch (warm-up too)       code
meta set                          M0, M1 per class             int(0.5·n_min) random, their    code (lt_noise.data.
                                                               int(0.25·n_min) lowest loss     sampling)
unselected primary samples        -                            back in training                code
meta batch size                   m0                           = training batch size           code (``meta_batch_size``)
fine-tuning pass on the meta set  not mentioned                one pass after each epoch       code (``finetune_on_meta``)
epochs (CIFAR)                    300                          325                             paper (configs)
augmentation (CIFAR)              crop, flip, AutoAugment      + Cutout 16                     code (configs)
margin at test time               -                            none                            code
================================  ===========================  ==============================  =====================

The Table 4 ablations: ``use_corrector=False`` (G_m only), ``use_margin=False`` (G_l only),
``fixed_margin="balanced_softmax"`` (G_l + B: q = log n_j of the observed counts, paper eq. 4, in the
virtual, real and fine-tuning losses), ``meta_sampling="naive"`` (no H), ``metanet_mode="vector"`` (V);
``classwise=False`` is the class-agnostic corrector of the paper's text.

``virtual_params`` restricts the parameters the virtual step updates (and the second-order gradient
flows through): ``"last_block"`` (the default: the backbone's ``last_block()`` and the head), ``"head"``,
or ``"all"`` (the exact second-order step; the default of the authors' code, ``frozen_stages=-1``).
Default choice: the paper reports its training time "thanks to the solution to accelerate the training
speed of meta learning by FaMUS and CurveNet" (appendix, Training Time Analysis), i.e. a meta-gradient
through the upper layers only, and the authors' code offers the same restriction (``frozen_stages``).
Measured with tools/bench_step.py (ResNet-32, batch 128, CPU): ``"all"`` costs 4.8x a plain CE step,
``"last_block"`` 2.3-2.6x, inside DESIGN.md's 3x budget; set ``virtual_params: all`` for the exact step.

Engineering (DESIGN.md §7):

* Loaders. The epoch's batches come from :meth:`epoch_train_dataloader` of this module, which it registers
  with the datamodule at ``setup("fit")`` (``LTNoiseDataModule.register_epoch_loader``, the datamodule's
  declared protocol for methods with their own per-epoch loaders) and sets ``reload_dataloaders_every_n_epochs = 1``,
  so Lightning asks for a fresh loader at every epoch start, *before* it iterates it (and, after a
  resume, before the first epoch). :meth:`epoch_train_dataloader` ranks,
  splits and returns a loader whose sampler yields one *batch descriptor* per step: warm-up batches of
  the whole training set, then meta steps (a training-remainder batch paired with the next meta batch;
  the meta set is cycled and reshuffled), then the fine-tuning batches. The descriptors are a pure
  function of (data seed, epoch, split, rank, world size), so Lightning's progress bar, logging,
  validation, DDP sharding and checkpoints all keep working; nothing is iterated behind its back.
  Training order follows :class:`~lt_noise.data.loaders.EpochSampler` (a ``(seed + epoch)`` permutation,
  padded and interleaved across ranks), so a warm-up epoch sees exactly the batches of a plain
  :class:`Classifier` epoch.
  Reloading every epoch also rebuilds the validation loader every epoch (a cheap extra).
* DDP. The meta-net is kept out of DDP (``_ddp_params_and_buffers_to_ignore``), its initial weights are
  broadcast at fit start, its gradients are all-reduced and averaged here. The virtual step runs
  ``torch.func.functional_call`` on the unwrapped ``self.net`` with *detached* copies of the weights, so
  no DDP hook fires; its gradient is all-reduced with a differentiable all-reduce so that the virtual
  step uses the global batch (a 2-process run then equals a 1-process run with the doubled batch). The
  real classifier step uses ``manual_backward`` so that DDP syncs it as usual. The meta optimizer is
  stepped directly (not through ``toggle_optimizer``, which would freeze the classifier), so
  ``global_step`` counts classifier steps only (meta, warm-up and fine-tuning steps). The per-epoch LR
  schedule is stepped after the epoch's last batch, before the epoch-end validation (where Lightning
  steps automatic schedules), so that a checkpoint written after validation holds the next epoch's LR.
* Seeds. The split (``SeedSequence([seed, epoch])``) and the Gumbel noise use the method's seed (the
  global seed at construction, kept in the checkpoint); batch orders and augmentations use the
  datamodule's seed, as its own loaders do.
* Exact resume (from an epoch-end checkpoint). The meta-net, its Adam state, the classifier optimizer
  and scheduler are in the checkpoint; the method seed too. The ranking, bins and split of an epoch are regenerated from the
  restored weights and ``(seed, epoch)``: the ranking pass evaluates fixed, contiguous chunks of the
  training set (chunk k on rank k mod W), so every sample's loss comes from the identical batch in any
  run. The Gumbel noise of step t is drawn for the whole global batch from a generator seeded by
  ``(seed, t)`` and each rank takes its own rows. Resuming from a mid-epoch checkpoint is not exact (the
  split would be re-ranked with mid-epoch weights).
* bf16 autocast: the virtual step, meta loss and real step run under the trainer's autocast; losses are
  computed in float32 (the loss modules upcast). fp16 with a gradient scaler is not supported: the
  second-order gradient is not scaled.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from lt_noise.data.datasets import sample_seed
from lt_noise.data.loaders import world
from lt_noise.data.modules.base import LTNoiseDataModule
from lt_noise.data.sampling import (
    META_FRACTION,
    PRIMARY_FRACTION,
    RANK_BINS,
    EpochSplit,
    hierarchical_meta_split,
    loss_rank_bins,
    meta_split_sizes,
    naive_meta_split,
    split_digest,
)
from lt_noise.methods.classifier import Classifier
from lt_noise.models.metanet import HIDDEN_DIM, MetaNet, correct_labels
from lt_noise.models.network import last_block

__all__ = [
    "CORRECTOR_PRETRAIN_ITERS",
    "META_LR",
    "PHASES",
    "WARMUP_EPOCHS",
    "DynamicLoss",
    "EpochSplit",
    "corrector_pretraining_loss",
    "gumbel_max_labels",
    "sgd_virtual_update",
    "split_digest",  # re-exported from lt_noise.data.sampling, as EpochSplit
]

# Paper Table 7, "MetaNet": Adam with a fixed learning rate 3e-3 and weight decay 0, for every dataset.
META_LR = 3e-3
# Paper Table 7, "Warmup Epoch" for CIFAR-10/100 and Animal-10N (1 for WebVision, 0 for ImageNet-LT).
WARMUP_EPOCHS = 5
# Authors' code (DyanamicMeta.warmup): the label corrector is pre-trained only while the global iteration
# counter is below 2000; the cap does not bind for the paper's CIFAR settings.
CORRECTOR_PRETRAIN_ITERS = 2000
# Authors' code: the pre-training loss is -y·log(y* + 1e-8); the epsilon keeps the log finite at y* = 0.
PRETRAIN_EPS = 1e-8
# The three kinds of training batch an epoch is made of (see the module docstring).
PHASES = ("warmup", "meta", "finetune")

# Independent random streams (keys mixed with the seed by sample_seed): Gumbel noise of y', the meta-set
# cycle orders, the fine-tuning order, and the augmentation seeds of meta / fine-tuning samples (so that
# a meta sample visited twice in an epoch gets two different augmentations, as in the authors' code).
_GUMBEL_STREAM = 0x6A3B
_META_ORDER_STREAM = 0x3E7A
_FINETUNE_ORDER_STREAM = 0xF17E
_META_AUGMENT_STREAM = 0xA06E
_FINETUNE_AUGMENT_STREAM = 0xA0F7
# Largest value of the meta-set cycle counter per epoch, for the stream keys above (far above any real
# count of meta batches per epoch).
_MAX_CYCLES = 1 << 20


# ----------------------------------------------------------------------------------------------------
# Pure functions


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


class _SumAcrossRanks(torch.autograd.Function):
    """A differentiable all-reduce (sum): its backward all-reduces the incoming gradient.

    With it, the virtual step of every rank uses the global-batch gradient, and the meta-gradient of the
    sum of all ranks' meta losses reaches every rank's share of that gradient.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return _SumAcrossRanks.apply(grad)


# ----------------------------------------------------------------------------------------------------
# The epoch's split and the loaders built from it


def _padded_shard(order: np.ndarray, num_replicas: int, rank: int) -> np.ndarray:
    """``DistributedSampler``'s split of ``order``: pad with its first entries to a multiple of the world
    size, then rank r takes positions r, r+W, ... (so global batch k of W ranks with batch B equals batch
    k of one process with batch W·B)."""
    total = math.ceil(len(order) / num_replicas) * num_replicas
    if total > len(order):
        repeats = math.ceil((total - len(order)) / len(order))
        order = np.concatenate([order, np.tile(order, repeats)[: total - len(order)]])
    return order[rank:total:num_replicas]


def _chunks(array: np.ndarray, size: int, *, drop_last: bool = False) -> list[np.ndarray]:
    chunks = [array[i : i + size] for i in range(0, len(array), size)]
    if drop_last and chunks and len(chunks[-1]) < size:
        chunks.pop()
    return chunks


def _permutation(indices: np.ndarray, seed: int) -> np.ndarray:
    """``indices`` in the order of ``torch.randperm`` seeded by ``seed`` (the DistributedSampler recipe)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return indices[torch.randperm(len(indices), generator=generator).numpy()]


def _keys(indices: np.ndarray, augment_epoch: int) -> np.ndarray:
    """(n, 2) int64 keys ``(index, augment_epoch)`` understood by IndexedDataset (seeded augmentation)."""
    return np.stack([indices.astype(np.int64), np.full(len(indices), augment_epoch, dtype=np.int64)], axis=1)


class _BatchPlanSampler(DistributedSampler):
    """Yields the epoch's batch descriptors ``(phase, train_keys, meta_keys)`` for one rank.

    A ``DistributedSampler`` subclass only so that Lightning leaves it in place under DDP (it shards
    itself); the plan is set by :meth:`DynamicLoss.epoch_train_dataloader` before Lightning iterates the loader.
    """

    def __init__(self, *, num_replicas: int, rank: int) -> None:
        super().__init__(range(num_replicas), num_replicas=num_replicas, rank=rank, shuffle=False)
        self.plan: list[tuple[str, np.ndarray | None, np.ndarray | None]] = []

    def __iter__(self) -> Iterator[tuple[str, np.ndarray | None, np.ndarray | None]]:  # type: ignore[override]
        return iter(list(self.plan))

    def __len__(self) -> int:
        return len(self.plan)


class _BatchPlanDataset(Dataset):
    """Loads one whole batch per descriptor (the loader runs with ``batch_size=None``).

    Training samples come with both views ``(x_weak, x_strong)``; meta samples with the augmented view.
    """

    def __init__(self, two_views: Dataset, augmented: Dataset) -> None:
        self.two_views = two_views
        self.augmented = augmented

    def __len__(self) -> int:
        return len(self.two_views)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[str, np.ndarray | None, np.ndarray | None]) -> dict[str, Any]:
        phase, train_keys, meta_keys = item
        batch: dict[str, Any] = {"phase": phase}
        if train_keys is not None:
            (weak, strong), labels, index = default_collate([self.two_views[(int(i), int(e))] for i, e in train_keys])
            batch["train"] = (weak, strong, labels, index)
        if meta_keys is not None:
            batch["meta"] = tuple(default_collate([self.augmented[(int(i), int(e))] for i, e in meta_keys]))
        return batch


# ----------------------------------------------------------------------------------------------------
# The method


class DynamicLoss(Classifier):
    """Dynamic Loss (Jiang et al. 2023): see the module docstring for the algorithm and every choice.

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
        meta_lr: learning rate of the meta-net's Adam (Table 7: 3e-3, fixed).
        meta_weight_decay: weight decay of the meta-net's Adam (Table 7: 0).
        use_corrector: learn the label corrector G_l (False: Table 4 row "G_m").
        use_margin: learn the margin generator G_m (False: Table 4 rows "G_l", "G_l + B").
        fixed_margin: ``"balanced_softmax"`` adds log n_j (observed counts, paper eq. 4) to the logits in
            place of a learned margin (Table 4 "B"; needs ``use_margin=False`` and ``class_counts``).
        metanet_mode: ``"mlp"`` or ``"vector"`` (Table 4 "V").
        classwise: class-wise (True) or class-agnostic label corrector.
        finetune_on_meta: one fine-tuning pass over the meta set after each post-warm-up epoch (code).
        corrector_pretrain_iters: pre-train the label corrector during warm-up only while the global
            step is below this (authors: 2000).
        virtual_params: ``"last_block"`` (:func:`lt_noise.models.last_block` and the head; default),
            ``"head"`` or ``"all"`` (exact second order): the parameters the virtual step updates and
            the meta-gradient flows through (see the module docstring).
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
        meta_weight_decay: float = 0.0,
        use_corrector: bool = True,
        use_margin: bool = True,
        fixed_margin: Literal["none", "balanced_softmax"] = "none",
        metanet_mode: Literal["mlp", "vector"] = "mlp",
        classwise: bool = True,
        finetune_on_meta: bool = True,
        corrector_pretrain_iters: int = CORRECTOR_PRETRAIN_ITERS,
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
        for name, value, minimum in (("warmup_epochs", warmup_epochs, 0), ("corrector_pretrain_iters", corrector_pretrain_iters, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"Expected argument `{name}` to be an integer >= {minimum}, but got {value!r}")
        for name, value in (("meta_batch_size", meta_batch_size), ("rank_batch_size", rank_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"Expected argument `{name}` to be None or an integer >= 1, but got {value!r}")
        if meta_sampling not in ("hierarchical", "naive"):
            raise ValueError(f"Expected argument `meta_sampling` in ('hierarchical', 'naive'), but got {meta_sampling!r}")
        if fixed_margin not in ("none", "balanced_softmax"):
            raise ValueError(f"Expected argument `fixed_margin` in ('none', 'balanced_softmax'), but got {fixed_margin!r}")
        if fixed_margin != "none" and use_margin:
            raise ValueError("Expected `use_margin: false` with a fixed margin (Table 4 'G_l + B'), but got use_margin=True")
        if fixed_margin != "none" and class_counts is None:
            raise ValueError("Expected `class_counts` for fixed_margin='balanced_softmax' (log n_j), but got None")
        if virtual_params not in ("all", "last_block", "head"):
            raise ValueError(f"Expected argument `virtual_params` in ('all', 'last_block', 'head'), but got {virtual_params!r}")
        if not meta_lr > 0:
            raise ValueError(f"Expected argument `meta_lr` > 0, but got {meta_lr}")
        if meta_weight_decay < 0:
            raise ValueError(f"Expected argument `meta_weight_decay` >= 0, but got {meta_weight_decay}")
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
        # Table 4 "B": the Balanced-Softmax prior log n_j (paper eq. 4), counts clamped at 1 for empty classes.
        self.register_buffer("log_class_counts", counts.clamp(min=1).log())
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

    def dynamic_targets(self, bins: Tensor, labels: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor]:
        """``(y*, q)`` of eq. 2: corrected soft labels (B, K) (eq. 3) and the margin (K,) (eq. 5)."""
        return self.metanet.corrected_targets(bins, labels, y_pred), self.margin()

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
        grads = self._global_mean(grads)
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
    # Distributed helpers
    @staticmethod
    def _world_size() -> int:
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def _global_mean(self, tensors: list[Tensor | None]) -> list[Tensor | None]:
        """Differentiable mean over DDP ranks of a list of tensors (None entries pass through)."""
        size = self._world_size()
        present = [t for t in tensors if t is not None]
        if size == 1 or not present:
            return tensors
        flat = _SumAcrossRanks.apply(torch.cat([t.reshape(-1) for t in present])) / size
        out, offset = [], 0
        for t in tensors:
            if t is None:
                out.append(None)
                continue
            out.append(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()
        return out

    def _meta_update(self, loss: Tensor, meta_optimizer: Any) -> None:
        """Adam step of the meta-net on ``loss`` with gradients averaged over DDP ranks."""
        optimizer = getattr(meta_optimizer, "optimizer", meta_optimizer)  # the raw torch optimizer
        params = [p for p in self.metanet.parameters() if p.requires_grad]
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss, inputs=params)
        size = self._world_size()
        grads = [p.grad for p in params if p.grad is not None]
        if size > 1 and grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
        optimizer.step()

    def _gumbel(self, draws: int, batch: int) -> Tensor:
        """(draws, batch, K) Gumbel noise for this rank's rows of the global batch of step ``global_step``.

        Drawn for all W·batch rows from a generator seeded by (seed, global_step) on the model's device;
        rank r takes rows r, r+W, ... (its samples' positions in the global batch, see _padded_shard).
        """
        size, rank = world()
        if self._gumbel_generator is None or self._gumbel_generator.device != self.device:
            self._gumbel_generator = torch.Generator(device=self.device)
        self._gumbel_generator.manual_seed(sample_seed(self._seed ^ _GUMBEL_STREAM, self.global_step, 0))
        uniform = torch.rand((draws, batch * size, self.num_classes), generator=self._gumbel_generator, device=self.device)
        tiny = torch.finfo(uniform.dtype).tiny
        noise = -(-uniform.clamp(min=tiny).log()).log()
        return noise[:, rank::size]

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
        """Fixed contiguous chunks of the training set (eval view), chunk k on rank k mod W; cached."""
        size, rank = world()
        batch = self.rank_batch_size or datamodule.eval_batch_size
        n = datamodule.train_size
        key = (id(datamodule), n, batch, size, rank)
        if self._rank_loader is None or self._rank_loader_key != key:
            starts = range(rank * batch, n, size * batch)
            chunks = [list(range(s, min(s + batch, n))) for s in starts]
            self._rank_loader = DataLoader(
                datamodule.train_dataset(views=("eval",)),
                batch_sampler=chunks,
                num_workers=datamodule.num_workers,
                pin_memory=datamodule.pin_memory,
                persistent_workers=datamodule.num_workers > 0,
            )
            self._rank_loader_key = key
        return self._rank_loader

    def _autocast(self) -> contextlib.AbstractContextManager:
        trainer = self._trainer
        if trainer is None:
            return contextlib.nullcontext()
        return trainer.precision_plugin.forward_context()

    @torch.no_grad()
    def rank_training_set(self, datamodule: LTNoiseDataModule | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample losses (N,) float64 and arg-max predictions (N,) int64 of the whole training set.

        Eval mode (BN running statistics), the un-augmented view, the configured loss against the
        observed label. Under DDP each rank evaluates its chunks, then (index, loss, prediction) triples
        are all-gathered and placed by index, so every rank returns the identical arrays.
        """
        datamodule = self._datamodule(datamodule)
        size, _ = world()
        if size > 1:
            # The next DDP forward would broadcast rank 0's BN statistics anyway; do it now so that every
            # rank ranks with the same network.
            for buffer in self.net.buffers():
                dist.broadcast(buffer, src=0)
        was_training = self.training
        self.eval()
        indices, losses, predictions = [], [], []
        try:
            for x, labels, index in self._ranking_loader(datamodule):
                x, labels = x.to(self.device), labels.to(self.device)
                with self._autocast():
                    logits = self(x)
                losses.append(self.per_sample_loss(logits.float(), labels).double())
                predictions.append(logits.argmax(dim=1))
                indices.append(index.to(self.device))
        finally:
            self.train(was_training)
        index = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long, device=self.device)
        loss = torch.cat(losses) if losses else torch.zeros(0, dtype=torch.float64, device=self.device)
        prediction = torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long, device=self.device)
        if size > 1:
            index, loss, prediction = self._gather_triples(index, loss, prediction)
        n = datamodule.train_size
        index_np = index.cpu().numpy()
        out_losses = np.full(n, np.nan)
        out_predictions = np.full(n, -1, dtype=np.int64)
        out_losses[index_np] = loss.cpu().numpy()
        out_predictions[index_np] = prediction.cpu().numpy()
        missing = np.flatnonzero(out_predictions < 0)
        if missing.size:
            raise RuntimeError(f"The ranking pass missed {missing.size} training samples, e.g. index {int(missing[0])}")
        return out_losses, out_predictions

    @staticmethod
    def _gather_triples(index: Tensor, loss: Tensor, prediction: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """All-gather variable-length (index, loss, prediction) arrays; padding rows carry index -1."""
        size = dist.get_world_size()
        count = torch.tensor([index.numel()], device=index.device)
        counts = [torch.zeros_like(count) for _ in range(size)]
        dist.all_gather(counts, count)
        longest = int(max(c.item() for c in counts))
        pad = longest - index.numel()
        packed = torch.stack([
            torch.cat([index.double(), index.new_full((pad,), -1).double()]),
            torch.cat([loss, loss.new_zeros(pad)]),
            torch.cat([prediction.double(), prediction.new_zeros(pad).double()]),
        ])
        gathered = [torch.zeros_like(packed) for _ in range(size)]
        dist.all_gather(gathered, packed)
        table = torch.cat(gathered, dim=1)
        keep = table[0] >= 0
        return table[0, keep].long(), table[1, keep], table[2, keep].long()

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
        labels = np.asarray(datamodule.observed_targets, dtype=np.int64)
        if not np.isfinite(losses).all():
            bad = np.flatnonzero(~np.isfinite(losses))
            raise ValueError(
                f"Expected finite per-sample losses in the ranking pass of epoch {epoch}, but {bad.size} are not "
                f"(e.g. training index {int(bad[0])}): the classifier has diverged"
            )
        bins = loss_rank_bins(losses, labels, self.num_classes, self.num_bins)
        if epoch < self.warmup_epochs:
            return EpochSplit(epoch, losses, predictions, bins, None, np.arange(len(labels), dtype=np.int64))
        primary, meta = meta_split_sizes(
            np.bincount(labels, minlength=self.num_classes),
            primary_fraction=self.primary_fraction, meta_fraction=self.meta_fraction,
        )
        if self.meta_sampling == "hierarchical":
            meta_indices, train_indices = hierarchical_meta_split(
                losses, labels, self.num_classes, primary, meta, seed=np.random.SeedSequence([self._seed, epoch])
            )
        else:
            meta_indices, train_indices = naive_meta_split(losses, labels, self.num_classes, meta)
        return EpochSplit(epoch, losses, predictions, bins, meta_indices, train_indices)

    def epoch_overhead(self, datamodule: LTNoiseDataModule) -> EpochSplit:
        """The per-epoch work outside the training steps (for tools/bench_step.py): :meth:`rank_and_split`."""
        return self.rank_and_split(datamodule)

    def _epoch_plan(self, split: EpochSplit, datamodule: LTNoiseDataModule) -> list[tuple[str, np.ndarray | None, np.ndarray | None]]:
        """This rank's batch descriptors for the epoch (see the module docstring, "Loaders")."""
        size, rank = world()
        epoch, seed = split.epoch, datamodule.seed
        batch = datamodule.batch_size
        order = _permutation(split.train_indices, seed + epoch)
        train = _chunks(_padded_shard(order, size, rank), batch, drop_last=datamodule.drop_last)
        if split.meta_indices is None:
            return [("warmup", _keys(chunk, epoch), None) for chunk in train]
        meta_batch = self.meta_batch_size or batch
        meta_chunks: list[np.ndarray] = []
        cycle = 0
        while len(meta_chunks) < len(train):
            cycle_order = _permutation(split.meta_indices, sample_seed(seed ^ _META_ORDER_STREAM, epoch, cycle))
            augment = sample_seed(_META_AUGMENT_STREAM, epoch, cycle)
            meta_chunks += [_keys(c, augment) for c in _chunks(_padded_shard(cycle_order, size, rank), meta_batch)]
            cycle += 1
            if cycle > _MAX_CYCLES:
                raise RuntimeError("Expected a non-empty meta set, but cycling it produced no batches")
        plan = [("meta", _keys(chunk, epoch), meta) for chunk, meta in zip(train, meta_chunks)]
        if self.finetune_on_meta:
            finetune_order = _permutation(split.meta_indices, sample_seed(seed ^ _FINETUNE_ORDER_STREAM, epoch, 0))
            augment = sample_seed(_FINETUNE_AUGMENT_STREAM, epoch, 0)
            plan += [("finetune", None, _keys(c, augment)) for c in _chunks(_padded_shard(finetune_order, size, rank), meta_batch)]
        return plan

    def _check_same_on_all_ranks(self, split: EpochSplit) -> None:
        """Raise if the ranks derived different bins or splits (they must: same gathered losses, same seed)."""
        if self._world_size() == 1:
            return
        digest = torch.tensor([split_digest(split)], dtype=torch.long, device=self.device)
        digests = [torch.zeros_like(digest) for _ in range(self._world_size())]
        dist.all_gather(digests, digest)
        if any(int(d.item()) != int(digest.item()) for d in digests):
            raise RuntimeError(
                f"Expected every DDP rank to derive the same loss-rank bins and meta split in epoch {split.epoch}, "
                f"but their digests differ: {[int(d.item()) for d in digests]}"
            )

    def _batch_plan_loader(self, datamodule: LTNoiseDataModule) -> DataLoader:
        size, rank = world()
        key = (id(datamodule), size, rank)
        if self._plan_loader is None or self._plan_loader_key != key:
            dataset = _BatchPlanDataset(
                datamodule.train_dataset(views=("eval", "train")), datamodule.train_dataset(views=("train",))
            )
            self._plan_loader = DataLoader(
                dataset,
                batch_size=None,
                sampler=_BatchPlanSampler(num_replicas=size, rank=rank),
                num_workers=datamodule.num_workers,
                pin_memory=datamodule.pin_memory,
                persistent_workers=datamodule.num_workers > 0,
            )
            self._plan_loader_key = key
        return self._plan_loader

    def epoch_train_dataloader(self, datamodule: LTNoiseDataModule) -> DataLoader:
        """The epoch's loader: registered with the datamodule at ``setup("fit")``, so that its
        ``train_dataloader`` returns it, and Lightning asks for it at every epoch start (module docstring)."""
        datamodule = self._datamodule(datamodule)
        split = self.rank_and_split(datamodule, epoch=self.trainer.current_epoch)
        self._check_same_on_all_ranks(split)
        self.split = split
        self.rank_bins = torch.from_numpy(split.bins).to(self.device)
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
        if self._world_size() > 1:
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
        if self.metanet.use_corrector and self.global_step < self.corrector_pretrain_iters:
            # As the authors: a forward of the un-augmented view with the pre-update classifier in train
            # mode (it also updates the BN statistics), softmax y', and one meta-optimizer step.
            with torch.no_grad():
                probability = self(x_weak).float().softmax(dim=1).gather(1, labels[:, None]).squeeze(1)
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
        bins = self.rank_bins[index]
        gumbel = self._gumbel(2, len(labels)) if self.metanet.use_corrector else [None, None]
        fast, logits_weak = self.virtual_step(x_weak, labels, index, bins, optimizer.optimizer, gumbel[0])
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
        self._classifier_step(loss, optimizer)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(labels))
        self.log("train/meta_loss", meta_loss.detach(), batch_size=len(meta_labels))
        return loss.detach()

    def _finetune_step(self, x: Tensor, labels: Tensor, index: Tensor):
        optimizer, _ = self.optimizers()
        with torch.no_grad():
            margin = self.margin()
        logits = self(x)
        loss = self.reduce(self.per_sample_loss(logits + margin, labels), labels, index)
        if not self.check_finite(loss, index):
            return None
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
