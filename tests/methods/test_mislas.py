"""Tests of lt_noise.methods.mislas (Zhong et al. 2021, MiSLAS's classifier learning; "MiSLAS+PAL" of
papers/000) and of the decoupled second stage (cRT) on the base class's two-stage machinery.

Independent references: the smoothing factors ε_y = f(N_y) of MiSLAS's eq. (4) written with math.sin /
math.cos in a Python loop; the smoothed cross entropy -Σ_i q_i log p_i with q = (1 - ε_y) e_y + ε_y / K
(the authors' code) in float64 NumPy; learnable weight scaling s ⊙ (W z + b); the stage-1 checkpoint.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from support.fashion import fashion_mnist_root

from lt_noise.data.modules import FashionMNISTDataModule
from lt_noise.methods import PAL, Classifier, MiSLAS
from lt_noise.methods.mislas import LabelAwareSmoothing, WeightScaledHead, label_aware_smoothing_factors
from lt_noise.models import LinearHead
from lt_noise.optim import LRSchedule, OptimizerConfig

COUNTS = [500, 300, 120, 40, 40, 10]


def _reference_eps(counts, head, tail, shape, power=None):
    n1, nk = max(counts), min(counts)
    out = []
    for n in counts:
        r = (n - nk) / (n1 - nk)
        if shape == "concave":  # MiSLAS eq. (4)
            out.append(tail + (head - tail) * math.sin(math.pi * (n - nk) / (2 * (n1 - nk))))
        elif shape == "linear":
            out.append(tail + (head - tail) * r)
        elif shape == "convex":  # ε_1 + (ε_1 - ε_K) sin(3π/2 + π r/2) = ε_1 - (ε_1 - ε_K) cos(π r / 2)
            out.append(head - (head - tail) * math.cos(math.pi * r / 2))
        else:
            out.append(tail + (head - tail) * r**power)
    return np.array(out)


@pytest.mark.parametrize("shape,power", [("concave", None), ("linear", None), ("convex", None), ("exp", 2.0)])
def test_smoothing_factors_follow_eq_4(shape, power):
    eps = label_aware_smoothing_factors(COUNTS, 0.4, 0.1, shape=shape, power=power)
    np.testing.assert_allclose(eps.numpy(), _reference_eps(COUNTS, 0.4, 0.1, shape, power), rtol=1e-6)
    assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.1)  # head class ε_1, tail class ε_K
    balanced = label_aware_smoothing_factors([7, 7, 7], 0.4, 0.1)
    assert torch.allclose(balanced, torch.full((3,), 0.1))


def test_label_aware_smoothing_loss_is_smoothed_cross_entropy():
    loss = LabelAwareSmoothing(COUNTS, smooth_head=0.3, smooth_tail=0.0)
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(9, 6)) * 2)
    target = torch.from_numpy(rng.integers(0, 6, size=9))
    eps = _reference_eps(COUNTS, 0.3, 0.0, "concave")[target.numpy()]
    q = (1 - eps)[:, None] * np.eye(6)[target.numpy()] + eps[:, None] / 6
    log_p = logits.numpy() - np.log(np.exp(logits.numpy()).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(loss(logits, target).numpy(), -(q * log_p).sum(axis=1), rtol=1e-6)
    assert torch.autograd.gradcheck(lambda z: loss(z, target), (logits.clone().requires_grad_(),))


def test_learnable_weight_scaling_scales_each_class_logit():
    torch.manual_seed(0)
    head = WeightScaledHead(LinearHead(4, 3), 3).double()
    with torch.no_grad():
        head.lws.scale.copy_(torch.tensor([0.5, 2.0, 1.5]))
    z = torch.randn(5, 4, dtype=torch.float64)
    W, b = head.classifier.weight.detach().numpy(), head.classifier.bias.detach().numpy()
    np.testing.assert_allclose(head(z).detach().numpy(), (z.numpy() @ W.T + b) * np.array([0.5, 2.0, 1.5]), rtol=1e-12)
    np.testing.assert_allclose(head.weight.detach().numpy(), W * np.array([[0.5], [2.0], [1.5]]), rtol=1e-12)


# ----------------------------------------------------------------------------------------------------
# Stage 2 from a stage-1 checkpoint
# ----------------------------------------------------------------------------------------------------


fm_root = fashion_mnist_root(n_train=200, n_test=40)


def _data(root, **kwargs):
    options = dict(root=str(root), num_workers=0, batch_size=40, seed=0, imbalance="exp", imbalance_ratio=5)
    options.update(kwargs)
    return FashionMNISTDataModule(**options)


def _trainer(tmp_path, epochs=1):
    return L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     deterministic=True, default_root_dir=tmp_path)


@pytest.fixture(scope="module")
def stage1(fm_root, tmp_path_factory) -> dict[str, Path]:
    """Stage-1 checkpoints (cnn4, with batch norm): PAL + mixup, and a plain linear-head Classifier."""
    out = tmp_path_factory.mktemp("stage1")
    paths = {}
    for name, cls, extra in (("pal", PAL, {"mixup_alpha": 1.0}), ("linear", Classifier, {})):
        dm = _data(fm_root)
        L.seed_everything(0)
        model = cls(num_classes=10, class_counts=dm.class_counts, input_shape=dm.input_shape, backbone="cnn4",
                    optimizer=OptimizerConfig(lr=0.05), lr_schedule=LRSchedule(name="constant"), **extra)
        trainer = _trainer(out)
        trainer.fit(model, dm)
        paths[name] = out / f"{name}.ckpt"
        trainer.save_checkpoint(paths[name])
    return paths


def _mislas(dm, path, **kwargs):
    options = dict(num_classes=10, class_counts=dm.class_counts, input_shape=dm.input_shape, backbone="cnn4",
                   init_from=str(path), optimizer=OptimizerConfig(lr=0.1, weight_decay=2e-4),
                   lr_schedule=LRSchedule(name="cosine"), lr_factor=0.2, loss_args={"smooth_head": 0.4, "smooth_tail": 0.1})
    options.update(kwargs)
    return MiSLAS(**options)


def test_stage2_classifier_starts_from_the_stage1_classifier(fm_root, stage1):
    dm = _data(fm_root)
    saved = torch.load(stage1["pal"], map_location="cpu", weights_only=True)["state_dict"]
    model = _mislas(dm, stage1["pal"])
    assert torch.equal(model.net.head.classifier.weight, saved["net.head.prototypes"])
    assert torch.equal(model.net.head.classifier.bias, torch.zeros(10))
    assert torch.equal(model.net.backbone.fc[2].running_mean, saved["net.backbone.fc.2.running_mean"])
    assert torch.equal(model.net.head.lws.scale, torch.ones(10))
    linear = torch.load(stage1["linear"], map_location="cpu", weights_only=True)["state_dict"]
    model = _mislas(dm, stage1["linear"])
    assert torch.equal(model.net.head.classifier.weight, linear["net.head.weight"])
    assert torch.equal(model.net.head.classifier.bias, linear["net.head.bias"])
    fresh = _mislas(dm, stage1["pal"], init_head="fresh")
    assert not torch.equal(fresh.net.head.classifier.weight, saved["net.head.prototypes"])
    with pytest.raises(ValueError, match="init_head='fresh'"):
        _mislas(dm, stage1["linear"], head="cosine")  # a cosine head has no bias: the stage-1 head does not fit


def test_optimizer_groups_the_classifier_at_lr_factor_and_the_scaling_at_lr(fm_root, stage1):
    model = _mislas(_data(fm_root), stage1["pal"], lr_schedule=LRSchedule(name="constant"))
    model._trainer = None
    optimizer = model.configure_optimizers()["optimizer"]
    classifier, scaling = optimizer.param_groups
    assert classifier["lr"] == pytest.approx(0.1 * 0.2) and scaling["lr"] == pytest.approx(0.1)
    assert {id(p) for p in classifier["params"]} == {id(p) for p in model.net.head.classifier.parameters()}
    assert [id(p) for p in scaling["params"]] == [id(model.net.head.lws.scale)]
    assert classifier["weight_decay"] == scaling["weight_decay"] == 2e-4
    assert not any(p.requires_grad for p in model.net.backbone.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("shift_bn", [True, False])
def test_stage2_keeps_the_backbone_weights_and_shifts_only_batch_norm_statistics(fm_root, stage1, tmp_path, shift_bn):
    dm = _data(fm_root, sampling="class_balanced")
    model = _mislas(dm, stage1["pal"], shift_bn=shift_bn)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    _trainer(tmp_path).fit(model, dm)
    after = model.net.state_dict()
    for key, value in before.items():
        changed = not torch.equal(value, after[key])
        if key.startswith("backbone.") and ("running_" in key or "num_batches_tracked" in key):
            assert changed == shift_bn, key  # shifted batch norm: statistics re-estimated on balanced batches
        elif key.startswith("backbone."):
            assert not changed, key  # frozen weights: bitwise unchanged
        else:
            assert changed, key  # the classifier and the weight scaling train


@pytest.mark.slow
def test_decoupled_crt_stage2_leaves_the_backbone_bitwise_unchanged(fm_root, stage1, tmp_path):
    """Classifier re-training on the base class's machinery: init_from + init_parts backbone + freeze backbone,
    with class-balanced sampling (the pal_cifar100_lt_crt.yaml pipeline)."""
    dm = _data(fm_root, sampling="class_balanced")
    model = Classifier(num_classes=10, class_counts=dm.class_counts, input_shape=dm.input_shape, backbone="cnn4",
                       init_from=str(stage1["pal"]), init_parts="backbone", freeze="backbone",
                       optimizer=OptimizerConfig(lr=0.1), lr_schedule=LRSchedule(name="cosine"))
    saved = torch.load(stage1["pal"], map_location="cpu", weights_only=True)["state_dict"]
    backbone = {k: v for k, v in saved.items() if k.startswith("net.backbone.")}
    head_before = model.net.head.weight.clone()
    _trainer(tmp_path, epochs=2).fit(model, dm)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in backbone.items())
    assert not torch.equal(model.net.head.weight, head_before)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(freeze="none"), "freeze"),
        (dict(init_parts="net"), "init_parts"),
        (dict(init_head="stage2"), "init_head"),
        (dict(lr_factor=0.0), "lr_factor"),
        (dict(shift_bn="yes"), "shift_bn"),
        (dict(loss_args={"smooth_haed": 0.3}), "smooth_haed"),
        (dict(loss_args={"smooth_head": 1.5}), "smooth_head"),
        (dict(loss_args={"shape": "exp"}), "power"),
        (dict(class_counts=None), "class_counts"),
    ],
)
def test_bad_input_is_a_clear_value_error(kwargs, match):
    options = dict(num_classes=6, class_counts=COUNTS, input_shape=(1, 4, 4), backbone="mlp",
                   backbone_args={"hidden": [8]})
    options.update(kwargs)
    with warnings.catch_warnings(), pytest.raises(ValueError, match=match):
        warnings.simplefilter("ignore")
        MiSLAS(**options)


def test_without_init_from_it_warns_and_still_builds():
    with pytest.warns(UserWarning, match="init_from"):
        model = MiSLAS(num_classes=6, class_counts=COUNTS, input_shape=(1, 4, 4), backbone="mlp", backbone_args={"hidden": [8]})
    assert isinstance(model.loss_fn, LabelAwareSmoothing) and model.shift_bn
    assert not any(p.requires_grad for p in model.net.backbone.parameters())
