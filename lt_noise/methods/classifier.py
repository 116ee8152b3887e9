"""The base LightningModule: empirical risk minimisation with any backbone, head and per-sample loss.

Every method of lt-noise subclasses :class:`Classifier`, and so can yours. A training step is::

    batch (x, y, index) -> self(x) = head(backbone(x)) = logits
                        -> self.per_sample_loss(logits, y)      (B,)   the loss module, never reduced
                        -> self.reduce(losses, y, index)        ()     the ONE place losses are reduced
                        -> optimizer

Subclassing, by what you want to change:

- the reduction (sample weights, as ABSGD does): override :meth:`reduce`;
- the loss on the logits (margins, label correction): override :meth:`per_sample_loss`;
- the whole step (mixup, several views, manual optimisation): override ``training_step``, and call
  :meth:`check_finite` on the loss you back-propagate;
- which parameters train (a frozen backbone in a second stage): override :meth:`trainable_parameters`.

Training dynamics for the callbacks: a step hands the logits it trained on, with the observed labels and
training indices of its batch, to :meth:`record_training_logits`; callbacks read them from
:attr:`training_records` in ``on_train_batch_end`` (the label-issue report,
:class:`lt_noise.callbacks.LabelIssues`). The base step does it; a subclass that overrides
``training_step`` should call it too (once per sample and step, with the logits of the sample itself,
as :class:`~lt_noise.methods.MixupClassifier` and :class:`~lt_noise.methods.DynamicLoss` do).

Keep any new state in registered buffers / parameters, or in ``on_save_checkpoint``, so that
checkpoints resume exactly. For example, a focal-weighted reduction::

    class MyMethod(Classifier):
        def reduce(self, losses, targets, index):
            weights = losses.detach().exp()
            return (weights * losses).sum() / weights.sum()

Determinism: stochastic operations inside a training step (dropout, mixup, Gumbel sampling) draw
from the global torch RNG, which is reseeded at every step from ``(seed, global_step, rank)``; together
with the per-sample augmentation seeds of the datamodule, a run resumed from a checkpoint replays the
uninterrupted run exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal, NamedTuple

import lightning as L
import torch
import torch.distributed as dist
from torch import nn

from lt_noise.callbacks.defaults import build_default_callbacks
from lt_noise.distributed import all_reduce_
from lt_noise.losses import build_loss
from lt_noise.metrics import ClassificationMetrics
from lt_noise.models import Network, build_backbone, build_head
from lt_noise.models.parts import FREEZE_OPTIONS, INIT_PARTS, freeze_parts, load_network_weights
from lt_noise.optim import LRSchedule, OptimizerConfig
from lt_noise.seeding import global_seed, sample_seed
from lt_noise.validation import check_choice, check_class_counts, check_int

__all__ = ["Classifier", "NonFiniteLossError", "TrainingRecord"]

# The training-step keys of the per-step RNG stream; distinct from the sample-augmentation streams.
_STEP_STREAM = 0x5EED


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the step and the batch's samples."""


class TrainingRecord(NamedTuple):
    """What one training step saw of some samples: their logits (B, K), detached, their observed labels
    (B,) and their training indices (B,)."""

    logits: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor


