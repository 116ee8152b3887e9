#!/usr/bin/env python
"""snr = w̄_clean / w̄_noise of CE and MAE on Fashion-MNIST with 40% symmetric noise (papers/003, Table 5).

The curriculum paper's Table 5 (CIFAR-10) finds snr > 1 for robust losses (MAE: 3.33 at 40% symmetric
noise) and snr < 1 for CE (0.57): robust sample-weighting functions give clean samples larger weights.
This script checks that direction on the project's offline benchmark, on CPU, in a few minutes:

    python tools/experiments/curriculum_snr_fmnist.py            # CE and MAE, 3 epochs of 20% of the batches
    python tools/experiments/curriculum_snr_fmnist.py --epochs 5 --train-fraction 1.0

Each loss is trained as :class:`~lt_noise.methods.Curriculum` (unit-maximum weights, no fix: 10
classes do not need one) with the paper's MNIST recipe (App. B: 4-layer CNN, SGD momentum 0.9,
batch 128, cosine learning rate from 0.01, weight decay 1e-3, no augmentation), shortened to a few
epochs (each a random 20% of the training batches by default); symmetric noise flips exactly 40% of
each class to another class (the APL convention). The test set is evaluated after the last epoch.
:class:`~lt_noise.callbacks.CurriculumDiagnostics` logs α_t, snr and the figures to TensorBoard in
``--out``; the script also saves the figures as PNG there and prints a table (and ``summary.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from lt_noise.callbacks import CurriculumDiagnostics  # noqa: E402
from lt_noise.callbacks.curriculum_plots import margin_distributions_figure  # noqa: E402
from lt_noise.data.modules import FashionMNISTDataModule  # noqa: E402
from lt_noise.methods import Curriculum  # noqa: E402
from lt_noise.optim import LRSchedule, OptimizerConfig  # noqa: E402

# The paper's MNIST recipe (App. B): SGD momentum 0.9, batch 128, cosine from 0.01, weight decay 1e-3.
LR, MOMENTUM, WEIGHT_DECAY, BATCH = 0.01, 0.9, 1e-3, 128


def run(loss: str, args: argparse.Namespace) -> dict:
    L.seed_everything(args.seed, workers=True)
    data = FashionMNISTDataModule(
        root=args.root, batch_size=BATCH, num_workers=args.workers, noise="symmetric",
        noise_rate=args.noise_rate, noise_exact=True, augment="none", seed=args.seed,
    )
    model = Curriculum(
        num_classes=data.num_classes, class_counts=data.class_counts, input_shape=data.input_shape,
        noise_rate=data.noise_rate, backbone="cnn4", loss=loss,
        optimizer=OptimizerConfig(name="sgd", lr=args.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
        lr_schedule=LRSchedule(name="cosine"),
    )
    diagnostics = CurriculumDiagnostics(log_every_n_steps=50, initial_batches=4)
    # The validation set is the test set (val_fraction 0): evaluated once, after the last epoch.
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=args.epochs, limit_train_batches=args.train_fraction,
        check_val_every_n_epoch=args.epochs, num_sanity_val_steps=0,
        logger=TensorBoardLogger(args.out, name=loss), callbacks=[diagnostics],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, data)
    edges, counts = diagnostics.edges, diagnostics.epoch_counts.numpy()
    figure = margin_distributions_figure(
        edges, diagnostics.epochs, counts[:, 0], counts[:, 1],
        title=f"{loss.upper()}: Δ_y of noisy (green) and clean (orange) samples; snr = {diagnostics.snr:.2f}",
    )
    figure.savefig(Path(args.out) / f"{loss}_margins.png", dpi=110)
    noisy = torch.as_tensor(data.is_noisy)
    return {
        "loss": loss,
        "snr": diagnostics.snr,
        **{k.split("/")[1]: v for k, v in diagnostics.metrics().items()},
        "test_acc": float(model.history[-1]["acc"]),
        "realised_noise": float(noisy.float().mean()),
        "mean_delta_clean_last_epoch": float(np.average((edges[:-1] + edges[1:]) / 2, weights=counts[-1, 0])),
        "mean_delta_noisy_last_epoch": float(np.average((edges[:-1] + edges[1:]) / 2, weights=counts[-1, 1])),
        "log_dir": trainer.logger.log_dir,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--losses", nargs="+", default=["ce", "mae"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-fraction", type=float, default=0.2, help="fraction of the training batches per epoch")
    parser.add_argument("--noise-rate", type=float, default=0.4)
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--root", default="data",
                        help="Fashion-MNIST root (/usr/share/datasets/fashion-mnist is also searched)")
    parser.add_argument("--out", default="runs/curriculum_snr_fmnist")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    rows = [run(loss, args) for loss in args.losses]
    print(f"\nFashion-MNIST, {args.noise_rate:.0%} symmetric noise, {args.epochs} epochs x {args.train_fraction:g} "
          "of the batches")
    print(f"{'loss':6} {'snr':>7} {'alpha_t':>8} {'w_clean':>8} {'w_noise':>8} {'test acc':>9}")
    for row in rows:
        print(f"{row['loss']:6} {row['snr']:7.3f} {row['alpha_t']:8.4f} {row['w_clean']:8.4f} {row['w_noise']:8.4f} "
              f"{row['test_acc']:9.4f}")
    (Path(args.out) / "summary.json").write_text(json.dumps({"args": vars(args), "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
