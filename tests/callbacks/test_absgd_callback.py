"""Tests of lt_noise.callbacks.AttentionalWeightFigures and its figure (paper 004, Fig. 4 right)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from support.fashion import fashion_mnist_data, fashion_mnist_root
from support.methods import build_method
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lt_noise.callbacks import ABSGDStages, AttentionalWeightFigures
from lt_noise.callbacks.absgd_plots import class_weight_figure
from lt_noise.methods import ABSGD

TAG = "train/absgd_class_weights"


fm_root = fashion_mnist_root(n_train=300, n_test=60)


class _WeightLog(L.Callback):
    """Independent record: every training batch's (targets, weights) as the method used them."""

    def __init__(self):
        self.epochs: list[list[tuple[np.ndarray, np.ndarray]]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append([])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        weights = pl_module.last_weights
        targets = batch[1].numpy()
        values = np.ones(len(targets)) if weights is None else weights.double().numpy()
        self.epochs[-1].append((targets, values))


def test_the_figure_is_logged_and_the_averages_are_the_per_class_means(fm_root, tmp_path):
    dm = fashion_mnist_data(fm_root, imbalance="exp", imbalance_ratio=10)
    model = build_method(ABSGD, dm, backbone="mlp", lam=1.0, gamma=0.5)
    record = _WeightLog()
    logger = TensorBoardLogger(save_dir=tmp_path, name="tb", version=0)
    L.Trainer(accelerator="cpu", max_epochs=2, limit_val_batches=0, logger=logger, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False,
              callbacks=[record, ABSGDStages(stage2_epoch=1)]).fit(model, dm)
    figures = [c for c in model.trainer.callbacks if isinstance(c, AttentionalWeightFigures)]
    assert len(figures) == 1  # one of ABSGD's default callbacks
    callback = figures[0]
    assert callback.epochs == [0, 1]
    for epoch, batches in enumerate(record.epochs):
        targets = np.concatenate([t for t, _ in batches])
        values = np.concatenate([v for _, v in batches])
        expected = [values[targets == c].mean() if (targets == c).any() else np.nan for c in range(10)]
        np.testing.assert_allclose(callback.mean_weights[epoch], expected, rtol=1e-12)
    assert callback.mean_weights[0] == [1.0] * 10  # stage 1: λ = inf, plain SGD
    assert np.ptp(callback.mean_weights[1]) > 0  # stage 2: weights differ between classes
    events = EventAccumulator(str(Path(logger.log_dir)), size_guidance={"images": 0})
    events.Reload()
    assert TAG in events.Tags()["images"]
    assert len(events.Images(TAG)) == 2  # every epoch (every_n_epochs=1)


def test_state_round_trips_and_arguments_are_checked():
    callback = AttentionalWeightFigures()
    callback.epochs, callback.mean_weights = [0, 1], [[1.0, 1.0], [0.5, float("nan")]]
    other = AttentionalWeightFigures()
    other.load_state_dict(callback.state_dict())
    assert other.epochs == [0, 1] and other.mean_weights[0] == [1.0, 1.0] and np.isnan(other.mean_weights[1][1])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="`every_n_epochs` to be an integer >= 1"):
            AttentionalWeightFigures(every_n_epochs=bad)


@pytest.mark.parametrize("num_classes", [4, 100])
@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_class_weight_figure_draws_one_curve_per_class_or_per_group(num_classes):
    counts = np.maximum(1, (500 * 0.01 ** (np.arange(num_classes) / (num_classes - 1)))).astype(int)
    weights = np.tile(np.linspace(0.5, 2.0, num_classes), (3, 1))
    weights[1, -1] = np.nan  # a class without samples in an epoch
    figure = class_weight_figure([0, 1, 2], weights, counts)
    assert isinstance(figure, Figure)
    curves = figure.axes[0].get_lines()[:-1]  # the last line is the y = 1 reference
    assert len(curves) == min(num_classes, 10)
    # the tail group's curve is the mean of its classes, skipping the missing value
    tail = curves[-1].get_ydata()
    group = np.array_split(np.argsort(-counts, kind="stable"), min(num_classes, 10))[-1]
    np.testing.assert_allclose(tail, np.nanmean(weights[:, group], axis=1))
    with pytest.raises(ValueError, match=f"Expected {num_classes + 1} classes"):
        class_weight_figure([0], weights[:1], np.append(counts, 1))
