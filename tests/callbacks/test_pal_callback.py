"""Tests of lt_noise.callbacks.PrototypeDiagnostics and its figures (PAL paper, papers/000, Figs. 3 and 5b).

Independent references: the minimum angle between prototypes computed in NumPy from the head's weights;
the mean feature norm and its histogram recomputed from the backbone on the validation set with NumPy.
"""

from __future__ import annotations

import math
from unittest import mock

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from support.fashion import fashion_mnist_root
from support.methods import build_method

from lt_noise.callbacks import PrototypeDiagnostics
from lt_noise.callbacks import pal as pal_callback
from lt_noise.callbacks.pal import head_prototypes
from lt_noise.callbacks.pal_plots import feature_norm_histogram_figure, min_angle_figure, prototype_norms_figure
from lt_noise.data.modules import FashionMNISTDataModule
from lt_noise.methods import PAL, Classifier
from lt_noise.methods.mislas import WeightScaledHead
from lt_noise.models import AnchoredHead, CosineHead, LinearHead


def _min_angle_numpy(rows: np.ndarray) -> float:
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    return math.degrees(math.acos(min(1.0, cosine.max())))


def test_head_prototypes_of_anchored_and_learned_heads():
    anchored = AnchoredHead(8, 5)
    assert torch.equal(head_prototypes(anchored), anchored.prototypes)
    linear = LinearHead(8, 5)
    assert torch.equal(head_prototypes(linear, 5), linear.weight.detach())
    cosine = CosineHead(8, 5)
    assert torch.equal(head_prototypes(cosine, 5), cosine.weight.detach())
    scaled = WeightScaledHead(LinearHead(8, 5), 5)
    assert torch.equal(head_prototypes(scaled), scaled.lws.scale.detach()[:, None] * scaled.classifier.weight.detach())
    assert head_prototypes(torch.nn.Identity()) is None
    assert head_prototypes(LinearHead(8, 5), num_classes=4) is None


fm_root = fashion_mnist_root(n_train=120, n_test=50)


def _fit(model, fm_root, tmp_path, callbacks=()):
    figures: list[tuple[str, Figure]] = []
    dm = FashionMNISTDataModule(root=str(fm_root), num_workers=0, batch_size=40, seed=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=TensorBoardLogger(tmp_path), callbacks=list(callbacks),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    with mock.patch.object(pal_callback, "log_figure", lambda trainer, tag, figure: figures.append((tag, figure))):
        trainer.fit(model, dm)
    return trainer, dm, figures


def _model(cls, **kwargs):
    return build_method(cls, seed=0, num_classes=10, input_shape=(1, 28, 28), backbone="mlp", backbone_args={"hidden": [32, 16]},
                        **kwargs)


def test_learned_head_angle_and_feature_norms_match_independent_computations(fm_root, tmp_path):
    callback = PrototypeDiagnostics(bins=10)
    model = _model(Classifier)
    trainer, dm, figures = _fit(model, fm_root, tmp_path, [callback])
    weight = model.net.head.weight.detach().double().numpy()
    angle = _min_angle_numpy(weight)
    assert float(trainer.callback_metrics["val/min_prototype_angle"]) == pytest.approx(angle, rel=1e-5)
    assert callback.epochs == [0, 1] and callback.min_angles[-1] == pytest.approx(angle, rel=1e-9)
    model.eval()
    with torch.no_grad():
        norms = np.concatenate([model.features(x).double().norm(dim=1).numpy() for x, _, _ in dm.val_dataloader()])
    assert float(trainer.callback_metrics["val/feature_norm_mean"]) == pytest.approx(norms.mean(), rel=1e-5)
    assert {tag for tag, _ in figures} == {"val/prototype_angle", "val/prototype_norms", "val/feature_norms"}
    assert all(isinstance(figure, Figure) for _, figure in figures)


def test_pal_adds_the_callback_and_reports_the_simplex_angle(fm_root, tmp_path):
    model = _model(PAL)
    trainer, _, _ = _fit(model, fm_root, tmp_path)
    assert any(isinstance(c, PrototypeDiagnostics) for c in trainer.callbacks)
    assert float(trainer.callback_metrics["val/min_prototype_angle"]) == pytest.approx(math.degrees(math.acos(-1 / 9)), abs=1e-3)


def test_feature_histogram_matches_numpy():
    callback = PrototypeDiagnostics(bins=7)
    norms = torch.from_numpy(np.random.default_rng(0).gamma(2.0, size=500))
    edges, counts, mean = callback._feature_histogram(norms, torch.device("cpu"))
    expected, expected_edges = np.histogram(norms.numpy(), bins=7, range=(0.0, float(norms.max())))
    np.testing.assert_allclose(edges.numpy(), expected_edges, rtol=1e-12)
    np.testing.assert_array_equal(counts.numpy(), expected)
    assert mean == pytest.approx(norms.numpy().mean(), rel=1e-12) and counts.sum() == 500
    edges, counts, mean = callback._feature_histogram(torch.zeros(0), torch.device("cpu"))
    assert edges is None and counts is None and math.isnan(mean)


def test_state_round_trip_and_bad_arguments():
    callback = PrototypeDiagnostics()
    callback.epochs, callback.min_angles = [0, 1], [80.0, 95.5]
    other = PrototypeDiagnostics()
    other.load_state_dict(callback.state_dict())
    assert other.epochs == [0, 1] and other.min_angles == [80.0, 95.5]
    for kwargs in ({"every_n_epochs": 0}, {"bins": 0}, {"bins": 2.5}):
        with pytest.raises(ValueError, match="integer >= 1"):
            PrototypeDiagnostics(**kwargs)


def test_figures_and_their_input_checks():
    assert isinstance(prototype_norms_figure([1.0, 2.0, 0.5], [10, 50, 5], class_names=["a", "b", "c"]), Figure)
    assert isinstance(prototype_norms_figure([1.0, 2.0]), Figure)
    assert isinstance(feature_norm_histogram_figure([0.0, 1.0, 2.0], [3, 4]), Figure)
    assert isinstance(min_angle_figure([0, 1, 2], [60.0, 80.0, 95.0], optimum=96.4), Figure)
    with pytest.raises(ValueError, match="class counts"):
        prototype_norms_figure([1.0, 2.0], [1, 2, 3])
    with pytest.raises(ValueError, match="bin_edges"):
        feature_norm_histogram_figure([0.0, 1.0], [3, 4])
    with pytest.raises(ValueError, match="epochs"):
        min_angle_figure([0, 1], [60.0])
