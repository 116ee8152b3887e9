"""Diagnostics of the curriculum view (Ou & Zhang, "A Curriculum View of Robust Loss Functions", ICLR
2023; papers/003), for any method: α_t, snr, Δ_y histograms of clean vs noisy samples, w(Δ_y).

Every training step, the callback reads the batch's logits (a forward hook on the model's network, so
the method needs no change), the soft margins Δ_y = s_y - log Σ_{i≠y} exp(s_i) and the weight w_i that
the method's objective gives each sample's gradient direction -∇_s Δ_y (:func:`sample_weights`), and
the clean/noisy flag of each sample from the datamodule's diagnostics-only ``is_noisy`` array, looked
up by the batch's training indices (methods never see it). With η_t the learning rate of step t:

- the average update scale up to step t (§5.1)

      α_t = Σ_{i≤t} η_i Σ_{s∈B_i} w_s ‖∇_s Δ_y‖_1 / Σ_{i≤t} η_i |B_i|,    ‖∇_s Δ_y‖_1 = 2  (App. A.5.1)

  The paper's text prints the numerator's summand as η_i ‖∇_s Δ_y‖_1, which is the constant 2η_i;
  the sample weight belongs there (the summand is the sample's gradient norm ‖∇_s L‖_1 = w ‖∇_s Δ_y‖_1,
  "the average scale of parameter update"), and we include it. Table 2 prints α_t "scaled by 10^4"
  (CE on CIFAR-10: 45.74, i.e. 0.0046), smaller than this definition can give for unit-maximum
  weights under any reading we tried (CE's lr-weighted mean of 2(1 - p_y) over a whole run is far
  above 0.0046); compare α_t across losses and over training, not with Table 2's magnitudes.
- snr = w̄_clean / w̄_noise (§5.2, App. C.2), learning-rate weighted:
  w̄_clean = Σ_{i,t} η_t 1[clean] w_{i,t} / Σ_{i,t} η_t 1[clean], likewise w̄_noise;
- per epoch, histograms of Δ_y of the clean and of the noisy training samples, as each sample was
  seen during that epoch's training step (the paper's Fig. 3), logged as a ridge figure;
- once, after the first ``initial_batches`` steps: w(Δ_y) with the Δ_y distribution of those first
  batches, i.e. of the freshly initialised network (Figs. 2 and 7), and E[Δ_y] (Eq. (4)).

Sums run over all processes: under DDP each rank accumulates its shard and the sums are all-reduced
(one small collective) every ``log_every_n_steps`` steps and at the end of every epoch; the scalars
``curriculum/alpha_t``, ``curriculum/snr``, ``curriculum/w_clean`` and ``curriculum/w_noise`` are
logged then. The cumulative sums and the per-epoch histograms are the callback's checkpoint state, so a
resumed run continues them exactly (a checkpoint written mid-epoch between two synchronisations
leaves out the steps since the last one).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lt_noise.callbacks.curriculum_plots import margin_distributions_figure, weighting_function_figure
from lt_noise.callbacks.logging import log_figure, tensorboard
from lt_noise.distributed import all_reduce_, world_size
from lt_noise.losses import LabelProbabilityLoss, Reweighted, expected_initial_margin, soft_margin
from lt_noise.validation import check_int

__all__ = ["CurriculumDiagnostics", "average_update_scale", "sample_weights", "step_sums", "weight_snr"]

# ‖∇_s Δ_y‖_1 = 1 + Σ_{j≠y} p_j / (1 - p_y) = 2 for every score vector (papers/003, App. A.5.1).
MARGIN_GRADIENT_L1 = 2.0
# The cumulative sums, in this order (see step_sums).
STATISTICS = ("update_scale", "lr_samples", "clean_weight", "clean_lr", "noise_weight", "noise_lr")
# Points of the Δ grid on which weighting functions are drawn.
CURVE_POINTS = 801


def step_sums(weights: Tensor, noisy: Tensor, lr: float) -> Tensor:
    """One step's contribution to the sums of :data:`STATISTICS` (float64, shape (6,)).

    ``weights`` (B,) are the samples' weights w, ``noisy`` (B,) bool their noise flags, ``lr`` the step's
    learning rate η: (η Σ w ‖∇Δ‖_1, η B, η Σ_clean w, η #clean, η Σ_noisy w, η #noisy).
    """
    w = weights.detach().to(torch.float64)
    noisy = noisy.to(torch.bool)
    clean = ~noisy
    zero = w.new_zeros(())
    return lr * torch.stack(
        [
            MARGIN_GRADIENT_L1 * w.sum(),
            zero + w.numel(),
            torch.where(clean, w, zero).sum(),
            clean.sum().to(torch.float64),
            torch.where(noisy, w, zero).sum(),
            noisy.sum().to(torch.float64),
        ]
    )


def average_update_scale(sums: Tensor) -> float:
    """α_t from the cumulative sums (NaN before any step)."""
    return float(sums[0] / sums[1]) if sums[1] > 0 else math.nan


def weight_snr(sums: Tensor) -> float:
    """snr = w̄_clean / w̄_noise from the cumulative sums (NaN without clean or noisy samples)."""
    if sums[3] <= 0 or sums[5] <= 0 or sums[4] <= 0:
        return math.nan
    return float((sums[2] / sums[3]) / (sums[4] / sums[5]))


def sample_weights(module: nn.Module, logits: Tensor, targets: Tensor) -> Tensor | None:
    """The weight w >= 0 of each sample's gradient direction -∇_s Δ_y in ``module``'s objective (B,).

    Read from the method's loss module ``module.loss_fn``, in order of preference:

    1. a :class:`~lt_noise.losses.Reweighted` loss (``Curriculum``): its ``sample_weights``, the
       normalised ŵ(Δ̂_y) it applies, with its scale/shift fix;
    2. a loss of p_y alone (CE, MAE, GCE, ...): ``weight(Δ_y)``, not normalised, i.e. the update scale
       a plain :class:`~lt_noise.methods.Classifier` really applies;
    3. any other loss (NCE, APL combinations, LDAM, ...): the effective weight ‖∇_s L‖_1 / 2 by autograd
       on the logits, which equals w(Δ_y) for a p_y-loss; the paper leaves these losses out ("/" in
       Tables 2 and 5), so read it as an extension.

    Returns None when the module has no ``loss_fn``. Class weights or other factors of the method's
    reduction (ABSGD's attention, DRW) are not included.
    """
    loss = getattr(module, "loss_fn", None)
    if loss is None:
        return None
    if callable(getattr(loss, "sample_weights", None)):
        return loss.sample_weights(logits, targets).detach()
    if isinstance(loss, LabelProbabilityLoss) and loss.is_py_loss:
        with torch.no_grad():
            return loss.weight(soft_margin(logits, targets))
    with torch.enable_grad():
        scores = logits.detach()
        scores = (scores if scores.dtype == torch.float64 else scores.float()).requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(scores, targets).sum(), scores)
    return grad.abs().sum(dim=1) / MARGIN_GRADIENT_L1


def _weight_curves(module: nn.Module, grid: Tensor, num_classes: int) -> dict[str, Tensor]:
    """label -> w on ``grid`` (unit maximum) of the module's loss: the vanilla function and, for a
    Reweighted loss with a fix, the function it applies."""
    loss = getattr(module, "loss_fn", None)
    base = loss.loss if isinstance(loss, Reweighted) else loss
    curves: dict[str, Tensor] = {}
    with torch.no_grad():
        if isinstance(base, LabelProbabilityLoss) and base.is_py_loss:
            curves[f"{type(base).__name__} w(Δ)"] = base.weight(grid) / base.max_weight()
        if isinstance(loss, Reweighted) and loss.mode is not None:
            # Scores whose margin is exactly the grid value: s_0 = Δ + log(K - 1), the others 0.
            logits = torch.zeros(len(grid), num_classes, dtype=grid.dtype)
            logits[:, 0] = grid + math.log(num_classes - 1)
            label = f"{loss.mode} fix, τ = {loss.tau:g}"
            curves[label] = loss.sample_weights(logits, torch.zeros(len(grid), dtype=torch.long))
    return curves


class CurriculumDiagnostics(Callback):
    """Log the curriculum view's diagnostics of any method to TensorBoard (see the module docstring).

    Args:
        log_every_n_steps: how often the sums are synchronised and α_t, snr logged (default: the
            trainer's ``log_every_n_steps``); they are also synchronised at the end of every epoch.
        figure_every_n_epochs: how often the Δ_y histogram figure is logged (and at the last epoch).
        bins: number of histogram bins over ``margin_range``.
        margin_range: (low, high) of the Δ_y histograms; margins outside land in the edge bins.
        initial_batches: how many first training steps give the "initial" Δ_y distribution of the
            w(Δ_y) figure (1: only the untrained network's first batch).
        max_rows: most epochs drawn in one histogram figure (evenly spaced, first and last included).

    Needs a datamodule with ``is_noisy`` (every lt-noise datamodule) and training batches ``(x, y, index)``,
    or a method that maps its batches with ``diagnostics_targets(batch) -> (labels, index) | None``.
    """

    def __init__(
        self,
        *,
        log_every_n_steps: int | None = None,
        figure_every_n_epochs: int = 1,
        bins: int = 160,
        margin_range: tuple[float, float] = (-20.0, 20.0),
        initial_batches: int = 1,
        max_rows: int = 10,
    ) -> None:
        for name, value in (("figure_every_n_epochs", figure_every_n_epochs), ("bins", bins),
                            ("initial_batches", initial_batches), ("max_rows", max_rows)):
            check_int(name, value, minimum=1)
        check_int("log_every_n_steps", log_every_n_steps, minimum=1, optional=True)
        low, high = (float(v) for v in margin_range)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(
                f"Expected argument `margin_range` (low, high) with finite low < high, but got {margin_range!r}"
            )
        self.log_every_n_steps = log_every_n_steps
        self.figure_every_n_epochs = figure_every_n_epochs
        self.bins = bins
        self.margin_range = (low, high)
        self.initial_batches = initial_batches
        self.max_rows = max_rows
        self._reset()
        self._hook: Any = None
        self._noisy_table: Tensor | None = None
        self._expected_batch: int | None = None
        self._targets: tuple[Tensor, Tensor] | None = None
        self._collect_initial = False
        self._captured: Tensor | None = None
        self._lr = 0.0
        self._device = torch.device("cpu")
        self._warned: set[str] = set()

    # ----------------------------------------------------------------------------------------------
    # State (synchronised across processes; saved in checkpoints)
    def _reset(self) -> None:
        self.totals = torch.zeros(len(STATISTICS), dtype=torch.float64)
        self.epochs: list[int] = []
        self.epoch_counts = torch.zeros(0, 2, self.bins, dtype=torch.float64)  # (epoch, clean/noisy, bin)
        self.current = torch.zeros(2, self.bins, dtype=torch.float64)  # the open epoch's histograms
        self.current_epoch: int | None = None
        self._pending: Tensor | None = None  # this process's sums since the last synchronisation
        self._initial: list[Tensor] = []
        self._logged_step: int | None = None

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(*self.margin_range, self.bins + 1)

    @property
    def alpha_t(self) -> float:
        """α_t up to the last synchronisation."""
        return average_update_scale(self.totals)

    @property
    def snr(self) -> float:
        """snr = w̄_clean / w̄_noise up to the last synchronisation (NaN without noisy samples)."""
        return weight_snr(self.totals)

    def metrics(self) -> dict[str, float]:
        """The logged scalars: α_t, snr, w̄_clean, w̄_noise (NaN ones are left out)."""
        t = self.totals
        values = {
            "curriculum/alpha_t": self.alpha_t,
            "curriculum/snr": self.snr,
            "curriculum/w_clean": float(t[2] / t[3]) if t[3] > 0 else math.nan,
            "curriculum/w_noise": float(t[4] / t[5]) if t[5] > 0 else math.nan,
        }
        return {k: v for k, v in values.items() if v == v}

    def state_dict(self) -> dict[str, Any]:
        return {
            "bins": self.bins,
            "margin_range": list(self.margin_range),
            "totals": self.totals.clone(),
            "epochs": list(self.epochs),
            "epoch_counts": self.epoch_counts.clone(),
            "current": self.current.clone(),
            "current_epoch": self.current_epoch,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict["bins"] != self.bins or tuple(state_dict["margin_range"]) != self.margin_range:
            raise ValueError(
                f"Expected a CurriculumDiagnostics state with bins={self.bins} and margin_range={self.margin_range}, "
                f"but the checkpoint has bins={state_dict['bins']} and margin_range={tuple(state_dict['margin_range'])}"
            )
        self.totals = state_dict["totals"].to(torch.float64).cpu().clone()
        self.epochs = list(state_dict["epochs"])
        self.epoch_counts = state_dict["epoch_counts"].to(torch.float64).cpu().clone()
        self.current = state_dict["current"].to(torch.float64).cpu().clone()
        self.current_epoch = state_dict["current_epoch"]

    # ----------------------------------------------------------------------------------------------
    # Accumulation
    def record(self, delta: Tensor, weights: Tensor | None, noisy: Tensor, lr: float) -> None:
        """Add one step of this process: margins Δ_y (B,), weights (B,) or None, noise flags (B,)."""
        noisy = noisy.to(torch.bool)
        low, high = self.margin_range
        delta = delta.detach().to(torch.float64)
        # Bin index of each margin (outside the range: the edge bins); counted by a one-hot product,
        # which is deterministic on every device (histc/bincount are not on CUDA).
        index = ((delta.clamp(low, high) - low) / (high - low) * self.bins).long().clamp_(0, self.bins - 1)
        groups = torch.stack([~noisy, noisy], dim=1).to(torch.float64)  # (B, 2): clean, noisy
        counts = torch.nn.functional.one_hot(index, self.bins).to(torch.float64).T @ groups  # (bins, 2)
        sums = step_sums(weights, noisy, lr) if weights is not None else delta.new_zeros(len(STATISTICS))
        step = torch.cat([sums, counts.T.reshape(-1)])
        self._pending = step if self._pending is None else self._pending + step

    def flush(self) -> None:
        """Add every process's pending sums to the totals (a collective under torch.distributed)."""
        pending = self._pending
        if world_size() > 1:
            if pending is None:
                pending = torch.zeros(len(STATISTICS) + 2 * self.bins, dtype=torch.float64, device=self._device)
            all_reduce_(pending)
        self._pending = None
        if pending is None:
            return
        pending = pending.cpu()
        self.totals += pending[: len(STATISTICS)]
        self.current += pending[len(STATISTICS) :].reshape(2, self.bins)

    def _close_epoch(self) -> None:
        if self.current_epoch is None:
            return
        self.epochs.append(self.current_epoch)
        self.epoch_counts = torch.cat([self.epoch_counts, self.current[None]])
        self.current = torch.zeros(2, self.bins, dtype=torch.float64)
        self.current_epoch = None

    # ----------------------------------------------------------------------------------------------
    # Lightning hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._reset()  # a checkpoint, if any, is restored after this

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "is_noisy"):
            raise ValueError(
                "Expected a datamodule with the diagnostics array `is_noisy` (every lt-noise datamodule), but got "
                f"{type(datamodule).__name__}"
            )
        self._device = pl_module.device
        self._noisy_table = torch.as_tensor(np.asarray(datamodule.is_noisy), dtype=torch.bool, device=pl_module.device)
        network = getattr(pl_module, "net", pl_module)
        self._hook = network.register_forward_hook(self._capture)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The training state (global step) is restored by now: a resumed run has no "initial" batches.
        self._collect_initial = trainer.global_step == 0

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._noisy_table = None

    def _capture(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if (
            self._expected_batch is not None
            and self._captured is None
            and isinstance(output, Tensor)
            and output.ndim == 2
            and output.shape[0] == self._expected_batch
        ):
            self._captured = output.detach()

    def _targets_and_index(self, pl_module: L.LightningModule, batch: Any) -> tuple[Tensor, Tensor] | None:
        """(labels, training indices) of the batch's main forward pass, or None to skip the batch.

        A method with another batch structure may define ``diagnostics_targets(batch)`` returning them
        (or None); otherwise batches must be ``(x, y, index)``.
        """
        adapter = getattr(pl_module, "diagnostics_targets", None)
        if callable(adapter):
            return adapter(batch)
        if isinstance(batch, (tuple, list)) and len(batch) == 3:
            return batch[1], batch[2]
        self._warn_once("batch", "CurriculumDiagnostics skips training batches that are not (x, y, index) (define "
                        "`diagnostics_targets(batch)` on the method to map them)")
        return None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._targets = self._targets_and_index(pl_module, batch)
        self._expected_batch = None if self._targets is None else len(self._targets[0])
        self._captured = None
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else 0.0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        logits, self._captured, self._expected_batch = self._captured, None, None
        labelled, self._targets = self._targets, None
        if self.current_epoch is None:
            self.current_epoch = trainer.current_epoch
        if labelled is not None and logits is None:
            self._warn_once("no-logits", "CurriculumDiagnostics saw no logits of this batch's size from the "
                            "model's network (a compiled network or a method that bypasses `net`?); skipping it")
        elif labelled is not None:
            targets, index = labelled
            delta = soft_margin(logits, targets)
            weights = sample_weights(pl_module, logits, targets)
            if weights is None:
                self._warn_once("no-weights", "CurriculumDiagnostics found no loss on the model: it logs only the "
                                "Δ_y histograms")
            self.record(delta, weights, self._noisy_table[index], self._lr)
            if self._collect_initial and len(self._initial) < self.initial_batches:
                self._initial.append(delta.detach().float().cpu())
                if len(self._initial) == self.initial_batches:
                    self._log_weighting_function(trainer, pl_module)
        every = self.log_every_n_steps or trainer.log_every_n_steps or 1
        last = batch_idx + 1 == trainer.num_training_batches
        if trainer.global_step % every == 0 or last:
            self.flush()
            self._log_scalars(trainer)
        if last:
            self._close_epoch()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Usually a no-op (the last batch synchronised and closed the epoch); it matters when training
        # stops mid-epoch (max_steps). Every process calls it, so the collective is safe.
        self.flush()
        self._log_scalars(trainer)
        self._close_epoch()
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        if (last or (epoch + 1) % self.figure_every_n_epochs == 0) and tensorboard(trainer) is not None:
            self._log_histograms(trainer, pl_module)

    # ----------------------------------------------------------------------------------------------
    # Logging (rank 0)
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)

    def _log_scalars(self, trainer: L.Trainer) -> None:
        if self._logged_step == trainer.global_step:
            return
        self._logged_step = trainer.global_step
        metrics = self.metrics()
        if metrics and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def _curves(self, pl_module: L.LightningModule) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        grid = torch.linspace(*self.margin_range, CURVE_POINTS, dtype=torch.float64)
        num_classes = int(getattr(pl_module, "num_classes", 0) or 0)
        curves = _weight_curves(pl_module, grid, num_classes) if num_classes >= 2 else {}
        return grid.numpy(), {k: v.cpu().numpy() for k, v in curves.items()}

    def _log_weighting_function(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if tensorboard(trainer) is None:
            return
        grid, curves = self._curves(pl_module)
        margins = torch.cat(self._initial).numpy()
        num_classes = int(getattr(pl_module, "num_classes", 0) or 0)
        loss = getattr(pl_module, "loss_fn", None)
        expected, source = None, ""
        if isinstance(loss, Reweighted) and loss.mode is not None and num_classes >= 2:
            expected, source = -abs(float(loss.margin_estimate(num_classes))), "the fix's E[Δ_y]"
        elif num_classes >= 2:
            expected, source = expected_initial_margin(num_classes), f"E[Δ_y] by Eq. (4) for k = {num_classes}"
        figure = weighting_function_figure(
            grid, curves, margins, expected_margin=expected, title=f"w(Δ_y) and Δ_y at initialisation ({source})",
        )
        log_figure(trainer, "curriculum/weighting_function", figure)

    def _log_histograms(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.epochs:
            return
        rows = np.unique(np.linspace(0, len(self.epochs) - 1, min(self.max_rows, len(self.epochs))).round().astype(int))
        counts = self.epoch_counts[rows].numpy()
        grid, curves = self._curves(pl_module)
        curve = list(curves.values())[-1] if curves else None
        figure = margin_distributions_figure(
            self.edges, [self.epochs[i] for i in rows], counts[:, 0], counts[:, 1],
            weight_grid=grid if curve is not None else None, weight_curve=curve,
            title=f"Δ_y of noisy (green) and clean (orange) training samples; snr = {self.snr:.3g}",
        )
        log_figure(trainer, "curriculum/margin_distributions", figure)
