"""CurriculumDiagnostics (papers/003): α_t (§5.1), snr (§5.2, App. C.2), Δ_y histograms and figures.

References are computed here from the paper's formulas (NumPy, by hand), from logits captured by the
test's own forward hook: never from the callback's code.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from support.fashion import data_facts, fashion_mnist_root
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lt_noise.callbacks import CurriculumDiagnostics
from lt_noise.callbacks.curriculum import sample_weights
from lt_noise.callbacks.curriculum_plots import margin_distributions_figure, weighting_function_figure
from lt_noise.data.modules import FashionMNISTDataModule
from lt_noise.methods import Classifier, Curriculum
from lt_noise.optim import LRSchedule, OptimizerConfig

fm_root = fashion_mnist_root(n_train=48, n_test=20)


def _data(root):
    return FashionMNISTDataModule(root=str(root), num_workers=0, batch_size=16, seed=0, noise="symmetric",
                                  noise_rate=0.5, augment="none")


def _kwargs(dm):
    return dict(**data_facts(dm),
                backbone="mlp", backbone_args={"hidden": [32]}, optimizer=OptimizerConfig(lr=0.5, momentum=0.0),
                lr_schedule=LRSchedule(name="multistep", milestones=(1,), gamma=0.1))


def test_alpha_and_snr_of_a_hand_made_batch():
    # step 1 (lr 0.1): weights 0.2, 0.4, 0.9, the second noisy; step 2 (lr 0.05): 0.6 (noisy), 0.1
    callback = CurriculumDiagnostics(bins=4, margin_range=(-2.0, 2.0))
    f64 = torch.float64
    callback.record(torch.tensor([-3.0, -0.5, 1.2]), torch.tensor([0.2, 0.4, 0.9], dtype=f64),
                    torch.tensor([False, True, False]), 0.1)
    callback.record(torch.tensor([0.0, 2.5]), torch.tensor([0.6, 0.1], dtype=f64), torch.tensor([True, False]), 0.05)
    assert math.isnan(callback.alpha_t)  # nothing synchronised yet
    callback.flush()
    # α_t = Σ_i η_i Σ_s w_s ||∇Δ||_1 / Σ_i η_i |B_i|, ||∇Δ||_1 = 2
    alpha = (0.1 * 2 * (0.2 + 0.4 + 0.9) + 0.05 * 2 * (0.6 + 0.1)) / (0.1 * 3 + 0.05 * 2)
    w_clean = (0.1 * (0.2 + 0.9) + 0.05 * 0.1) / (0.1 * 2 + 0.05 * 1)
    w_noise = (0.1 * 0.4 + 0.05 * 0.6) / (0.1 * 1 + 0.05 * 1)
    assert callback.alpha_t == pytest.approx(alpha, rel=1e-12)
    assert callback.snr == pytest.approx(w_clean / w_noise, rel=1e-12)
    assert callback.metrics() == pytest.approx(
        {"curriculum/alpha_t": alpha, "curriculum/snr": w_clean / w_noise, "curriculum/w_clean": w_clean,
         "curriculum/w_noise": w_noise}, rel=1e-12)
    # histograms over [-2, 2] in 4 bins, the outside margins in the edge bins: clean -3, 1.2, 2.5; noisy -0.5, 0
    assert callback.current.tolist() == [[1, 0, 0, 2], [0, 1, 1, 0]]


def test_without_noisy_samples_snr_is_left_out():
    callback = CurriculumDiagnostics()
    callback.record(torch.zeros(3), torch.full((3,), 0.5), torch.zeros(3, dtype=torch.bool), 0.1)
    callback.flush()
    assert math.isnan(callback.snr) and set(callback.metrics()) == {"curriculum/alpha_t", "curriculum/w_clean"}


def _p_label(logits, target):
    return torch.softmax(logits.double(), dim=1).gather(1, target[:, None])[:, 0]


def test_sample_weights_follow_the_method(fm_root):
    dm = _data(fm_root)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 10, generator=gen, dtype=torch.float64) * 2
    target = torch.randint(0, 10, (12,), generator=gen)
    p = _p_label(logits, target)
    # Curriculum: the normalised weight it applies, 4 p (1 - p) for MAE
    curriculum = Curriculum(**_kwargs(dm), loss="mae")
    torch.testing.assert_close(sample_weights(curriculum, logits, target), 4 * p * (1 - p))
    # a plain Classifier with a p_y-loss: the loss's own w, MAE's p (1 - p)
    plain = Classifier(**_kwargs(dm), loss="mae")
    torch.testing.assert_close(sample_weights(plain, logits, target), p * (1 - p))
    # any other loss: ||∇_s L||_1 / 2, here by central differences of NCE = log p_y / Σ_i log p_i
    nce = Classifier(**_kwargs(dm), loss="nce")

    def nce_value(z):
        log_p = torch.log_softmax(z, dim=1)
        return log_p.gather(1, target[:, None])[:, 0] / log_p.sum(1)

    h = 1e-6
    bumps = torch.eye(10, dtype=torch.float64) * h
    numeric = torch.stack([(nce_value(logits + e) - nce_value(logits - e)) / (2 * h) for e in bumps], 1)
    torch.testing.assert_close(sample_weights(nce, logits, target), numeric.abs().sum(1) / 2, rtol=1e-6, atol=1e-9)
    # ... which is w(Δ_y) again for a p_y-loss the callback does not recognise: CE's 1 - p_y
    anonymous = SimpleNamespace(loss_fn=lambda z, y: F.cross_entropy(z, y, reduction="none"))
    torch.testing.assert_close(sample_weights(anonymous, logits, target), 1 - p)
    assert sample_weights(torch.nn.Linear(2, 2), logits, target) is None


class _Spy(L.Callback):
    """Records, independently of the diagnostics, each training step's logits, labels, indices and lr."""

    def __init__(self):
        self.steps = []
        self._logits = None

    def on_fit_start(self, trainer, pl_module):
        def hook(module, inputs, output):
            if module.training and self._logits is None:
                self._logits = output.detach().double().clone()

        pl_module.net.register_forward_hook(hook)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._logits = None
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append((trainer.current_epoch, self._lr, self._logits, batch[1].clone(), batch[2].clone()))


