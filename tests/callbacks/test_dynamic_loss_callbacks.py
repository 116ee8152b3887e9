"""Diagnostics of Dynamic Loss: statistics against independent references, figures, TensorBoard, state."""

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from support.fashion import data_facts, fashion_mnist_data, fashion_mnist_root

from lt_noise.callbacks import DynamicLossDiagnostics
from lt_noise.callbacks.dynamic_loss import label_statistics, spearman
from lt_noise.callbacks.dynamic_loss_plots import (
    corrected_label_accuracy_figure,
    label_weight_figure,
    margin_figure,
    noisy_fraction_per_bin,
)
from lt_noise.data.modules import FashionMNISTDataModule
from lt_noise.methods import DynamicLoss
from lt_noise.optim import LRSchedule, OptimizerConfig

pytestmark = pytest.mark.usefixtures("one_thread")


fm_root = fashion_mnist_root(n_train=400, n_test=100)


def test_noisy_fraction_per_bin_matches_a_loop():
    rng = np.random.default_rng(0)
    labels, bins, noisy = rng.integers(0, 3, 200), rng.integers(0, 5, 200), rng.random(200) < 0.3
    fraction = noisy_fraction_per_bin(bins, labels, noisy, 3, 6)
    for k in range(3):
        for r in range(6):
            cell = (labels == k) & (bins == r)
            if cell.any():
                assert fraction[k, r] == pytest.approx(noisy[cell].mean())
            else:
                assert np.isnan(fraction[k, r])


def test_label_statistics_and_spearman():
    clean = np.array([0, 1, 2, 0, 1, 2])
    observed = np.array([0, 2, 2, 1, 1, 2])      # samples 1 and 3 noisy
    corrected = np.array([0, 1, 2, 2, 1, 0])     # fixes sample 1, not 3, breaks sample 5
    stats = label_statistics(corrected, observed, clean)
    assert stats["observed_label_acc"] == pytest.approx(4 / 6)
    assert stats["corrected_label_acc"] == pytest.approx(4 / 6)
    assert stats["corrected_label_acc_noisy"] == pytest.approx(1 / 2)
    assert stats["corrected_label_acc_clean"] == pytest.approx(3 / 4)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([10, 30, 20])) == pytest.approx(0.5)
    assert spearman(np.array([1.0, 2.0, 2.0]), np.array([1, 2, 3])) == pytest.approx(np.corrcoef([1, 2.5, 2.5], [1, 2, 3])[0, 1])
    assert np.isnan(spearman(np.ones(3), np.arange(3)))


def test_figures_build():
    figures = [
        label_weight_figure(np.random.rand(10, 4), np.random.rand(4, 10), class_names=["a", "b", "c", "d"]),
        label_weight_figure(np.random.rand(50, 100)),
        margin_figure(np.random.randn(10), np.arange(10, 0, -1) * 10, clean_counts=np.arange(10, 0, -1) * 9),
        corrected_label_accuracy_figure([0, 1, 2], [0.6, 0.7, 0.8], [0.6, 0.6, 0.6], corrected_noisy=[0, 0.2, 0.4],
                                        warmup_epochs=1),
    ]
    assert all(isinstance(f, Figure) for f in figures)


def test_corrected_labels_follow_eq3_with_a_hard_prediction(fm_root):
    dm = FashionMNISTDataModule(root=str(fm_root), num_workers=0, seed=0)
    model = DynamicLoss(num_classes=10, input_shape=dm.input_shape, backbone="mlp", bins=4)
    with torch.no_grad():  # g(r|y) = sigmoid(bias): 0.2 for bin 0, 0.9 for the others
        model.metanet.corrector.mlp[4].weight.zero_()
        model.metanet.corrector.mlp[4].bias.fill_(float(np.log(0.9 / 0.1)))
        model.metanet.corrector.mlp[0].weight.zero_()
    table = model.metanet.corrector.table()
    assert torch.allclose(table, torch.full_like(table, 0.9))
    labels = torch.tensor([0, 1, 2, 3])
    predictions = torch.tensor([5, 1, 7, 8])
    bins = torch.tensor([0, 1, 2, 3])
    np.testing.assert_array_equal(model.corrected_labels(bins, labels, predictions).numpy(), [0, 1, 2, 3])
    with torch.no_grad():
        model.metanet.corrector.mlp[4].bias.fill_(float(np.log(0.2 / 0.8)))
    np.testing.assert_array_equal(model.corrected_labels(bins, labels, predictions).numpy(), [5, 1, 7, 8])


def test_callback_logs_statistics_figures_and_keeps_its_history(fm_root, tmp_path):
    L.seed_everything(0)
    dm = fashion_mnist_data(fm_root, noise="class_frequency",
                                noise_rate=0.4, imbalance="exp", imbalance_ratio=4)
    model = DynamicLoss(**data_facts(dm), backbone="mlp", backbone_args={"hidden": [32]}, bins=10, warmup_epochs=1, optimizer=OptimizerConfig(lr=0.05),
                        lr_schedule=LRSchedule(name="cosine"))
    callback = DynamicLossDiagnostics(every_n_epochs=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=TensorBoardLogger(str(tmp_path)), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=[callback])
    trainer.fit(model, dm)
    assert [r["epoch"] for r in callback.history] == [0, 1]
    last = callback.history[-1]
    # an independent recomputation from the split, the datamodule and the meta-net table
    split = model.split
    train = split.train_indices
    observed, clean = dm.observed_targets[train], dm.clean_targets[train]
    g = model.metanet.corrector.table().detach().numpy()[split.bins[train], observed]
    # the callback ran at the start of epoch 1: the table has changed since, so recompute from the
    # checkpointable history only what does not depend on it, and the corrected labels from the rule
    assert last["observed_label_acc"] == pytest.approx((observed == clean).mean())
    assert last["meta_size"] == len(split.meta_indices)
    assert last["meta_clean_fraction"] == pytest.approx((dm.observed_targets[split.meta_indices] ==
                                                          dm.clean_targets[split.meta_indices]).mean())
    corrected = np.where((g > 0.5) | (split.predictions[train] == observed), observed, split.predictions[train])
    now = model.corrected_labels(torch.as_tensor(split.bins[train]), torch.as_tensor(observed),
                                 torch.as_tensor(split.predictions[train])).numpy()
    np.testing.assert_array_equal(now, corrected)
    assert 0.0 <= last["corrected_label_acc"] <= 1.0
    assert {"dynamic_loss/corrected_label_acc", "dynamic_loss/meta_clean_fraction"} <= set(trainer.callback_metrics)
    events = list(Path(trainer.logger.log_dir).glob("events.out.tfevents.*"))
    assert events and max(e.stat().st_size for e in events) > 10_000  # figures were written
    restored = DynamicLossDiagnostics()
    restored.load_state_dict(callback.state_dict())
    assert restored.history == callback.history


def test_invalid_arguments():
    with pytest.raises(ValueError, match="every_n_epochs"):
        DynamicLossDiagnostics(every_n_epochs=0)
    with pytest.raises(ValueError, match="max_classes"):
        DynamicLossDiagnostics(max_classes=0)
