"""The label-issue report: which training labels are probably wrong, from the one training run you make.

Every run of ``fit`` leaves ``label_issues.csv`` in its log directory (DESIGN.md §9): one row per training
sample, most suspect first, with its observed label, a suggested label and a score. Figures beside it
(and in TensorBoard): the score of truly clean vs truly noisy samples and the precision-recall curve of
the ranking where the datamodule knows the noise mask (synthetic noise), and the most suspect images
with their observed and suggested labels.

The scores. Both come from the records of the training steps (no extra pass), averaged over the epochs
from ``start_epoch`` on; low = suspect.

- ``score="balanced_margin"`` (default): with p̄ the sample's mean softmax over those epochs (a temporal
  ensemble of the network's predictions) and t_j the confident threshold of class j (the mean p̄_j of the
  samples labelled j; Northcutt, Jiang & Chuang, "Confident Learning", JAIR 2021, Sec. 3.1),

      score(x, y) = log(p̄_y / t_y) - max_{j != y} log(p̄_j / t_j).

  Dividing by t_j removes what a class's probabilities owe to its frequency or to the noise that flows
  into it (a long-tailed or flip-inflated class is predicted more often and its members more
  confidently), as confident learning's per-class thresholds do, whatever loss trained the model.
- ``score="aum"``: the area under the margin (Pleiss, Zhang, Elenberg & Weinberger, "Identifying
  Mislabeled Data using the Area Under the Margin Ranking", NeurIPS 2020, eq. 1-2). With z(t) the logits
  a training step computed for sample x with observed label y at epoch t,

      M_t(x, y) = z_y(t) - max_{j != y} z_j(t),        AUM(x, y) = mean over epochs t >= t0 of M_t(x, y)

  (each epoch's margin is the mean of the sample's records in that epoch, so a sample counts once per
  epoch whatever the sampler).

Both rest on the same observation: a correctly labelled sample is learned early from the patterns it
shares with its class, so its margin is soon positive and large; a mislabelled one is pulled towards its
true class by its look-alikes and fitted late, by memorisation, so its margin stays negative or small for
most of training. Averaging over epochs keeps that signal after the network has memorised the noisy
labels, which a last-epoch score (loss or margin of the final model) loses. Measured
(``tools/bench_label_issues.py``, ``docs/results/label-issues.md``): on symmetric noise the two rank
alike (AUROC 0.992); on asymmetric noise, where the flips feed some classes, the balanced margin ranks
better (AUROC 0.918 vs 0.881; cleanlab on 5-fold cross-validation 0.878), hence the default.

Why this score (choices, against the alternatives we read):

- They need nothing but the logits every training step already computes (:meth:`Classifier.
  record_training_logits`), so it costs one ``index_add`` per step and works for every method: it
  measures the network's logits, not any method's objective. cleanlab's scores (self-confidence,
  normalized margin; Northcutt et al. 2021, "Confident Learning") need *out-of-sample* predicted
  probabilities, i.e. K-fold cross-validation: K extra trainings (``tools/bench_label_issues.py``
  compares the two; ``docs/results/label-issues.md``).
- Against the other training-dynamics scores: the mean loss of the observed class cannot tell a hard
  sample (all logits low) from a wrong one (another class's logit high), which the margin against the
  *largest other* logit does; forgetting events (Toneva et al., ICLR 2019) are small integers that tie
  for most samples and need per-sample correctness history. Pleiss et al. report that removing the
  samples AUM flags beats earlier noisy-label methods on synthetic and real noise (CIFAR, Tiny ImageNet,
  WebVision).
- Epochs from ``start_epoch`` (default 1): the first epoch's margins, of a network that has learned
  nothing yet, only add noise (Pleiss et al. compute AUM over the epochs before the first learning-rate
  drop; with the cosine and multi-step schedules of this project every epoch counts).
- Dynamic Loss's own label corrector g(r|y) is a function of the sample's within-class loss-rank bin,
  i.e. of its current loss; these scores are the same kind of evidence averaged over training, and the method's
  margin q (added to the logits in training) is left out, so the scores of every method are comparable.
- ``adjust="prior"`` subtracts log n_y (observed class counts) from the logits before anything is
  recorded (margins and softmax): the logit adjustment of Menon et al. (ICLR 2021), the class-balanced
  posterior. For a model trained with plain cross-entropy on long-tailed data it keeps clean tail
  samples from looking suspect; for one trained with a balanced loss (Balanced Softmax, logit-adjusted,
  LDAM-DRW) the logits are balanced already, and it would over-correct. Default ``"none"``: the balanced
  margin's thresholds already divide out the class frequencies (see the benchmark).

Suggested label: the class of the largest p̄_j / t_j (``"balanced_margin"``) or of the largest p̄_j
(``"aum"``), which may be the observed label itself for a sample that is not suspect. Keeping a
per-class sum costs N x K floats; above ``max_probability_state`` entries (2^24 by default: ImageNet-LT,
iNaturalist) only AUM is kept, and the suggestion is the largest other class of the sample's last
record, which needs N integers.

"Suspected" flags the k most suspect samples, k the number of wrong labels that confident learning
(Northcutt et al., JAIR 2021: the off-diagonal of the confident joint, cleanlab's default
``num_label_issues``) estimates from the same mean probabilities: the ranking is the score's, the count
the estimator's (cleanlab's documentation offers such a count as the cut-off of a custom ranking).
Pleiss et al. instead calibrate a threshold with extra mislabelled "threshold samples", which changes
training; the plain score < 0 flags too many (the benchmark reports both). Without the probability sums
(huge N x K) the flag is AUM < 0.

State and distribution: per-sample sums (float64) and counts live on the model's device and are the
callback's checkpoint state, so a resumed run continues them exactly. Each process adds its own
samples; at the end of every epoch the epoch's sums are all-reduced (one collective) and each sample
seen in the epoch adds the mean of its records once: samples ``DistributedSampler`` repeats to pad the
last batch are not counted twice. A checkpoint written mid-epoch under DDP holds rank 0's part of the
open epoch only (Lightning's checkpoints are written at epoch ends).

The standalone command ``lt-noise label_issues --config run/config.yaml --ckpt_path .../last.ckpt``
writes the same report from a finished run: from this callback's state in the checkpoint when there is
one, else from one pass of the checkpoint's model over the training set (the margin of the final model,
a weaker score; the output says which). That pass is this callback with ``from_predictions=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from lt_noise.callbacks.label_issues_plots import precision_recall_figure, score_histogram_figure, suspects_grid_figure
from lt_noise.callbacks.label_issues_report import (
    COLUMNS,
    SUSPECT_THRESHOLD,
    LabelIssueReport,
    assigned_margin,
    balanced_margin,
    confident_issue_count,
    detection_metrics,
    most_suspect,
    precision_recall_at_each_rank,
)
from lt_noise.callbacks.logging import log_figure, tensorboard
from lt_noise.callbacks.tables import save_figure, write_csv
from lt_noise.distributed import all_reduce_, world_size
from lt_noise.validation import check_choice, check_flag, check_int

__all__ = ["ADJUSTMENTS", "MAX_PROBABILITY_STATE", "REPORT_FILE", "SCORES", "LabelIssues"]

ADJUSTMENTS = ("none", "prior")
SCORES = ("balanced_margin", "aum")
# Default bound on the per-sample class-probability sums (N x K float32 entries, 64 MiB), see the docstring.
MAX_PROBABILITY_STATE = 1 << 24
REPORT_FILE = "label_issues.csv"


# --------------------------------------------------------------------------------------------------
class LabelIssues(Callback):
    """Write ``label_issues.csv`` (and its figures) at the end of ``fit``: see the module docstring.

    Reads :attr:`Classifier.training_records` (the logits, observed labels and training indices of every
    training step) and, for the figures only, the datamodule's diagnostics-only ``is_noisy`` array,
    ``sample_path(index)`` and ``sample_image(index)``.

    Args:
        filename: the report's file name in ``dirpath``.
        dirpath: folder of the report (None: the trainer's log directory, beside ``results.json``).
        score: ``"balanced_margin"`` (default) or ``"aum"``, see the module docstring.
        start_epoch: first epoch whose records enter the score (0-based; lowered to the last epoch when
            training is shorter).
        adjust: ``"none"`` (the logits as they are) or ``"prior"`` (logit adjustment by the observed
            class counts before the margin; see the module docstring).
        figures: draw the figures (PNG beside the report, and TensorBoard during ``fit``); None (default):
            when the trainer has a logger (a run a person looks at, not a logger-less fit in a test or a
            script, which gets the CSV only).
        grid_size: number of suspects in the image grid.
        max_probability_state: most N x K entries of the per-class probability sums (the suggested label);
            above it, the suggestion is the largest other class of the last record.
        from_predictions: record the outputs of the predict loop (``logits``, ``target``, ``index`` of each
            batch; the standalone command's pass of a final model over the training set) instead of
            training steps, and write the report at the end of ``predict``.
    """

    def __init__(
        self,
        *,
        filename: str = REPORT_FILE,
        dirpath: str | None = None,
        score: str = "balanced_margin",
        start_epoch: int = 1,
        adjust: str = "none",
        figures: bool | None = None,
        grid_size: int = 32,
        max_probability_state: int = MAX_PROBABILITY_STATE,
        from_predictions: bool = False,
    ) -> None:
        if not isinstance(filename, str) or not filename or Path(filename).name != filename:
            raise ValueError(f"Expected argument `filename` to be a file name without folders, but got {filename!r}")
        check_choice("score", score, SCORES)
        check_int("start_epoch", start_epoch, minimum=0)
        check_choice("adjust", adjust, ADJUSTMENTS)
        if figures is not None:
            check_flag("figures", figures)
        check_int("grid_size", grid_size, minimum=0)
        check_int("max_probability_state", max_probability_state, minimum=0)
        check_flag("from_predictions", from_predictions)
        self.filename = filename
        self.dirpath = dirpath
        self.score = score
        self.start_epoch = start_epoch
        self.adjust = adjust
        self.figures = figures
        self.grid_size = grid_size
        self.max_probability_state = max_probability_state
        self.from_predictions = from_predictions
        self.report_path: Path | None = None
        self._log_prior: Tensor | None = None
        self._active = False
        self._warned: set[str] = set()
        self._reset()

    @property
    def state_key(self) -> str:
        # Several instances (other files or settings) may run side by side.
        return self._generate_state_key(filename=self.filename, adjust=self.adjust)

    # ----------------------------------------------------------------------------------------------
    # State
    def _reset(self) -> None:
        self.num_samples: int | None = None
        self.num_classes: int | None = None
        self.first_epoch: int | None = None
        self.closed_epochs: list[int] = []
        self.current_epoch: int | None = None
        self.totals: dict[str, Tensor] = {}  # margin_sum, epochs, observed, prob_sum | last_other
        self.pending: dict[str, Tensor] = {}  # the open epoch: margin, count, observed, prob | other

    @property
    def keeps_probabilities(self) -> bool:
        return self.num_samples is not None and self.num_samples * self.num_classes <= self.max_probability_state

    def _allocate(self, num_samples: int, num_classes: int, device: torch.device) -> None:
        self.num_samples, self.num_classes = int(num_samples), int(num_classes)
        n = self.num_samples
        self.totals = {
            "margin_sum": torch.zeros(n, dtype=torch.float64, device=device),
            "epochs": torch.zeros(n, dtype=torch.float64, device=device),
            "observed": torch.full((n,), -1, dtype=torch.long, device=device),
        }
        if self.keeps_probabilities:
            self.totals["prob_sum"] = torch.zeros(n, self.num_classes, dtype=torch.float32, device=device)
        else:
            self.totals["last_other"] = torch.full((n,), -1, dtype=torch.long, device=device)
        self._open_pending(device)

    def _open_pending(self, device: torch.device) -> None:
        n = self.num_samples
        self.pending = {
            "margin": torch.zeros(n, dtype=torch.float64, device=device),
            "count": torch.zeros(n, dtype=torch.float64, device=device),
            "observed": torch.full((n,), -1, dtype=torch.long, device=device),
        }
        if self.keeps_probabilities:
            self.pending["prob"] = torch.zeros(n, self.num_classes, dtype=torch.float32, device=device)
        else:
            self.pending["other"] = torch.full((n,), -1, dtype=torch.long, device=device)

    def _to(self, device: torch.device) -> None:
        self.totals = {k: v.to(device) for k, v in self.totals.items()}
        self.pending = {k: v.to(device) for k, v in self.pending.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "first_epoch": self.first_epoch,
            "adjust": self.adjust,
            "score": self.score,
            "closed_epochs": list(self.closed_epochs),
            "current_epoch": self.current_epoch,
            "totals": {k: v.detach().cpu().clone() for k, v in self.totals.items()},
            "pending": {k: v.detach().cpu().clone() for k, v in self.pending.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("adjust", self.adjust) != self.adjust:
            raise ValueError(
                f"Expected a LabelIssues state with adjust={self.adjust!r}, but the checkpoint has {state_dict['adjust']!r}"
            )
        self.num_samples = state_dict["num_samples"]
        self.num_classes = state_dict["num_classes"]
        self.first_epoch = state_dict["first_epoch"]
        self.closed_epochs = list(state_dict["closed_epochs"])
        self.current_epoch = state_dict["current_epoch"]
        self.totals = {k: v.clone() for k, v in state_dict["totals"].items()}
        self.pending = {k: v.clone() for k, v in state_dict["pending"].items()}

    # ----------------------------------------------------------------------------------------------
    # Accumulation
    def record(self, logits: Tensor, labels: Tensor, index: Tensor) -> None:
        """Add one batch of this process: logits (B, K), observed labels (B,), training indices (B,)."""
        logits = logits.detach()
        logits = logits.float() if logits.dtype != torch.float64 else logits
        if self._log_prior is not None:
            logits = logits - self._log_prior.to(logits.device, logits.dtype)
        labels = labels.detach().long()
        index = index.detach().long()
        margin, other = assigned_margin(logits, labels)
        pending = self.pending
        pending["margin"].index_add_(0, index, margin.to(torch.float64))
        pending["count"].index_add_(0, index, torch.ones_like(margin, dtype=torch.float64))
        pending["observed"][index] = labels
        if "prob" in pending:
            pending["prob"].index_add_(0, index, logits.softmax(dim=1).float())
        else:
            pending["other"][index] = other

    def close_epoch(self) -> None:
        """Sum the open epoch over all processes (a collective) and add each seen sample's mean once."""
        if self.current_epoch is None or not self.pending:
            return
        pending = self.pending
        if world_size() > 1:
            stacked = torch.stack([pending["margin"], pending["count"]])
            all_reduce_(stacked)
            pending["margin"], pending["count"] = stacked[0], stacked[1]
            for key in ("observed", "other"):
                if key in pending:
                    all_reduce_(pending[key], op=torch.distributed.ReduceOp.MAX)
            if "prob" in pending:
                all_reduce_(pending["prob"])
        seen = pending["count"] > 0
        count = pending["count"].clamp(min=1.0)
        totals = self.totals
        totals["margin_sum"] += torch.where(seen, pending["margin"] / count, 0.0)
        totals["epochs"] += seen.to(torch.float64)
        totals["observed"] = torch.where(pending["observed"] >= 0, pending["observed"], totals["observed"])
        if "prob" in pending:
            totals["prob_sum"] += pending["prob"] / count[:, None].float()
        else:
            totals["last_other"] = torch.where(pending["other"] >= 0, pending["other"], totals["last_other"])
        self.closed_epochs.append(self.current_epoch)
        self.current_epoch = None
        self._open_pending(pending["margin"].device)

    def report(self) -> LabelIssueReport:
        """The report of the closed epochs (every process holds the same)."""
        if self.num_samples is None:
            raise ValueError("Expected a LabelIssues callback that has recorded a run, but it has no state")
        totals = {k: v.detach().cpu() for k, v in self.totals.items()}
        epochs = totals["epochs"].numpy()
        seen = epochs > 0
        observed = totals["observed"].numpy().astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            aum = np.where(seen, totals["margin_sum"].numpy() / np.maximum(epochs, 1.0), np.nan)
        if self.from_predictions:
            over = "of the final model (one pass over the training set; no training dynamics saved)"
        elif self.closed_epochs:
            first, last = min(self.closed_epochs), max(self.closed_epochs)
            over = f"over epochs {first}-{last}" if first != last else f"in epoch {first}"
        else:
            over = "(no epoch recorded)"
        adjusted = ", logits adjusted by the observed class prior" if self.adjust == "prior" else ""
        if "prob_sum" in totals:
            score, suggested, count = np.full(len(seen), np.nan), np.full(len(seen), -1, dtype=np.int64), 0
            if seen.any():  # (a run whose every batch was skipped saw no sample)
                mean_probs = (totals["prob_sum"] / torch.as_tensor(np.maximum(epochs, 1.0))[:, None].float()).numpy()
                if self.score == "balanced_margin":
                    score[seen], suggested[seen] = balanced_margin(mean_probs[seen], observed[seen])
                else:
                    score, suggested[seen] = aum, mean_probs[seen].argmax(axis=1)
                count = confident_issue_count(mean_probs[seen], observed[seen])
            if self.score == "balanced_margin":
                source = f"balanced margin of the mean predicted probabilities {over}{adjusted}"
            else:
                source = f"area under the margin {over}{adjusted}"
            suspected = most_suspect(score, count)
            flag_rule = (f"the {count:,} lowest scores: the number of wrong labels confident learning estimates from the "
                         "mean predicted probabilities")
        else:  # no per-class sums (N x K above max_probability_state): the logit margin alone
            score, suggested = aum, totals["last_other"].numpy().astype(np.int64)
            source = f"area under the margin {over}{adjusted}"
            suspected = score < SUSPECT_THRESHOLD  # NaN compares False
            flag_rule = f"score < {SUSPECT_THRESHOLD:g}"
        return LabelIssueReport(score=score.astype(np.float64), observed=observed, suggested=suggested,
                                epochs=epochs.astype(np.int64), suspected=suspected, source=source, flag_rule=flag_rule)

    # ----------------------------------------------------------------------------------------------
    # Lightning hooks: fit
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)

    def _training_size(self, trainer: L.Trainer) -> int | None:
        datamodule = trainer.datamodule
        for name in ("train_size", "observed_targets"):
            value = getattr(datamodule, name, None)
            if value is not None:
                return int(value) if name == "train_size" else len(value)
        return None

    def _prepare(self, trainer: L.Trainer, pl_module: L.LightningModule, first_epoch: int) -> bool:
        size = self._training_size(trainer)
        num_classes = getattr(pl_module, "num_classes", None)
        if size is None or num_classes is None:
            self._warn_once("setup", "LabelIssues needs a datamodule with `train_size` (every lt-noise datamodule) and a "
                            "model with `num_classes`; no label-issue report is written")
            return False
        if self.num_samples is None:
            self._allocate(size, num_classes, pl_module.device)
            self.first_epoch = first_epoch
        elif (self.num_samples, self.num_classes) != (size, num_classes):
            raise ValueError(
                f"Expected the restored LabelIssues state to cover {size} training samples and {num_classes} classes, "
                f"but it covers {self.num_samples} and {self.num_classes} (another dataset or config?)"
            )
        else:
            self._to(pl_module.device)
        self._log_prior = None
        if self.adjust == "prior":
            counts = np.asarray(getattr(trainer.datamodule, "class_counts", None) or getattr(pl_module, "class_counts", None)
                                or [], dtype=np.float64)
            if len(counts) != num_classes or (counts <= 0).any():
                raise ValueError(f"Expected positive observed class counts for adjust='prior', but got {counts.tolist()}")
            self._log_prior = torch.as_tensor(np.log(counts), dtype=torch.float32, device=pl_module.device)
        return True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if (stage == "fit" and not self.from_predictions) or (stage == "predict" and self.from_predictions):
            self._reset()  # a checkpoint, if any, is restored after this
        self.report_path = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.from_predictions:
            return
        first = self.start_epoch
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            first = min(first, trainer.max_epochs - 1)
        self._active = self._prepare(trainer, pl_module, first)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.from_predictions or not self._active:
            return
        epoch = trainer.current_epoch
        if epoch >= self.first_epoch:
            records = getattr(pl_module, "training_records", None)
            if records is None:
                self._warn_once("records", f"LabelIssues found no `training_records` on {type(pl_module).__name__} (see "
                                "Classifier.record_training_logits); no label-issue report is written")
                self._active = False
                return
            if self.current_epoch is None:
                self.current_epoch = epoch
            for logits, labels, index in records:
                self.record(logits, labels, index)
            if batch_idx + 1 == trainer.num_training_batches:
                self.close_epoch()  # before the epoch-end validation and its checkpoint

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Usually a no-op (the last batch closed the epoch); it matters when training stops mid-epoch.
        if not self.from_predictions and self._active:
            self.close_epoch()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.from_predictions or not self._active:
            return
        if not self.closed_epochs:
            self._warn_once("empty", f"LabelIssues recorded no training epoch (training ended before epoch {self.first_epoch}, "
                            "its `start_epoch`); no label-issue report is written")
            return
        self.write(trainer, pl_module)

    # ----------------------------------------------------------------------------------------------
    # Lightning hooks: predict (the standalone command's pass of a final model)
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.from_predictions:
            return
        split = getattr(trainer.datamodule, "predict_split", "train")
        if split != "train":
            raise ValueError(f"Expected the datamodule to predict the training split for LabelIssues, but it predicts {split!r}")
        self._active = self._prepare(trainer, pl_module, 0)
        self.current_epoch = 0

    def on_predict_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self.from_predictions or not self._active:
            return
        if not isinstance(outputs, dict) or not {"target", "index"} <= set(outputs):
            raise ValueError("Expected predict_step outputs with 'logits' (or 'probs'), 'target' and 'index' for LabelIssues")
        logits = outputs.get("logits")
        if logits is None:
            logits = outputs["probs"].double().clamp_min(torch.finfo(torch.float64).tiny).log()
        self.record(logits, outputs["target"], outputs["index"])

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.from_predictions or not self._active:
            return
        self.close_epoch()
        self.write(trainer, pl_module)

    # ----------------------------------------------------------------------------------------------
    # Output (rank 0)
    def output_path(self, trainer: L.Trainer) -> Path:
        folder = self.dirpath if self.dirpath is not None else (trainer.log_dir or trainer.default_root_dir)
        return Path(folder) / self.filename

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Write the report and its figures (rank 0; figures to TensorBoard too during ``fit``); returns the
        report's path (None on other ranks)."""
        path = self.output_path(trainer)  # trainer.log_dir is a collective under DDP: every rank asks
        if not trainer.is_global_zero:
            return None
        to_tensorboard = not self.from_predictions and tensorboard(trainer) is not None
        figures = self.figures if self.figures is not None else bool(trainer.loggers)
        return self.write_files(path, trainer.datamodule, trainer=trainer if to_tensorboard else None, figures=figures)

    def write_files(self, path: Path, datamodule: Any, *, trainer: L.Trainer | None = None, figures: bool = True) -> Path:
        """Write the report to ``path`` and, with ``figures``, its figures beside it (``<stem>_<name>.png``);
        with ``trainer``, log the figures and the detection metrics to its loggers too. Call on one process
        only."""
        report = self.report()
        names = tuple(getattr(datamodule, "class_names", None) or ())
        sample_path = getattr(datamodule, "sample_path", None)
        write_csv(path, COLUMNS, report.rows(path_of=sample_path if callable(sample_path) else None, class_names=names))
        self.report_path = path
        noisy = self._noise_mask(datamodule, len(report.score))
        summary = (f"Label issues: wrote {path} ({len(report.score):,} training samples, "
                   f"{int(report.suspected.sum()):,} suspected ({report.flag_rule}); score: {report.source})")
        if noisy is not None:
            metrics = detection_metrics(report.score, noisy)
            summary += (f"; against the true noise mask: AUROC {metrics['auroc']:.3f}, AP {metrics['average_precision']:.3f}, "
                        f"precision at {metrics['k']:,} {metrics['precision_at_k']:.3f}")
            for logger in trainer.loggers if trainer is not None else ():
                logger.log_metrics({f"label_issues/{k}": float(v) for k, v in metrics.items() if k != "k"},
                                   step=trainer.global_step)
        rank_zero_info(summary)
        if figures:
            for name, figure in self.figures_of(report, datamodule, noisy).items():
                save_figure(figure, path.with_name(f"{path.stem}_{name}.png"))
                if trainer is not None:
                    log_figure(trainer, f"label_issues/{name}", figure)
        return path

    @staticmethod
    def _noise_mask(datamodule: Any, size: int) -> np.ndarray | None:
        """The diagnostics-only noise mask when it covers the report and holds clean and noisy samples."""
        noisy = getattr(datamodule, "is_noisy", None)
        if noisy is None:
            return None
        noisy = np.asarray(noisy, dtype=bool)
        return noisy if len(noisy) == size and 0 < noisy.sum() < len(noisy) else None

    def figures_of(self, report: LabelIssueReport, datamodule: Any, noisy: np.ndarray | None) -> dict[str, Any]:
        """The report's figures by name: ``scores`` and ``precision_recall`` (with a noise mask),
        ``suspects`` (with a datamodule that has ``sample_image``)."""
        figures = {}
        if noisy is not None:
            figures["scores"] = score_histogram_figure(
                report.score, noisy, threshold=report.flag_threshold, score_name="score",
                title=f"Label-issue score of clean and noisy samples\n({report.source})",
            )
            precision, recall = precision_recall_at_each_rank(report.score, noisy)
            metrics = detection_metrics(report.score, noisy)
            figures["precision_recall"] = precision_recall_figure(
                precision, recall, average_precision=metrics["average_precision"], noisy_fraction=float(noisy.mean()),
                k=metrics["k"],
            )
        grid = self._suspects_grid(datamodule, report, noisy, tuple(getattr(datamodule, "class_names", None) or ()))
        if grid is not None:
            figures["suspects"] = grid
        return figures

    def _suspects_grid(self, datamodule: Any, report: LabelIssueReport, noisy: np.ndarray | None, names: Sequence[str]):
        sample_image = getattr(datamodule, "sample_image", None)
        if not callable(sample_image) or self.grid_size == 0:
            return None
        top = [int(i) for i in report.order[: self.grid_size] if report.epochs[i] > 0]
        if not top:
            return None

        def name(label: int) -> str:
            return str(names[label]) if 0 <= label < len(names) else str(label)

        try:
            images = [sample_image(i) for i in top]
        except (OSError, ValueError) as error:  # an unreadable file must not cost the report
            self._warn_once("grid", f"LabelIssues could not load the suspects' images for the grid: {error}")
            return None
        return suspects_grid_figure(
            images, [name(int(report.observed[i])) for i in top], [name(int(report.suggested[i])) for i in top],
            [float(report.score[i]) for i in top], noisy=None if noisy is None else [bool(noisy[i]) for i in top],
            title=f"Most suspect labels: observed → suggested, score ({report.source})"
            + ("; red: truly noisy" if noisy is not None else ""),
        )
