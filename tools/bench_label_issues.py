#!/usr/bin/env python
"""How well the label-issue report finds wrong labels, against cleanlab on 5-fold cross-validation.

    OMP_NUM_THREADS=1 nice -n 5 python tools/bench_label_issues.py            # all three settings
    python tools/bench_label_issues.py --settings sym --epochs 5 --max-per-class 300   # a quick look

On Fashion-MNIST with synthetic noise (the true noise mask is known), for three settings

- ``sym``: symmetric noise 0.4, exact per-class counts, ``--max-per-class`` images per class;
- ``asym``: asymmetric noise 0.4 (the Fashion-MNIST flip map), exact counts, ``--max-per-class`` per class;
- ``nlt``: long-tailed (exponential profile, ratio 100, from all 6,000 images per class) then
  class-frequency noise 0.4 (Dynamic Loss's N-LT model),

it trains one model (the same model and recipe everywhere: ``--backbone``, SGD, cosine schedule,
``--epochs``) on the whole noisy training set with :class:`lt_noise.callbacks.LabelIssues`, and five more
on the five stratified folds' complements (the same recipe), whose out-of-fold predicted probabilities
go into cleanlab's ``find_label_issues`` (its own flagged set) and ``get_label_quality_scores`` (a
score). Against the true noise mask it reports AUROC, average precision (AP), precision at k = the true
number of noisy labels, precision/recall of each flagged set, the accuracy of the suggested label on the
truly noisy samples, and the training compute of each (one run vs five), and writes a Markdown table.

Every finished training is cached (``--cache``) as an ``.npz`` of what the table needs: a rerun
continues where it stopped and recomputes the table from the cache. cleanlab (and scikit-learn) are
benchmark dependencies (``pip install -e ".[bench]"``), not lt-noise's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from lt_noise.callbacks import LabelIssues  # noqa: E402
from lt_noise.callbacks.label_issues_report import (  # noqa: E402
    balanced_margin,
    confident_issue_count,
    detection_metrics,
    most_suspect,
    precision_recall_at_each_rank,
)
from lt_noise.data.modules import FashionMNISTDataModule  # noqa: E402
from lt_noise.methods import Classifier  # noqa: E402

SETTINGS = {
    "sym": {"title": "symmetric 0.4", "noise": "symmetric", "noise_rate": 0.4, "noise_exact": True, "capped": True},
    "asym": {"title": "asymmetric 0.4", "noise": "asymmetric", "noise_rate": 0.4, "noise_exact": True, "capped": True},
    "nlt": {"title": "N-LT: ratio 100, class-frequency 0.4", "imbalance": "exp", "imbalance_ratio": 100.0,
            "noise": "class_frequency", "noise_rate": 0.4, "capped": False},
}
# Our report's recordings, one callback each in the same run: the logits as they are, and logit-adjusted
# (the area under the margin of both, and their mean probabilities, are cached; the scores come from them).
VARIANTS = ("none", "prior")


class Rows(Dataset):
    """The samples ``rows`` of an indexed training set; keeps the per-sample keys (index, epoch) and the
    training indices, so that augmentation and the records are those of the full set."""

    def __init__(self, dataset: Dataset, rows: np.ndarray) -> None:
        self.dataset = dataset
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            return self.dataset[(int(self.rows[key[0]]), key[1])]
        return self.dataset[int(self.rows[key])]


def make_data(setting: str, args: argparse.Namespace) -> FashionMNISTDataModule:
    options = {k: v for k, v in SETTINGS[setting].items() if k not in ("title", "capped")}
    if SETTINGS[setting]["capped"]:
        options["max_train_per_class"] = args.max_per_class
    return FashionMNISTDataModule(root=args.root, batch_size=args.batch_size, num_workers=0, seed=args.seed, **options)


def make_model(counts: list[int], args: argparse.Namespace, noise_rate: float) -> Classifier:
    L.seed_everything(args.seed, verbose=False)
    return Classifier(num_classes=10, class_counts=counts, input_shape=(1, 28, 28), noise_rate=noise_rate,
                      backbone=args.backbone, loss="ce",
                      optimizer={"name": "sgd", "lr": args.lr, "momentum": 0.9, "weight_decay": args.weight_decay},
                      lr_schedule={"name": "cosine"})


def trainer(args: argparse.Namespace, root: Path, callbacks=()) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_epochs=args.epochs, precision=args.precision, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=root, callbacks=list(callbacks))


def run_ours(data: FashionMNISTDataModule, args: argparse.Namespace, folder: Path) -> dict[str, np.ndarray]:
    """One training on the whole noisy set with the report (both variants); returns the cache arrays."""
    # score="aum": the cache keeps the area under the margin and the mean probabilities, every score is computed
    # from them in evaluate().
    callbacks = [LabelIssues(filename=f"label_issues_{v}.csv", dirpath=str(folder), score="aum", adjust=v,
                             figures=v == "none") for v in VARIANTS]
    model = make_model(data.class_counts, args, data.noise_rate)
    start = time.perf_counter()
    trainer(args, folder, callbacks).fit(model, data)
    wall = time.perf_counter() - start
    out: dict[str, np.ndarray] = {"wall_s": np.array(wall)}
    for variant, callback in zip(VARIANTS, callbacks):
        report = callback.report()
        out[f"score_{variant}"] = report.score
        out[f"suggested_{variant}"] = report.suggested
        totals = callback.totals
        out[f"mean_probs_{variant}"] = (totals["prob_sum"] / totals["epochs"].clamp(min=1)[:, None].float()).cpu().numpy()
    return out


def run_fold(data: FashionMNISTDataModule, train_rows: np.ndarray, held_rows: np.ndarray, args: argparse.Namespace,
             folder: Path) -> dict[str, np.ndarray]:
    """One cross-validation training on ``train_rows``; returns the held-out rows' predicted probabilities."""
    observed = data.observed_targets
    counts = np.bincount(observed[train_rows], minlength=10).tolist()
    model = make_model(counts, args, data.noise_rate)
    train_loader = data.loader(Rows(data.train_dataset(), train_rows), train=True)
    held_loader = data.loader(Rows(data.train_dataset(views=("eval",)), held_rows), train=False)
    start = time.perf_counter()
    fit = trainer(args, folder)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LabelIssues needs a datamodule.*")
        fit.fit(model, train_dataloaders=train_loader)
    outputs = fit.predict(model, dataloaders=held_loader)
    wall = time.perf_counter() - start
    index = torch.cat([o["index"] for o in outputs]).numpy()
    probs = torch.cat([o["probs"] for o in outputs]).double().numpy()
    if not np.array_equal(np.sort(index), np.sort(held_rows)):
        raise RuntimeError("the held-out predictions do not cover the fold exactly")
    return {"wall_s": np.array(wall), "index": index, "probs": probs}


