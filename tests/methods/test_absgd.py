"""Tests of lt_noise.methods.ABSGD (paper 004: Algorithm 1, eq. 2, eq. 9, Section 3.6 two stages).

Independent references: eq. (2) and Algorithm 1 written out by hand in float64 NumPy for a linear model
(softmax cross entropy and its gradient in closed form), eq. (9) likewise, and the plain Classifier for
λ = inf.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from support.fashion import data_facts, fashion_mnist_data, fashion_mnist_root
from support.cli import cli_config, load_class, print_config
from support.methods import Flatten, build_method
from support.runs import assert_same_state, assert_same_weights, resume_pair, run_cli_fit
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lt_noise.callbacks import ABSGDStages
from lt_noise.methods import ABSGD, Classifier
from lt_noise.methods.absgd import ABAdamEq9
from lt_noise.optim import LRSchedule, OptimizerConfig

# ----------------------------------------------------------------------------------------------------
# Fixtures and helpers
# ----------------------------------------------------------------------------------------------------

NUM_CLASSES = 3
FEATURES = 6  # a linear model on 1x2x3 "images"


def _linear_data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 2, 3)) * 2.0
    y = rng.integers(0, NUM_CLASSES, size=n)
    return x, y


def _loader(x, y, batch_size, dtype=torch.float64):
    dataset = TensorDataset(torch.tensor(x, dtype=dtype), torch.tensor(y), torch.arange(len(y)))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def _linear_model(cls=ABSGD, **kwargs):
    """The linear head alone (an identity backbone): logits = W x + b."""
    options = {"num_classes": NUM_CLASSES, "input_shape": (1, 2, 3), "backbone": Flatten(FEATURES),
               "optimizer": OptimizerConfig(name="sgd", lr=0.3, momentum=0.9, weight_decay=0.01)}
    return build_method(cls, **{**options, **kwargs})


def _fit_steps(model, loader, steps, tmp_path, **kwargs):
    options = dict(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                   default_root_dir=tmp_path, deterministic=True)
    options.update(kwargs)
    L.Trainer(**options).fit(model, train_dataloaders=loader)


def _softmax_ce(W, b, x, y):
    """Per-sample CE and its gradient w.r.t. (W, b) for logits = W x + b (closed form)."""
    logits = x @ W.T + b
    logits = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    losses = -np.log(prob[np.arange(len(y)), y])
    delta = prob.copy()
    delta[np.arange(len(y)), y] -= 1.0  # d CE_i / d logits_i
    grad_W = delta[:, :, None] * x[:, None, :]  # (B, K, D)
    return losses, grad_W, delta


fm_root = fashion_mnist_root(n_train=300, n_test=60)


_data = fashion_mnist_data


def _fm_model(dm, **kwargs):
    return build_method(ABSGD, dm, **{"backbone": "cnn4", "lr_schedule": LRSchedule(name="multistep", milestones=(2,), gamma=0.5), **kwargs})


# ----------------------------------------------------------------------------------------------------
# Eq. (2): one / two ABSGD steps by hand
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [2.0, -0.5])
def test_two_steps_follow_algorithm_1_and_eq_2(lam, tmp_path):
    gamma, alpha, lr, beta, wd, B = 0.3, 0.5, 0.3, 0.9, 0.01, 6
    x, y = _linear_data(n=2 * B)
    model = _linear_model(lam=lam, gamma=gamma, alpha=alpha)
    W = model.net.head.weight.detach().double().numpy().copy()
    b = model.net.head.bias.detach().double().numpy().copy()
    _fit_steps(model, _loader(x, y, B), 2, tmp_path, precision="64-true")

    # Algorithm 1 with the authors' s_0 = 0 and step-size factor α, eq. (2) with w_{-1} = w_0.
    flat = x.reshape(len(x), -1)
    s, prev_W, prev_b = 0.0, W.copy(), b.copy()
    expected_weights = []
    for step in range(2):
        xb, yb = flat[step * B : (step + 1) * B], y[step * B : (step + 1) * B]
        losses, grad_W, delta = _softmax_ce(W, b, xb, yb)
        e = np.exp(losses / lam)
        s = (1 - gamma) * s + gamma * alpha * e.mean()
        p = e / s
        expected_weights.append(p)
        g_W = (p[:, None, None] * grad_W).sum(axis=0) / B + wd * W
        g_b = (p[:, None] * delta).sum(axis=0) / B + wd * b
        new_W = W - lr * g_W + beta * (W - prev_W)
        new_b = b - lr * g_b + beta * (b - prev_b)
        prev_W, prev_b, W, b = W, b, new_W, new_b

    np.testing.assert_allclose(model.net.head.weight.detach().numpy(), W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.net.head.bias.detach().numpy(), b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.weighting.normalizer.item(), s, rtol=1e-10)
    np.testing.assert_allclose(model.last_weights.numpy(), expected_weights[-1], rtol=1e-10)
    assert int(model.weighting.num_updates) == 2
    # the weights really are non-uniform, so the comparison above could fail
    assert np.ptp(expected_weights[-1]) > 0.1


def test_class_weights_enter_the_exponent_as_the_authors_cb_losses_do():
    """ABSGD + CB loss: L_i = w_{y_i} ℓ_i, p_i = exp(L_i/λ)/s, objective (1/B) Σ p_i L_i (mylosses.py)."""
    model = _linear_model(lam=1.5, gamma=1.0)
    model.class_weights.copy_(torch.tensor([0.5, 2.0, 1.0]))
    losses = torch.tensor([0.2, 1.0, 0.7, 2.0], dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 1])
    reduced = model.reduce(losses, targets, torch.arange(4))
    weighted = np.array([0.1, 2.0, 0.7, 4.0])
    e = np.exp(weighted / 1.5)
    p = e / e.mean()  # γ = 1: s = mean
    assert reduced.item() == pytest.approx((p * weighted).mean(), rel=1e-12)


# ----------------------------------------------------------------------------------------------------
# λ = inf is the plain Classifier
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("class_weighted", [False, True])
def test_lam_inf_steps_equal_the_plain_classifier_exactly(class_weighted, tmp_path):
    x, y = _linear_data(n=24, seed=3)
    states = []
    for cls, extra in ((Classifier, {}), (ABSGD, {"lam": math.inf})):
        torch.manual_seed(5)
        model = _linear_model(cls, **extra)
        if class_weighted:
            model.class_weights.copy_(torch.tensor([0.5, 2.0, 1.0]))
        _fit_steps(model, _loader(x, y, 8, dtype=torch.float32), 3, tmp_path)
        states.append(model.net.state_dict())
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name


# ----------------------------------------------------------------------------------------------------
# Two stages
# ----------------------------------------------------------------------------------------------------


class _Recorder(L.Callback):
    def __init__(self):
        self.states, self.lams, self.updates, self.requires_grad = [], [], [], []

    def on_train_epoch_end(self, trainer, pl_module):
        self.states.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})
        self.lams.append(pl_module.weighting.lam)
        self.updates.append(int(pl_module.weighting.num_updates))
        self.requires_grad.append({n: p.requires_grad for n, p in pl_module.named_parameters()})


@pytest.mark.parametrize("form", ["callback", "deprecated_arguments"])
@pytest.mark.parametrize("freeze", ["backbone", "backbone_except_last_block"])
def test_stage_switch_restarts_the_normalizer_and_freezes_at_its_epoch(fm_root, tmp_path, freeze, form):
    dm = _data(fm_root, imbalance="exp", imbalance_ratio=5)
    stages = dict(stage1_lam=100.0, stage2_epoch=1, stage2_freeze=freeze)
    if form == "callback":
        model, callbacks = _fm_model(dm, lam=3.0, gamma=0.5), [ABSGDStages(**stages)]
    else:  # the method's own arguments of earlier versions: they build the same callback
        with pytest.warns(DeprecationWarning, match="ABSGDStages"):
            model, callbacks = _fm_model(dm, lam=3.0, gamma=0.5, **stages), []
        assert model.weighting.lam == 100.0 and int(model.absgd_stage) == 1
    recorder = _Recorder()
    steps = 3
    L.Trainer(accelerator="cpu", max_epochs=3, limit_train_batches=steps, limit_val_batches=0, logger=False,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              callbacks=[recorder, *callbacks], default_root_dir=tmp_path).fit(model, dm)
    assert recorder.lams == [100.0, 3.0, 3.0]
    # stage 1 updated the normalizer 3 times; the switch reset it, so stage 2 counts from zero
    assert recorder.updates == [steps, steps, 2 * steps]
    assert int(model.absgd_stage) == 2
    trained = ("net.head.",) + (("net.backbone.fc.",) if freeze == "backbone_except_last_block" else ())
    after_stage1, end = recorder.states[0], recorder.states[-1]
    for name, value in end.items():
        if not name.startswith("net."):
            continue
        changed = not torch.equal(value, after_stage1[name])
        assert changed == name.startswith(trained), f"{name}: changed={changed} in stage 2"
        assert changed or not name.startswith("net.head."), name
    # stage 1 trained everything (the freeze really starts at the stage boundary)
    assert all(recorder.requires_grad[0].values())
    assert not all(recorder.requires_grad[1].values())


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [1, 2])
def test_resume_across_the_stage_boundary_is_exact(fm_root, tmp_path, stop_after):
    def make_data():
        return _data(fm_root, imbalance="exp", imbalance_ratio=5, augment="crop_flip", batch_size=50)

    def make_model():
        return _fm_model(make_data(), lam=2.0, gamma=0.7)

    def make_callbacks():
        return [ABSGDStages(stage2_epoch=1, stage1_lam=50.0, stage2_freeze="backbone_except_last_block")]

    straight, resumed = resume_pair(make_model, make_data, tmp_path, epochs=3, stop_after=stop_after,
                                    make_callbacks=make_callbacks)
    assert_same_state(straight, resumed)
    state = straight["state_dict"]
    assert int(state["absgd_stage"]) == 2 and torch.isfinite(state["weighting.log_normalizer"])
    figures = [v for k, v in straight["callbacks"].items() if "AttentionalWeightFigures" in k]
    assert len(figures) == 1 and figures[0]["epochs"] == [0, 1, 2]


def test_single_stage_from_the_start_freezes_before_the_optimizer_is_built(fm_root, tmp_path):
    model = _fm_model(_data(fm_root), lam=2.0)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[ABSGDStages(stage2_epoch=0, stage2_freeze="backbone")])
    trainer.fit(model, _data(fm_root))
    assert model.weighting.lam == 2.0 and int(model.absgd_stage) == 2
    in_optimizer = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in model.net.head.parameters()}


def test_the_deprecated_stage_arguments_freeze_at_construction_as_before(fm_root):
    with pytest.warns(DeprecationWarning, match="stage2_freeze='backbone'"):
        model = _fm_model(_data(fm_root), lam=2.0, stage2_freeze="backbone")
    assert model.weighting.lam == 2.0 and int(model.absgd_stage) == 2
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable == {id(p) for p in model.net.head.parameters()}
    assert isinstance(model.stage_schedule, ABSGDStages) and model.stage_schedule.stage2_epoch == 0


def test_stages_given_twice_or_to_another_method_are_an_error(fm_root, tmp_path):
    with pytest.warns(DeprecationWarning):
        model = _fm_model(_data(fm_root), lam=2.0, stage2_epoch=1)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[ABSGDStages(stage2_epoch=1)])
    with pytest.raises(ValueError, match="either as the callback ABSGDStages or"):
        trainer.fit(model, _data(fm_root))
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[ABSGDStages(stage2_epoch=1)])
    with pytest.raises(ValueError, match="Expected an ABSGD method"):
        trainer.fit(Classifier(**data_facts(_data(fm_root)), backbone="cnn4"), _data(fm_root))


# ----------------------------------------------------------------------------------------------------
# DDP parity
# ----------------------------------------------------------------------------------------------------


@pytest.mark.ddp
def test_ddp_two_processes_follow_the_one_process_trajectory_across_a_freeze(fm_root, tmp_path):
    """2 ranks x B with the global normalizer = 1 process x 2B, across a stage switch with a mid-run freeze
    (the reliability matrix runs the switch without a freeze)."""
    stages = {"class_path": "lt_noise.callbacks.ABSGDStages",
              "init_args": {"stage1_lam": 20.0, "stage2_epoch": 1, "stage2_freeze": "backbone_except_last_block"}}
    config = cli_config(
        "ABSGD", fm_root, callbacks=[stages],
        model={"backbone_args": {"hidden": [64, 32]}, "lr_schedule": {"name": "constant"}, "lam": 1.0, "gamma": 0.5},
        # drop_last: a padded last batch (duplicates under DDP) would differ from the single process's
        data={"imbalance": "exp", "imbalance_ratio": 5, "augment": "crop_flip", "drop_last": True},
    )
    single = run_cli_fit(config, tmp_path / "one", devices=1, batch_size=32)
    double = run_cli_fit(config, tmp_path / "two", devices=2, batch_size=16,
                         extra_args=("--trainer.strategy", "ddp_find_unused_parameters_true"))
    assert single["global_step"] == double["global_step"] > 0
    assert int(single["state_dict"]["weighting.num_updates"]) > 0
    assert_same_weights(single, double, atol=2e-5)


def test_mid_run_freeze_under_plain_ddp_is_a_clear_error():
    model = _linear_model(lam=1.0)
    stages = ABSGDStages(stage2_epoch=1, stage2_freeze="backbone")
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        stages.on_fit_start(SimpleNamespace(world_size=2, strategy=SimpleNamespace(_ddp_kwargs={})), model)
    stages.on_fit_start(SimpleNamespace(world_size=2, strategy=SimpleNamespace(_ddp_kwargs={"find_unused_parameters": True})), model)


# ----------------------------------------------------------------------------------------------------
# ABAdam
# ----------------------------------------------------------------------------------------------------


def test_abadam_with_torch_adam_trains(fm_root, tmp_path):
    dm = _data(fm_root)
    model = _fm_model(dm, lam=2.0, optimizer=OptimizerConfig(name="adam", lr=1e-3, weight_decay=1e-4))
    before = {k: v.clone() for k, v in model.named_parameters()}
    L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=0, logger=False,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=tmp_path).fit(model, dm)
    assert isinstance(model.trainer.optimizers[0], torch.optim.Adam)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_abadam_eq9_follows_the_paper_update(tmp_path):
    """Two steps of eq. (9) by hand: no bias correction, decoupled ∇r(w) = wd·w."""
    lam, gamma, lr, wd, (b1, b2), eps, B = 1.0, 0.5, 0.01, 0.1, (0.9, 0.999), 1e-8, 6
    x, y = _linear_data(n=2 * B, seed=1)
    model = _linear_model(lam=lam, gamma=gamma, optimizer=OptimizerConfig(name="abadam_eq9", lr=lr, weight_decay=wd))
    W = model.net.head.weight.detach().double().numpy().copy()
    bias = model.net.head.bias.detach().double().numpy().copy()
    _fit_steps(model, _loader(x, y, B), 2, tmp_path, precision="64-true")
    assert isinstance(model.trainer.optimizers[0], ABAdamEq9)

    flat = x.reshape(len(x), -1)
    s = 0.0
    v = [np.zeros_like(W), np.zeros_like(bias)]
    u = [np.zeros_like(W), np.zeros_like(bias)]
    for step in range(2):
        xb, yb = flat[step * B : (step + 1) * B], y[step * B : (step + 1) * B]
        losses, grad_W, delta = _softmax_ce(W, bias, xb, yb)
        e = np.exp(losses / lam)
        s = (1 - gamma) * s + gamma * e.mean()
        p = e / s
        grads = [(p[:, None, None] * grad_W).sum(axis=0) / B, (p[:, None] * delta).sum(axis=0) / B]
        params = [W, bias]
        for i, G in enumerate(grads):
            v[i] = b1 * v[i] + (1 - b1) * G
            u[i] = b2 * u[i] + (1 - b2) * G**2
            params[i] = params[i] - lr * (v[i] / (np.sqrt(u[i]) + eps) + wd * params[i])
        W, bias = params
    np.testing.assert_allclose(model.net.head.weight.detach().numpy(), W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.net.head.bias.detach().numpy(), bias, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------------------------------
# Non-finite losses, bad input
# ----------------------------------------------------------------------------------------------------


def test_a_skipped_non_finite_batch_leaves_the_normalizer_as_it_was(tmp_path):
    x, y = _linear_data(n=24, seed=4)
    model = _linear_model(lam=1.0, on_nonfinite="skip")
    real, calls = model.loss_fn, []

    def nan_on_second_call(logits, target):
        calls.append(1)
        losses = real(logits, target)
        return losses * float("nan") if len(calls) == 2 else losses

    wrapper = nn.Module()
    wrapper.forward = nan_on_second_call
    model.loss_fn = wrapper
    log_s = []

    class Spy(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            log_s.append(pl_module.weighting.log_normalizer.clone())

    _fit_steps(model, _loader(x, y, 8, dtype=torch.float32), 3, tmp_path, callbacks=[Spy()])
    assert len(calls) == 3
    assert torch.equal(log_s[1], log_s[0]) and torch.isfinite(log_s[2]) and not torch.equal(log_s[2], log_s[1])
    assert int(model.weighting.num_updates) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": 0.0}, r"`lam` to be a nonzero number"),
        ({"lam": float("nan")}, r"`lam` to be a real number"),
        ({"stage1_lam": 0}, r"`stage1_lam` to be a nonzero number"),
        ({"gamma": 0.0}, r"`gamma` in \(0, 1\], but got 0.0"),
        ({"gamma": 1.5}, r"`gamma` in \(0, 1\], but got 1.5"),
        ({"alpha": 0.0}, r"`alpha`"),
        ({"stage2_epoch": -1}, r"`stage2_epoch` to be an integer >= 0, but got -1"),
        ({"stage2_freeze": "head"}, r"`stage2_freeze` in"),
        ({"stage2_freeze": "backbone", "freeze": "backbone"}, r"only one of `freeze`"),
        ({"adam_variant": "paper"}, r"`adam_variant` in"),
        ({"adam_variant": "eq9"}, r"optimizer name 'adam' with adam_variant='eq9'"),
        ({"floor": "min"}, r"`floor`"),
    ],
)
def test_bad_input_is_a_clear_value_error(kwargs, match):
    with warnings.catch_warnings(), pytest.raises(ValueError, match=match):
        warnings.simplefilter("ignore", DeprecationWarning)  # the stage arguments' own
        _linear_model(**kwargs)


def test_the_deprecated_adam_variant_builds_the_named_eq9_optimizer(tmp_path):
    with pytest.warns(DeprecationWarning, match="abadam_eq9"):
        model = _linear_model(lam=1.0, adam_variant="eq9", optimizer=OptimizerConfig(name="adam", lr=0.01))
    x, y = _linear_data(n=6)
    _fit_steps(model, _loader(x, y, 6), 1, tmp_path, precision="64-true")
    assert isinstance(model.trainer.optimizers[0], ABAdamEq9)


# ----------------------------------------------------------------------------------------------------
# Configs (Tables 1-7): every configs/absgd_*.yaml parses offline and builds
# ----------------------------------------------------------------------------------------------------

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = sorted(p.name for p in CONFIGS.glob("absgd_*.yaml"))


def test_every_table_has_its_configs():
    assert {"absgd_cifar10.yaml", "absgd_cifar100.yaml", "absgd_cifar10_cb.yaml", "absgd_cifar100_cb.yaml",
            "absgd_imagenet_lt.yaml", "absgd_places_lt.yaml", "absgd_inaturalist.yaml", "absgd_cifar10_noisy.yaml",
            "absgd_cifar100_noisy.yaml", "absgd_clothing1m.yaml"} <= set(CONFIG_FILES)


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_parses_builds_and_documents_its_row(name):
    path = CONFIGS / name
    header = path.read_text().split("\nseed_everything")[0]
    assert re.search(r"Table \d", header) and "row" in header, f"{name}: the header must name its table and row"
    config = print_config("--config", str(path))
    model = dict(config["model"]["init_args"])
    data = load_class(config["data"]["class_path"])(**config["data"]["init_args"])
    if str(model["backbone"]).startswith("torchvision/"):
        model.update(backbone="mlp", backbone_args=None)  # no download; the ABSGD arguments are under test
    model.update(init_from=None, num_classes=10, input_shape=data.input_shape, noise_rate=data.noise_rate)
    built = load_class(config["model"]["class_path"])(**model)
    callbacks = [load_class(c["class_path"])(**c.get("init_args", {})) for c in config["trainer"]["callbacks"] or []]
    if not isinstance(built, ABSGD):
        assert name.endswith("_stage1.yaml")
        return
    # the stages are the callback, visible in the config; the method's deprecated arguments stay unused
    assert built.stage_schedule is None and built.adam_variant == "torch"
    stages = [c for c in callbacks if isinstance(c, ABSGDStages)]
    assert len(stages) <= 1
    stage2, stage1_lam = (stages[0].stage2_epoch, stages[0].stage1_lam) if stages else (0, None)
    if name.startswith(("absgd_cifar10.", "absgd_cifar100.", "absgd_cifar10_cb", "absgd_cifar100_cb")):
        # Section 4.1 / the authors' scripts: ResNet-32, 200 epochs, lr 0.1 warm-up 5, /100 at 160 and 180,
        # momentum SGD before epoch 160 (--init_lamda 200 --lamda_shots 160)
        assert model["backbone"] == "resnet32" and config["trainer"]["max_epochs"] == 200
        assert model["lr_schedule"] == {"name": "multistep", "milestones": [160, 180], "gamma": 0.01,
                                        "warmup_epochs": 5, "min_lr_ratio": 0.0}
        assert math.isinf(stage1_lam) and stage2 == 160 and built.lam > 0
        drw = [c for c in config["trainer"]["callbacks"] or [] if c["class_path"].endswith("DeferredReweighting")]
        assert len(drw) == name.endswith("_cb.yaml") and all(c["init_args"]["start_epoch"] == 160 for c in drw)
    elif "noisy" in name or "clothing" in name:
        assert built.lam < 0 and built.weighting.floor == "add" and model["loss"] == "sce"
        assert stage2 == (5 if "clothing" in name else 80)
    else:  # stage 2 of the large benchmarks: from the stage-1 checkpoint, lambda in {10, 20, 30}
        assert stage2 == 0 and built.lam in (10.0, 20.0, 30.0)
        assert config["model"]["init_args"]["init_from"].endswith("_stage1/version_0/checkpoints/last.ckpt")
        stage1 = yaml.safe_load((CONFIGS / name.replace(".yaml", "_stage1.yaml")).read_text())
        assert stage1["model"]["init_args"]["backbone"] == config["model"]["init_args"]["backbone"]
        assert stage1["data"]["class_path"] == config["data"]["class_path"]


def test_header_commands_parse():
    config = print_config("--config", str(CONFIGS / "absgd_cifar10_cb.yaml"), "--model.init_args.loss", "ldam",
                           "--model.init_args.loss_args", "{max_m: 0.5, s: 30}", "--model.init_args.head", "cosine",
                           "--data.init_args.imbalance", "step", "--data.init_args.imbalance_ratio", "10")
    assert config["model"]["init_args"]["loss"] == "ldam" and config["model"]["init_args"]["head"] == "cosine"
    assert config["data"]["init_args"]["imbalance"] == "step" and config["data"]["init_args"]["imbalance_ratio"] == 10
    config = print_config("--config", str(CONFIGS / "absgd_cifar100_noisy.yaml"), "--model.init_args.backbone",
                           "resnet34_cifar", "--data.init_args.noise", "asymmetric", "--data.init_args.noise_exact",
                           "false", "--model.init_args.lam", ".inf")
    assert math.isinf(config["model"]["init_args"]["lam"]) and config["data"]["init_args"]["noise_exact"] is False