def _scalars(log_dir: str) -> EventAccumulator:
    events = EventAccumulator(log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def test_trainer_run_logs_alpha_snr_histograms_and_figures(fm_root, tmp_path):
    L.seed_everything(0)
    dm = _data(fm_root)
    tau, margin = 1.5, -2.0
    model = Curriculum(**_kwargs(dm), loss="mae", mode="shift", tau=tau, expected_margin=margin)
    diagnostics, spy = CurriculumDiagnostics(log_every_n_steps=2, bins=20, margin_range=(-5.0, 5.0)), _Spy()
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=logger, callbacks=[diagnostics, spy],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(model, dm)

    # the reference, from the formulas: Δ = logit(p_y), the shift fix's ŵ = 4 p⁺ (1 - p⁺), p⁺ = σ(Δ + |E| - τ)
    noisy_table = np.asarray(dm.is_noisy)
    assert 0 < noisy_table.mean() < 1
    num = den = clean_w = clean_n = noise_w = noise_n = 0.0
    counts = np.zeros((2, 2, 20))
    for epoch, lr, logits, y, index in spy.steps:
        p = _p_label(logits, y).numpy()
        delta = np.log(p) - np.log1p(-p)
        shifted = 1 / (1 + np.exp(-(delta + abs(margin) - tau)))
        w = 4 * shifted * (1 - shifted)
        noisy = noisy_table[index.numpy()]
        num += lr * 2 * w.sum()
        den += lr * len(w)
        clean_w += lr * w[~noisy].sum()
        clean_n += lr * (~noisy).sum()
        noise_w += lr * w[noisy].sum()
        noise_n += lr * noisy.sum()
        edges = np.linspace(-5, 5, 21)
        counts[epoch, 0] += np.histogram(np.clip(delta[~noisy], -5, 5), edges)[0]
        counts[epoch, 1] += np.histogram(np.clip(delta[noisy], -5, 5), edges)[0]
    assert len(spy.steps) == 6 and {s[1] for s in spy.steps} == {0.5, 0.05}
    alpha, snr = num / den, (clean_w / clean_n) / (noise_w / noise_n)
    assert diagnostics.alpha_t == pytest.approx(alpha, rel=1e-6)  # float32 logits
    assert diagnostics.snr == pytest.approx(snr, rel=1e-6)
    assert diagnostics.epochs == [0, 1]
    np.testing.assert_array_equal(diagnostics.epoch_counts.numpy(), counts)

    events = _scalars(logger.log_dir)
    assert events.Scalars("curriculum/alpha_t")[-1].value == pytest.approx(alpha, rel=1e-6)
    assert events.Scalars("curriculum/snr")[-1].value == pytest.approx(snr, rel=1e-6)
    assert [s.step for s in events.Scalars("curriculum/snr")] == [2, 3, 4, 6]  # every 2 steps and at epoch ends
    images = events.Tags()["images"]
    assert "curriculum/margin_distributions" in images and "curriculum/weighting_function" in images
    assert len(events.Images("curriculum/margin_distributions")) == 2  # one per epoch
    assert len(events.Images("curriculum/weighting_function")) == 1  # at fit start


def test_any_method_any_loss_and_no_logger(fm_root, tmp_path):
    dm = _data(fm_root)
    model = Classifier(**_kwargs(dm), loss="nce+rce")
    diagnostics = CurriculumDiagnostics()
    L.Trainer(accelerator="cpu", max_epochs=1, logger=False, callbacks=[diagnostics], enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
              default_root_dir=tmp_path).fit(model, dm)
    assert diagnostics.alpha_t > 0 and diagnostics.snr > 0
    assert diagnostics.epoch_counts.sum() == 48


class _HalfMapped(Classifier):
    """A method with its own batch mapping: it skips the batches whose first index is odd."""

    mapped = 0

    def diagnostics_targets(self, batch):
        _, y, index = batch
        if int(index[0]) % 2:
            return None
        self.mapped += len(y)
        return y, index


def test_a_method_can_map_or_skip_its_batches(fm_root, tmp_path):
    dm = _data(fm_root)
    diagnostics, model = CurriculumDiagnostics(), _HalfMapped(**_kwargs(_data(fm_root)), loss="ce")
    L.Trainer(accelerator="cpu", max_epochs=2, logger=False, callbacks=[diagnostics], enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
              default_root_dir=tmp_path).fit(model, dm)
    assert 0 < model.mapped < 96 and diagnostics.epoch_counts.sum() == model.mapped


def test_state_round_trip_and_errors():
    callback = CurriculumDiagnostics(bins=4, margin_range=(-2.0, 2.0))
    callback.record(torch.tensor([0.5]), torch.tensor([0.3]), torch.tensor([True]), 0.1)
    callback.flush()
    callback.current_epoch = 0
    callback._close_epoch()
    restored = CurriculumDiagnostics(bins=4, margin_range=(-2.0, 2.0))
    restored.load_state_dict(callback.state_dict())
    assert restored.alpha_t == callback.alpha_t and restored.epochs == [0]
    torch.testing.assert_close(restored.epoch_counts, callback.epoch_counts)
    with pytest.raises(ValueError, match="bins=8 and margin_range=.* but the checkpoint has bins=4"):
        CurriculumDiagnostics(bins=8, margin_range=(-2.0, 2.0)).load_state_dict(callback.state_dict())
    with pytest.raises(ValueError, match="Expected argument `bins` to be an integer >= 1, but got 0"):
        CurriculumDiagnostics(bins=0)
    with pytest.raises(ValueError, match="finite low < high"):
        CurriculumDiagnostics(margin_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="`log_every_n_steps` to be None or an integer >= 1"):
        CurriculumDiagnostics(log_every_n_steps=0)
    with pytest.raises(ValueError, match="Expected a datamodule with the diagnostics array `is_noisy`"):
        callback.on_fit_start(SimpleNamespace(datamodule=None), torch.nn.Linear(1, 1))


def test_figures():
    edges = np.linspace(-4, 4, 9)
    clean = np.array([[0, 1, 3, 5, 2, 0, 0, 0], [0, 0, 1, 2, 4, 6, 1, 0]])
    noisy = np.array([[1, 3, 2, 0, 0, 0, 0, 0], [4, 2, 1, 0, 0, 0, 0, 0]])
    grid = np.linspace(-4, 4, 50)
    figure = margin_distributions_figure(edges, [0, 5], clean, noisy, weight_grid=grid, weight_curve=np.exp(-grid**2))
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    with pytest.raises(ValueError, match=r"counts of shape \(3, 8\)"):
        margin_distributions_figure(edges, [0, 1, 2], clean, noisy)
    initial = np.random.default_rng(0).normal(-2, 1, 100)
    figure = weighting_function_figure(grid, {"w": np.exp(-grid**2)}, initial, expected_margin=-2.6)
    assert isinstance(figure, Figure) and len(figure.axes) == 2  # the curve and the twin density axis