def cached(path: Path, compute):
    if path.is_file():
        with np.load(path) as saved:
            return dict(saved)
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **result)
    tmp.replace(path)
    return result


def folds(observed: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Stratified folds by observed label (scikit-learn's StratifiedKFold, shuffled with ``seed``)."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(len(observed)), observed)]


def flagged_precision_recall(flagged: np.ndarray, noisy: np.ndarray) -> tuple[int, float, float]:
    flagged = np.asarray(flagged, dtype=bool)
    hits = int((flagged & noisy).sum())
    return int(flagged.sum()), hits / max(int(flagged.sum()), 1), hits / max(int(noisy.sum()), 1)


def evaluate(setting: str, args: argparse.Namespace, curves: dict | None = None) -> list[dict]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    folder = Path(args.cache) / setting
    data = make_data(setting, args)
    observed = np.asarray(data.observed_targets, dtype=np.int64)
    clean = np.asarray(data.clean_targets, dtype=np.int64)
    noisy = observed != clean
    print(f"[{setting}] {SETTINGS[setting]['title']}: {len(observed):,} training samples, {int(noisy.sum()):,} noisy "
          f"({noisy.mean():.3f})", flush=True)
    ours = cached(folder / "ours.npz", lambda: run_ours(data, args, folder))
    print(f"[{setting}] our run: {float(ours['wall_s']):.0f} s", flush=True)
    held_out = folds(observed, args.folds, args.seed)
    oof = np.zeros((len(observed), 10))
    fold_wall = 0.0
    for k, held in enumerate(held_out):
        train_rows = np.setdiff1d(np.arange(len(observed)), held)
        result = cached(folder / f"fold{k}.npz", lambda: run_fold(data, train_rows, held, args, folder))
        oof[result["index"]] = result["probs"]
        fold_wall += float(result["wall_s"])
        print(f"[{setting}] fold {k}: {float(result['wall_s']):.0f} s", flush=True)

    rows = []
    base = {"setting": SETTINGS[setting]["title"], "samples": len(observed), "noisy": int(noisy.sum())}
    scores = {}
    for variant, name in (("none", "balanced margin (default)"), ("none", "AUM"), ("prior", "AUM, adjust=prior")):
        mean_probs = ours[f"mean_probs_{variant}"]
        if name.startswith("balanced"):
            score, suggested = balanced_margin(mean_probs, observed)
        else:
            score, suggested = ours[f"score_{variant}"], mean_probs.argmax(axis=1)
        scores[name] = score
        # The report's flag: the confident-learning count of wrong labels from the mean training probabilities.
        count = confident_issue_count(mean_probs, observed)
        flagged, precision, recall = flagged_precision_recall(most_suspect(score, count), noisy)
        below_zero = flagged_precision_recall(score < 0, noisy)
        rows.append({**base, "method": f"lt-noise LabelIssues: {name}", "trainings": 1,
                     "wall_s": float(ours["wall_s"]), **detection_metrics(score, noisy), "flagged": flagged,
                     "flag_precision": precision, "flag_recall": recall,
                     "suggested_acc_noisy": float((suggested[noisy] == clean[noisy]).mean()),
                     "below_zero": {"flagged": below_zero[0], "precision": below_zero[1], "recall": below_zero[2]}})
    issues = find_label_issues(labels=observed, pred_probs=oof)
    flagged, precision, recall = flagged_precision_recall(issues, noisy)
    quality = get_label_quality_scores(labels=observed, pred_probs=oof)
    rows.append({**base, "method": f"cleanlab, {args.folds}-fold CV (find_label_issues; get_label_quality_scores)",
                 "trainings": args.folds, "wall_s": fold_wall, **detection_metrics(quality, noisy), "flagged": flagged,
                 "flag_precision": precision, "flag_recall": recall,
                 "suggested_acc_noisy": float((oof.argmax(axis=1)[noisy] == clean[noisy]).mean())})
    if curves is not None:
        curves[SETTINGS[setting]["title"]] = {
            "lt-noise balanced margin, 1 training": precision_recall_at_each_rank(scores["balanced margin (default)"], noisy),
            "lt-noise AUM, 1 training": precision_recall_at_each_rank(scores["AUM"], noisy),
            f"cleanlab quality score, {args.folds}-fold CV": precision_recall_at_each_rank(quality, noisy),
        }
    # What cleanlab's score makes of the one run's own (in-sample) mean training probabilities.
    in_sample = ours["mean_probs_none"]
    issues = find_label_issues(labels=observed, pred_probs=in_sample)
    flagged, precision, recall = flagged_precision_recall(issues, noisy)
    rows.append({**base, "method": "cleanlab on our run's mean training probabilities (in-sample)", "trainings": 1,
                 "wall_s": float(ours["wall_s"]), **detection_metrics(get_label_quality_scores(observed, in_sample), noisy),
                 "flagged": flagged, "flag_precision": precision, "flag_recall": recall,
                 "suggested_acc_noisy": float((in_sample.argmax(axis=1)[noisy] == clean[noisy]).mean())})
    return rows


def curves_figure(curves: dict):
    """One precision-recall panel per setting, a curve per method."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(curves), 4.0), layout="constrained")
    for i, (title, methods) in enumerate(curves.items()):
        axis = figure.add_subplot(1, len(curves), i + 1)
        for (label, (precision, recall)), style in zip(methods.items(), ("-", "--", ":")):
            axis.plot(recall, precision, style, label=label)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("recall")
        axis.set_ylabel("precision")
        axis.set_title(title, fontsize=9)
        axis.legend(loc="lower left", fontsize=7)
    return figure


def markdown(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    header = ("| setting | method | trainings | train + predict time | AUROC | AP | P@k (k = #noisy) | flagged | "
              "flag precision | flag recall | suggested label right (noisy) |")
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['setting']} ({r['samples']:,} samples, {r['noisy']:,} noisy) | {r['method']} | {r['trainings']} | "
            f"{r['wall_s'] / 60:.1f} min | {r['auroc']:.4f} | {r['average_precision']:.4f} | {r['precision_at_k']:.4f} | "
            f"{r['flagged']:,} | {r['flag_precision']:.3f} | {r['flag_recall']:.3f} | {r['suggested_acc_noisy']:.3f} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores; torch {torch.__version__}, lightning {L.__version__}; "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; {datetime.date.today().isoformat()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--root", default="data", help="Fashion-MNIST root (the Debian copy is found too)")
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "bench_label_issues"))
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-per-class", type=int, default=2000, help="images per class of the balanced settings")
    parser.add_argument("--backbone", default="cnn4")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--plot", help="also draw the precision-recall curves of each setting into this PNG")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    command = "python tools/bench_label_issues.py " + " ".join(argv if argv is not None else sys.argv[1:])
    curves: dict = {}
    rows = [row for setting in args.settings for row in evaluate(setting, args, curves)]
    table = markdown(rows, args, command)
    print(table)
    print(f"\nmachine: {machine()}")
    if args.plot:
        curves_figure(curves).savefig(args.plot, dpi=100)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "machine": machine(), "args": vars(args), "rows": rows},
                                              indent=2))


if __name__ == "__main__":
    main()