class Classifier(L.LightningModule):
    """ERM with any backbone, head and per-sample loss (see the module docstring for subclassing).

    Every fit runs with the callbacks named in :attr:`DEFAULT_CALLBACKS` (the results file, evaluation
    figures, fault tolerance, the label-issue report) unless the trainer already has one of the type: from the CLI and from a
    plain ``L.Trainer(...).fit(model, data)`` alike (``configure_callbacks``).

    Args:
        num_classes: number of classes K (linked from the datamodule by the CLI).
        class_counts: observed training class counts (linked); count-dependent losses and the
            many/medium/few metrics use them.
        input_shape: (C, H, W) of the input images (linked).
        noise_rate: the datamodule's nominal label-noise rate (linked); only noise-aware options read it.
        backbone: a registered backbone name (``lt_noise.models.available_backbones()``), or a module
            with a ``feature_dim`` attribute.
        backbone_args: hyperparameters of the named backbone.
        head: a registered head name, or a module mapping features to logits.
        head_args: hyperparameters of the named head.
        loss: a registered loss name (``lt_noise.losses.available_losses()``), or a module returning
            per-sample losses.
        loss_args: hyperparameters of the named loss.
        optimizer: optimizer settings.
        lr_schedule: per-epoch learning-rate schedule.
        init_from: a checkpoint (a Lightning ``.ckpt`` of any lt-noise method, or a saved state dict of
            the network) whose weights initialise the network: the second stage of two-stage methods.
        init_parts: what ``init_from`` loads: the whole network (``"net"``) or only the backbone
            (``"backbone"``: the head starts fresh, as in classifier re-training).
        freeze: parameters that do not train: ``"backbone"`` (only the head trains) or
            ``"backbone_except_last_block"`` (the last block of the backbone and the head train; see
            :func:`lt_noise.models.last_block`). Frozen modules stay in eval mode, so their batch-norm
            statistics stay fixed too.
        on_nonfinite: ``"raise"`` stops training at a non-finite loss, naming the step and the batch's
            sample indices; ``"skip"`` skips that batch's update (single process only).
        channels_last: use the channels-last memory format (faster convolutions on recent GPUs).
        compile: run the network through ``torch.compile``.
    """

    #: Names of the callbacks every fit runs with (:mod:`lt_noise.callbacks.defaults`); methods extend it.
    DEFAULT_CALLBACKS: ClassVar[tuple[str, ...]] = ("ResultsWriter", "EvaluationFigures", "InterruptCheckpoint", "LabelIssues")

    def __init__(
        self,
        *,
        num_classes: int = 10,
        class_counts: Sequence[int] | None = None,
        input_shape: Sequence[int] = (3, 32, 32),
        noise_rate: float = 0.0,
        backbone: str | nn.Module = "resnet32",
        backbone_args: dict[str, Any] | None = None,
        head: str | nn.Module = "linear",
        head_args: dict[str, Any] | None = None,
        loss: str | nn.Module = "ce",
        loss_args: dict[str, Any] | None = None,
        optimizer: OptimizerConfig = OptimizerConfig(),
        lr_schedule: LRSchedule = LRSchedule(),
        init_from: str | None = None,
        init_parts: Literal["net", "backbone"] = "net",
        freeze: Literal["none", "backbone", "backbone_except_last_block"] = "none",
        on_nonfinite: Literal["raise", "skip"] = "raise",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=2)
        # The linked counts, checked once here (docs/conventions.md: no empty class); the checked list
        # goes on to the loss and the metrics.
        counts = None if class_counts is None else check_class_counts(class_counts, num_classes=num_classes)
        if len(input_shape) != 3:
            raise ValueError(f"Expected argument `input_shape` (C, H, W), but got {tuple(input_shape)}")
        check_choice("init_parts", init_parts, INIT_PARTS)
        check_choice("freeze", freeze, FREEZE_OPTIONS)
        check_choice("on_nonfinite", on_nonfinite, ("raise", "skip"))
        ignore = [name for name, value in (("backbone", backbone), ("head", head), ("loss", loss)) if isinstance(value, nn.Module)]
        self.save_hyperparameters(ignore=ignore)
        self.num_classes = num_classes
        self.class_counts = None if counts is None else counts.tolist()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.noise_rate = float(noise_rate)
        self.on_nonfinite = on_nonfinite
        self.channels_last = channels_last
        # The settings objects; the saved hyperparameters keep them as plain dicts, so that checkpoints
        # load with torch.load(weights_only=True) (Lightning's default) and need no class allow-list.
        self.optimizer_config = optimizer if isinstance(optimizer, OptimizerConfig) else OptimizerConfig(**optimizer)
        self.lr_schedule = lr_schedule if isinstance(lr_schedule, LRSchedule) else LRSchedule(**lr_schedule)
        self.hparams["optimizer"] = dataclasses.asdict(self.optimizer_config)
        self.hparams["lr_schedule"] = dataclasses.asdict(self.lr_schedule)

        self.net = Network(self.build_backbone(backbone, backbone_args), nn.Identity())
        self.net.head = self.build_head(head, head_args)
        self.loss_fn = self.build_loss(loss, loss_args)
        # Per-class weights of the reduction: all ones is the plain mean; the DRW schedule
        # (lt_noise.callbacks.DeferredReweighting) sets class-balanced weights from a given epoch.
        self.register_buffer("class_weights", torch.ones(num_classes))
        self.val_metrics = ClassificationMetrics(num_classes, self.class_counts)
        self.test_metrics = ClassificationMetrics(num_classes, self.class_counts)
        # One record per completed validation epoch (for best-epoch accuracy); kept in checkpoints.
        self.history: list[dict[str, float]] = []
        # The last computed evaluation report per stage, for figure callbacks.
        self.reports: dict[str, dict[str, Any]] = {}
        # The current training step's records (record_training_logits), for callbacks; not state.
        self.training_records: list[TrainingRecord] = []
        self._seed = global_seed(None)
        if init_from is not None:
            self.load_network_weights(init_from, parts=init_parts)
        self.frozen: list[nn.Module] = []
        self._frozen_parts = "none"
        self.freeze_parts(freeze)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self._compiled = torch.compile(self.net) if compile else None

    # ----------------------------------------------------------------------------------------------
    # Construction hooks (subclasses override to change the parts)
    def build_backbone(self, backbone: str | nn.Module, args: dict[str, Any] | None) -> nn.Module:
        if isinstance(backbone, nn.Module):
            if args:
                raise ValueError("Expected no `backbone_args` with a backbone module instance")
            if not isinstance(getattr(backbone, "feature_dim", None), int):
                raise ValueError("Expected the backbone module to have an int attribute `feature_dim`")
            return backbone
        channels, _, width = self.input_shape
        return build_backbone(backbone, in_channels=channels, image_size=width, **(args or {}))

    def build_head(self, head: str | nn.Module, args: dict[str, Any] | None) -> nn.Module:
        if isinstance(head, nn.Module):
            if args:
                raise ValueError("Expected no `head_args` with a head module instance")
            return head
        return build_head(head, feature_dim=self.feature_dim, num_classes=self.num_classes, **(args or {}))

    def build_loss(self, loss: str | nn.Module, args: dict[str, Any] | None) -> nn.Module:
        if isinstance(loss, nn.Module):
            if args:
                raise ValueError("Expected no `loss_args` with a loss module instance")
            return loss
        return build_loss(loss, num_classes=self.num_classes, class_counts=self.class_counts, **(args or {}))

    # ----------------------------------------------------------------------------------------------
    # Two-stage training: initial weights and frozen parts
    def load_network_weights(self, path: str, *, parts: str = "net") -> None:
        """Load the network's weights (``parts="net"``) or the backbone's (``"backbone"``) from ``path``:
        a checkpoint of any lt-noise method or a saved network state dict
        (:func:`lt_noise.models.parts.load_network_weights`)."""
        load_network_weights(self.net, path, parts=parts)

    def freeze_parts(self, what: str) -> None:
        """Stop training part of the network from now on: ``"backbone"`` or ``"backbone_except_last_block"``
        (:func:`lt_noise.models.parts.freeze_parts`; ``"none"`` and a repeat change nothing). Frozen
        modules stay in eval mode. Before the optimizer is built (``freeze``), the frozen parameters are
        left out of it; later (a stage switch) they keep no gradient."""
        check_choice("freeze", what, FREEZE_OPTIONS)
        if what == "none" or what == self._frozen_parts:
            return
        self.frozen = freeze_parts(self.net, what)
        self._frozen_parts = what

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        for module in getattr(self, "frozen", ()):
            module.eval()
        return self

    # ----------------------------------------------------------------------------------------------
    # The network
    @property
    def backbone(self) -> nn.Module:
        return self.net.backbone

    @property
    def head(self) -> nn.Module:
        return self.net.head

    @property
    def feature_dim(self) -> int:
        return self.net.backbone.feature_dim

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of images (B, C, H, W)."""
        net = self._compiled if self._compiled is not None else self.net
        return net(self._prepare_input(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, D) of images (B, C, H, W)."""
        return self.net.backbone(self._prepare_input(x))

    # ----------------------------------------------------------------------------------------------
    # The objective
    def per_sample_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sample losses (B,) of the configured loss module."""
        return self.loss_fn(logits, targets)

    def predictive_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits whose softmax is the model's predictive distribution: the network's, times the loss's
        ``logit_scale`` (LDAM's ``s`` on cosine logits; 1 for every other loss). Evaluation, predictions and
        the training records read these; the argmax is the network's."""
        scale = getattr(self.loss_fn, "logit_scale", 1.0)
        return logits if scale == 1.0 else logits * scale

    def reduce(self, losses: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The reduction of per-sample losses to the training objective: a class-weighted mean.

        With the default all-ones ``class_weights`` this is the plain mean. Subclasses that weight
        samples (ABSGD) override this method; it is the only place where losses are reduced.
        """
        weights = self.class_weights[targets]
        return (weights * losses).sum() / weights.sum()

    def check_finite(self, loss: torch.Tensor, index: torch.Tensor) -> bool:
        """True when ``loss`` is finite on every rank; otherwise raise (or return False to skip).

        Under DDP the verdict is all-reduced, so that every rank stops (or skips) together.
        """
        finite = all_reduce_(torch.isfinite(loss.detach()).all().to(torch.int32), op=dist.ReduceOp.MIN)
        if bool(finite):
            return True
        message = (
            f"Non-finite training loss ({loss.detach().float().item()}) at epoch {self.current_epoch}, "
            f"global step {self.global_step}, on rank {self.global_rank}; sample indices of the batch: "
            f"{index.tolist()}. No update was made with it; the last checkpoint is intact."
        )
        if self.on_nonfinite == "raise" or self.trainer.world_size > 1:
            raise NonFiniteLossError(message)
        self.print(f"Skipping batch. {message}")
        return False

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int):
        x, targets, index = batch
        logits = self(x)
        losses = self.per_sample_loss(logits, targets)
        loss = self.reduce(losses, targets, index)
        if not self.check_finite(loss, index):
            return None
        self.record_training_logits(logits, targets, index)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(targets))
        self.log("train/acc", (logits.argmax(dim=1) == targets).float().mean(), batch_size=len(targets))
        return loss

    def record_training_logits(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> None:
        """Hand the logits (B, K) a training step computed for samples ``index`` (B,) with observed ``labels``
        (B,) to the callbacks (:attr:`training_records`, cleared at every step's start).

        Costs nothing: the tensors are detached references, read by callbacks in ``on_train_batch_end``.
        Call it once per sample and step with the sample's own logits (not a mixed image's: see
        :class:`~lt_noise.methods.MixupClassifier`), before any margin the objective adds to them.
        """
        self.training_records.append(TrainingRecord(self.predictive_logits(logits.detach()), labels.detach(), index.detach()))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.training_records = []
        # The generators of the CPU and of the training device only: torch.manual_seed would also queue a
        # lazy seeding (with a formatted stack trace) for every accelerator backend not initialised, at
        # every step (~1.4 ms a step, and a queue that grows for the whole run).
        seed = sample_seed(self._seed ^ _STEP_STREAM, self.global_step, self.global_rank)
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    # ----------------------------------------------------------------------------------------------
    # Evaluation
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, targets, _ = batch
        self.val_metrics.update(self.predictive_logits(self(x)), targets)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, targets, _ = batch
        self.test_metrics.update(self.predictive_logits(self(x)), targets)

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """``{"logits", "probs", "target", "index"}`` of a batch: float32 predictive logits (B, K) (see
        :meth:`predictive_logits`) and their softmax, the given labels (-1 where unknown) and the samples'
        indices in the predicted set."""
        x, targets, index = batch
        logits = self.predictive_logits(self(x).float())
        return {"logits": logits, "probs": logits.softmax(dim=1), "target": targets, "index": index}

    def _finish_eval(self, stage: str, metrics: ClassificationMetrics) -> dict[str, Any]:
        report = metrics.compute()  # synced across ranks
        metrics.reset()
        self.reports[stage] = report
        scalars = {k: report[k] for k in ("acc", "many", "medium", "few", "ece") if k in report}
        # NaN (an empty shot group) is not logged: TensorBoard plots it as a gap that hides the others.
        self.log_dict({f"{stage}/{k}": v for k, v in scalars.items() if v == v and k != "acc"})
        self.log(f"{stage}/acc", scalars["acc"], prog_bar=True)
        return scalars

    def on_validation_epoch_end(self) -> None:
        scalars = self._finish_eval("val", self.val_metrics)
        if self.trainer.sanity_checking:
            return
        self.history.append({"epoch": self.current_epoch, **scalars, "num_samples": self.reports["val"]["num_samples"]})
        best = max(self.history, key=lambda record: record["acc"])
        self.log("val/best_acc", best["acc"], prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test", self.test_metrics)

    # ----------------------------------------------------------------------------------------------
    # Optimisation
    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters handed to the optimizer (all that require gradients by default)."""
        return (p for p in self.parameters() if p.requires_grad)

    def configure_optimizers(self):
        optimizer = self.optimizer_config.build(self.trainable_parameters())
        scheduler = self.lr_schedule.build(optimizer, self.trainer.max_epochs if self._trainer else None)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def default_callbacks(self) -> list[L.Callback]:
        """The callbacks this method always runs with: :attr:`DEFAULT_CALLBACKS`, built by name in the
        callbacks layer (:mod:`lt_noise.callbacks.defaults`). Subclasses extend the names, or this list:
        ``return super().default_callbacks() + [MyDiagnostics()]``."""
        return build_default_callbacks(self.DEFAULT_CALLBACKS)

    def configure_callbacks(self) -> list[L.Callback]:
        # Only what the trainer lacks: a second fit/test on the same trainer (the CLI tests after fit)
        # and callbacks the user configured keep their instances, with their state and settings.
        present = {type(c) for c in self.trainer.callbacks} if self._trainer is not None else set()
        return [c for c in self.default_callbacks() if type(c) not in present]

    # ----------------------------------------------------------------------------------------------
    # Consistency with the data and with checkpoints
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        data_classes = getattr(datamodule, "num_classes", None)
        if data_classes is not None and data_classes != self.num_classes:
            raise ValueError(
                f"Expected the datamodule to have num_classes={self.num_classes} like the model, but "
                f"{type(datamodule).__name__} has {data_classes}"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lt_noise"] = {
            "method": type(self).__qualname__,
            "num_classes": self.num_classes,
            "history": list(self.history),
            # The seed of the per-step RNG stream: a resumed process may start with another global seed.
            "step_seed": self._seed,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("lt_noise")
        if saved is None:
            raise ValueError("Expected an lt-noise checkpoint (with an 'lt_noise' section), but it has none")
        if saved["num_classes"] != self.num_classes:
            raise ValueError(
                f"Expected a checkpoint with num_classes={self.num_classes}, but it was saved with "
                f"num_classes={saved['num_classes']}"
            )
        if saved["method"] != type(self).__qualname__:
            raise ValueError(
                f"Expected a checkpoint of method {type(self).__qualname__}, but it was saved by {saved['method']}"
            )
        self.history = list(saved["history"])
        self._seed = int(saved.get("step_seed", self._seed))
