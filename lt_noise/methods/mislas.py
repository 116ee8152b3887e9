"""MiSLAS (Zhong et al., CVPR 2021, "Improving Calibration for Long-Tailed Recognition"): the classifier
learning stage, and "MiSLAS+PAL" (PAL paper, papers/000, Tables 1-2).

MiSLAS is a decoupled two-stage method:

1. representation learning with mixup on the instance-balanced long-tailed data:
   :class:`~lt_noise.methods.mixup.MixupClassifier` (``mixup_alpha`` 1.0 on CIFAR-LT, 0.2 on
   ImageNet-LT). For "MiSLAS+PAL" this stage is :class:`~lt_noise.methods.PAL` with the same
   ``mixup_alpha`` ("for MiSLAS, we only use PAL in the representation learning stage", Section 5.1).
2. classifier learning (:class:`MiSLAS`, this module), from the stage-1 checkpoint (``init_from``), with
   the backbone frozen and class-balanced sampling (the datamodule's ``sampling: class_balanced``), and
   three additions:

   * label-aware smoothing (:class:`LabelAwareSmoothing`): cross entropy against a target smoothed by a
     per-class ``ε_y`` that grows with the class's training count ``N_y``;
   * shifted batch normalisation: the frozen backbone's batch-norm layers stay in training mode, so their
     running statistics are re-estimated on the class-balanced stage-2 data (weights untouched);
   * learnable weight scaling (:class:`LearnableWeightScaling`): a per-class factor on the logits,
     trained with the stage-2 learning rate while the classifier itself trains at ``lr_factor`` times it.

Conventions, from the authors' public code (dvlab-research/MiSLAS: ``methods.py``, ``train_stage2.py``,
``config/*/*_stage2_mislas.yaml``; read, not copied) where the paper leaves room:

* Smoothing target: the code spreads ``ε_y`` uniformly over all K classes, ``q = (1 - ε_y) e_y + ε_y/K``
  (``LabelAwareSmoothing.forward``: ``(1 - ε) NLL + ε mean_i(-log p_i)``); the paper's eq. (3) writes
  ``ε_y/(K-1)`` on the other classes only. We follow the code, which produced the published numbers.
* ``ε_y`` (eq. 4, "concave" default): ``ε_K + (ε_1 - ε_K) sin(π (N_y - N_K) / (2 (N_1 - N_K)))`` with
  ``N_1``/``N_K`` the largest/smallest training count and ``ε_1``/``ε_K`` = ``smooth_head``/``smooth_tail``;
  also ``linear``, ``convex`` and ``exp`` (with ``power``) as in the code. Balanced counts give ``ε_K``.
* The stage-2 classifier starts from the stage-1 classifier (the code resumes both from the stage-1
  checkpoint). After PAL, the stage-1 classifier is the anchored prototypes: the learned linear head
  starts at ``W = prototypes, b = 0``, i.e. from PAL's own predictor (``init_head: stage1``; ``fresh``
  re-initialises it, cRT style).
* Optimiser: one SGD over two parameter groups, the classifier at ``lr * lr_factor`` and the weight
  scaling at ``lr``, both with the weight decay; cosine decay to 0 over the stage (epoch-wise), 10
  epochs. The backbone's forward runs without gradients in training mode (shifted BN).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from lt_noise.losses import PerSampleLoss
from lt_noise.methods.classifier import Classifier
from lt_noise.validation import check_choice, check_class_counts, check_flag, check_interval, check_positive

__all__ = [
    "LAS_NAME",
    "SMOOTHING_SHAPES",
    "LabelAwareSmoothing",
    "LearnableWeightScaling",
    "MiSLAS",
    "WeightScaledHead",
    "label_aware_smoothing_factors",
]

#: The ``loss`` name under which :class:`MiSLAS` builds :class:`LabelAwareSmoothing` (its default loss).
LAS_NAME = "label_aware_smoothing"
SMOOTHING_SHAPES = ("concave", "linear", "convex", "exp")
# The loss_args that label-aware smoothing takes.
LAS_HYPERPARAMETERS = ("smooth_head", "smooth_tail", "shape", "power")
# MiSLAS's CIFAR-100-LT (imbalance 100) stage-2 settings (config/cifar100/cifar100_imb001_stage2_mislas.yaml):
# ε_1 = 0.4 (head), ε_K = 0.1 (tail), lr_factor = 0.2.
DEFAULT_SMOOTH_HEAD = 0.4
DEFAULT_SMOOTH_TAIL = 0.1
DEFAULT_LR_FACTOR = 0.2


def label_aware_smoothing_factors(
    class_counts: Sequence[int] | np.ndarray | Tensor,
    smooth_head: float = DEFAULT_SMOOTH_HEAD,
    smooth_tail: float = DEFAULT_SMOOTH_TAIL,
    *,
    shape: str = "concave",
    power: float | None = None,
) -> Tensor:
    """MiSLAS's per-class smoothing ``ε_y = f(N_y)`` (eq. 4; see the module docstring), float32 ``(K,)``.

    ``r_y = (N_y - N_K) / (N_1 - N_K)`` in [0, 1]; ``concave``: ``ε_K + (ε_1 - ε_K) sin(π r / 2)``;
    ``linear``: ``ε_K + (ε_1 - ε_K) r``; ``convex``: ``ε_1 + (ε_1 - ε_K) sin(3π/2 + π r / 2)``;
    ``exp``: ``ε_K + (ε_1 - ε_K) r^power``. ``ε_1 = smooth_head``, ``ε_K = smooth_tail``, both in [0, 1].
    """
    counts = check_class_counts(class_counts).numpy()
    head = check_interval("smooth_head", smooth_head, 0.0, 1.0, low_closed=True, high_closed=True)
    tail = check_interval("smooth_tail", smooth_tail, 0.0, 1.0, low_closed=True, high_closed=True)
    check_choice("shape", shape, SMOOTHING_SHAPES)
    if shape == "exp":
        check_interval("power", power, 0.0)
    elif power is not None:
        raise ValueError(f"Expected argument `power` only with shape 'exp', but got power={power!r} with shape {shape!r}")
    counts = counts.astype(np.float64)
    spread = counts.max() - counts.min()
    r = (counts - counts.min()) / spread if spread > 0 else np.zeros_like(counts)
    if shape == "concave":
        eps = tail + (head - tail) * np.sin(np.pi * r / 2)
    elif shape == "linear":
        eps = tail + (head - tail) * r
    elif shape == "convex":
        eps = head + (head - tail) * np.sin(1.5 * np.pi + np.pi * r / 2)
    else:
        eps = tail + (head - tail) * np.power(r, power)
    return torch.from_numpy(eps).float()


class LabelAwareSmoothing(PerSampleLoss):
    """Label-aware smoothing (MiSLAS, eqs. 3-4): ``(1 - ε_y) (-log p_y) + ε_y mean_i(-log p_i)`` per sample.

    The smoothing factors (:func:`label_aware_smoothing_factors`) are the ``smoothing`` buffer. Class
    indices only. Args as :func:`label_aware_smoothing_factors`.
    """

    def __init__(
        self,
        class_counts: Sequence[int] | np.ndarray | Tensor,
        smooth_head: float = DEFAULT_SMOOTH_HEAD,
        smooth_tail: float = DEFAULT_SMOOTH_TAIL,
        shape: str = "concave",
        power: float | None = None,
    ) -> None:
        super().__init__()
        smoothing = label_aware_smoothing_factors(class_counts, smooth_head, smooth_tail, shape=shape, power=power)
        self.register_buffer("smoothing", smoothing)
        self.smooth_head, self.smooth_tail, self.shape, self.power = float(smooth_head), float(smooth_tail), shape, power

    def _hard_forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.shape[1] != self.smoothing.numel():
            raise ValueError(
                f"Expected logits with {self.smoothing.numel()} classes (len(class_counts)), but got shape {tuple(logits.shape)}"
            )
        eps = self.smoothing.to(logits.dtype)[target]
        log_p = logits.log_softmax(dim=1)
        nll = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        return (1.0 - eps) * nll - eps * log_p.mean(dim=1)

    def extra_repr(self) -> str:
        return f"smooth_head={self.smooth_head}, smooth_tail={self.smooth_tail}, shape={self.shape!r}"


class LearnableWeightScaling(nn.Module):
    """MiSLAS's learnable weight scaling: ``logits * scale`` with one learned factor per class (init 1)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_classes))

    def forward(self, logits: Tensor) -> Tensor:
        return logits * self.scale


class WeightScaledHead(nn.Module):
    """A classifier head followed by :class:`LearnableWeightScaling` (MiSLAS's stage-2 head).

    ``weight`` is the effective prototype matrix ``diag(scale) W`` when the classifier has a ``weight``
    (diagnostics read it: :class:`lt_noise.callbacks.PrototypeDiagnostics`).
    """

    def __init__(self, classifier: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.lws = LearnableWeightScaling(num_classes)

    @property
    def weight(self) -> Tensor:
        return self.lws.scale.unsqueeze(1) * self.classifier.weight

    def forward(self, features: Tensor) -> Tensor:
        return self.lws(self.classifier(features))


class MiSLAS(Classifier):
    """MiSLAS's classifier-learning stage (stage 2; see the module docstring) on a frozen stage-1 backbone.

    Every argument of :class:`Classifier` is accepted (keyword-only) and passed on; these differ:

    Args:
        loss: ``"label_aware_smoothing"`` (default, :class:`LabelAwareSmoothing`, whose ``loss_args`` are
            ``smooth_head``, ``smooth_tail``, ``shape``, ``power``), or any registered loss.
        freeze: ``"backbone"`` (the only choice: MiSLAS re-trains the classifier on a fixed representation).
        init_parts: ``"backbone"``: ``init_from`` provides the backbone; the head follows ``init_head``.
        init_head: ``"stage1"``: start the classifier from the stage-1 head in ``init_from`` (a learned
            ``weight``/``bias``, or anchored ``prototypes`` as ``weight`` with zero bias); ``"fresh"``:
            a new head.
        shift_bn: keep the frozen backbone's batch-norm layers in training mode (shifted BN).
        lr_factor: the classifier's learning rate is ``lr * lr_factor`` (the weight scaling's is ``lr``).

    Without ``init_from`` the "stage 1" backbone is the random initialisation (a warning says so): only
    useful for tests and benchmarks.
    """

    def __init__(
        self,
        *,
        loss: str | nn.Module = LAS_NAME,
        freeze: Literal["backbone"] = "backbone",
        init_parts: Literal["backbone"] = "backbone",
        init_head: Literal["stage1", "fresh"] = "stage1",
        shift_bn: bool = True,
        lr_factor: float = DEFAULT_LR_FACTOR,
        **kwargs: Any,
    ) -> None:
        if freeze != "backbone":
            raise ValueError(f"Expected `freeze` 'backbone' for MiSLAS (classifier learning on a fixed backbone), but got {freeze!r}")
        if init_parts != "backbone":
            raise ValueError(
                f"Expected `init_parts` 'backbone' for MiSLAS (the head is initialised by `init_head`), but got {init_parts!r}"
            )
        check_choice("init_head", init_head, ("stage1", "fresh"))
        check_flag("shift_bn", shift_bn)
        lr_factor = check_positive("lr_factor", lr_factor)
        if kwargs.get("init_from") is None:
            warnings.warn(
                "MiSLAS without `init_from` re-trains the classifier on a randomly initialised backbone; give the "
                "stage-1 checkpoint as `init_from`",
                UserWarning,
                stacklevel=2,
            )
        super().__init__(loss=loss, freeze=freeze, init_parts=init_parts, **kwargs)
        self.init_head = init_head
        self.shift_bn = shift_bn
        self.lr_factor = lr_factor
        if shift_bn:
            # Shifted BN: the frozen batch-norm layers follow the module's train/eval mode (back in training
            # mode now: the freeze put them in eval mode, and Lightning keeps the modes it finds at fit start),
            # so training re-estimates their running statistics on the stage-2 (class-balanced) batches.
            norms = [m for m in self.frozen if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            self.frozen = [m for m in self.frozen if m not in norms]
            for module in norms:
                module.train(self.training)
        if init_head == "stage1" and kwargs.get("init_from") is not None:
            self.load_stage1_head(kwargs["init_from"])

    # ----------------------------------------------------------------------------------------------
    def build_head(self, head: str | nn.Module, args: dict[str, Any] | None) -> nn.Module:
        return WeightScaledHead(super().build_head(head, args), self.num_classes)

    def build_loss(self, loss: str | nn.Module, args: dict[str, Any] | None) -> nn.Module:
        if loss == LAS_NAME:
            if self.class_counts is None:
                raise ValueError("Expected `class_counts` for label-aware smoothing (linked from the datamodule), but got None")
            unknown = sorted(set(args or {}) - set(LAS_HYPERPARAMETERS))
            if unknown:
                raise ValueError(f"Expected `loss_args` of {LAS_NAME!r} among {list(LAS_HYPERPARAMETERS)}, but got unknown {unknown}")
            return LabelAwareSmoothing(self.class_counts, **(args or {}))
        return super().build_loss(loss, args)

    def load_stage1_head(self, path: str) -> None:
        """Initialise the classifier from the head saved in ``path`` (a checkpoint of any lt-noise method):
        its ``weight``/``bias``, or anchored ``prototypes`` as the weight with a zero bias."""
        saved = torch.load(path, map_location="cpu", weights_only=True)
        state = saved.get("state_dict", saved) if isinstance(saved, dict) else {}
        prefix = "net.head." if any(key.startswith("net.head.") for key in state) else "head."
        head = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        head = {key.removeprefix("classifier."): value for key, value in head.items() if not key.startswith("lws.")}
        classifier = self.net.head.classifier
        own = classifier.state_dict()
        if "prototypes" in head:
            prototypes = head.pop("prototypes")
            head["weight"] = prototypes
            if "bias" in own:
                head["bias"] = torch.zeros_like(own["bias"])
        if set(head) != set(own) or any(head[k].shape != own[k].shape for k in own):
            raise ValueError(
                f"Expected the stage-1 head in {path!r} to match this classifier's {sorted(own)} with shapes "
                f"{[tuple(v.shape) for v in own.values()]}, but found {sorted(head)} with shapes "
                f"{[tuple(v.shape) for v in head.values()]}; use init_head='fresh' to start a new classifier"
            )
        classifier.load_state_dict(head)

    # ----------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = getattr(self.trainer, "datamodule", None)
        sampling = getattr(datamodule, "sampling", None)
        if sampling is not None and sampling != "class_balanced":
            warnings.warn(
                f"MiSLAS's classifier learning samples class-balanced batches, but the datamodule has sampling="
                f"{sampling!r}; set `sampling: class_balanced`",
                UserWarning,
                stacklevel=2,
            )

    def configure_optimizers(self):
        config = self.optimizer_config
        head = self.net.head
        classifier = [p for p in head.classifier.parameters() if p.requires_grad]
        groups = [{"params": classifier, "lr": config.lr * self.lr_factor}, {"params": list(head.lws.parameters())}]
        optimizer = config.build(groups)
        scheduler = self.lr_schedule.build(optimizer, self.trainer.max_epochs if self._trainer else None)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
