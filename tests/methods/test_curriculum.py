"""The Curriculum method (papers/003): gradients, the scale/shift fixes, E[Δ] measured, resume, DDP, configs.

References are written from the paper's formulas (Table 1/6 losses, §5.1.1 fixes, Eq. (4)) with
torch/NumPy, never with lt_noise's loss modules.
"""

from __future__ import annotations

import copy
import io
import math
import re
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from support.fashion import fashion_mnist_data, fashion_mnist_root
from support.cli import load_class, print_config
from support.methods import build_method
from support.runs import assert_same_state, resume_pair

from lt_noise.callbacks import CurriculumDiagnostics
from lt_noise.methods import Classifier, Curriculum
from lt_noise.models import available_backbones
from lt_noise.optim import LRSchedule, OptimizerConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


fm_root = fashion_mnist_root(n_train=320, n_test=60)


def _data(root, **kwargs):
    return fashion_mnist_data(root, **{**dict(noise="symmetric", noise_rate=0.4, augment="none"), **kwargs})


def _model(dm=None, cls=Curriculum, **kwargs):
    options = {"num_classes": 10, "input_shape": (1, 28, 28), "lr_schedule": LRSchedule(name="multistep", milestones=(1,), gamma=0.5)}
    return build_method(cls, dm, **{**options, **kwargs})


def _p_label(logits, target):
    return torch.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0].exp()


# The losses of Table 1/6 as functions of p_y, written from the formulas: (registry name, its
# hyperparameters, l(p)).
RAW_LOSSES = {
    "ce": ({}, lambda p: -torch.log(p)),
    "mae": ({}, lambda p: 1 - p),
    "rce": ({"A": math.log(1e-4)}, lambda p: -math.log(1e-4) * (1 - p)),
    "gce_q0.3": ({"q": 0.3}, lambda p: (1 - p**0.3) / 0.3),
    "focal": ({"gamma": 0.5}, lambda p: -((1 - p) ** 0.5) * torch.log(p)),
    "sce": ({"alpha": 0.3, "beta": 0.7, "A": -1.0}, lambda p: 0.3 * -torch.log(p) + 0.7 * (1 - p)),
    "agce_a0.1_q0.1": ({"a": 0.1, "q": 0.1}, lambda p: ((1.1) ** 0.1 - (0.1 + p) ** 0.1) / 0.1),
    "aul_a1.1_q5": ({"a": 1.1, "q": 5.0}, lambda p: ((1.1 - p) ** 5 - 0.1**5) / 5),
    "ael": ({"a": 2.5}, lambda p: torch.exp(-p / 2.5)),
    "tce": ({"order": 2}, lambda p: (1 - p) + (1 - p) ** 2 / 2),
}


@pytest.mark.parametrize("key", RAW_LOSSES)
def test_gradient_is_a_positive_multiple_of_the_raw_loss_gradient(key):
    name = key.split("_")[0]
    hparams, raw = RAW_LOSSES[key]
    model = _model(loss=name, loss_args=hparams)
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(64, 10, generator=gen, dtype=torch.float64) * 2.0).requires_grad_(True)
    target = torch.randint(0, 10, (64,), generator=gen)
    objective = model.reduce(model.per_sample_loss(logits, target), target, torch.arange(64))
    (g_method,) = torch.autograd.grad(objective, logits)
    (g_raw,) = torch.autograd.grad(raw(_p_label(logits, target)).mean(), logits)
    scale = float((g_method * g_raw).sum() / (g_raw * g_raw).sum())
    assert scale > 0
    torch.testing.assert_close(g_method, scale * g_raw, rtol=1e-9, atol=1e-12)
    # the constant is 1 / max_Δ w(Δ): CE's supremum is 1, MAE's 1/4 (at Δ = 0)
    if key == "ce":
        assert scale == pytest.approx(1.0)
    if key == "mae":
        assert scale == pytest.approx(4.0)


def test_one_training_step_equals_sgd_on_the_raw_loss_with_the_scaled_learning_rate(fm_root, tmp_path):
    """mode=None: a Curriculum step with lr η is an SGD step on the plain MAE with lr η / max w = 4η."""
    dm = _data(fm_root)
    lr = 0.2
    model = _model(dm, loss="mae", optimizer=OptimizerConfig(lr=lr, momentum=0.0, weight_decay=0.0))
    initial = copy.deepcopy(model.net)
    seen = {}

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen["batch"] = [t.clone() for t in batch]

    L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0, callbacks=[Spy()], default_root_dir=tmp_path).fit(model, dm)
    x, y, _ = seen["batch"]
    raw = (1 - _p_label(initial(x).double(), y)).mean()
    grads = torch.autograd.grad(raw, list(initial.parameters()))
    for (name, after), before, grad in zip(model.net.named_parameters(), initial.parameters(), grads):
        torch.testing.assert_close(after, before - 4 * lr * grad.float(), rtol=1e-5, atol=1e-7, msg=name)
    assert any((after - before).abs().max() > 1e-4 for after, before in zip(model.net.parameters(), initial.parameters()))


def test_train_loss_logs_the_underlying_loss_not_the_surrogate():
    model = _model(loss="mae", mode="scale", tau=2.0)
    logged = {}
    model.log = lambda name, value, **kwargs: logged.__setitem__(name, float(value))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (16,), generator=gen)
    objective = model.training_step((x, y, torch.arange(16)), 0)
    with torch.no_grad():
        expected = (1 - _p_label(model(x).double(), y)).mean().item()
    assert logged["train/loss"] == pytest.approx(expected, rel=1e-6)
    assert objective.item() != pytest.approx(expected, rel=1e-3)  # the surrogate's value differs


def _expected_margin_eq4(k: int) -> float:
    return -math.log(k - 1) - 0.5 + (math.e - 1) / (2 * (k - 1))


def _mae_weight(delta: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(delta)
    return 4 * p * (1 - p)  # MAE's w = p (1 - p), unit maximum


@pytest.mark.parametrize("mode", ["scale", "shift"])
@pytest.mark.parametrize("expected_margin", [None, -5.097])
def test_fixes_read_the_weight_where_the_paper_says(mode, expected_margin):
    model = _model(num_classes=100, loss="mae", mode=mode, tau=2.6, expected_margin=expected_margin)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(256, 100, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 100, (256,), generator=gen)
    delta = torch.log(_p_label(logits, target)) - torch.log1p(-_p_label(logits, target))  # logit of p_y
    e = abs(_expected_margin_eq4(100) if expected_margin is None else expected_margin)
    read_at = delta / e * 2.6 if mode == "scale" else delta + e - 2.6  # §5.1.1
    torch.testing.assert_close(model.sample_weights(logits, target), _mae_weight(read_at), rtol=1e-9, atol=1e-12)
    # both fixes move E[Δ] to -τ: scores with Δ_0 = -|E[Δ]| exactly (s_0 = -|E| + log 99, the others 0)
    at_expected = torch.zeros(1, 100, dtype=torch.float64)
    at_expected[0, 0] = -e + math.log(99)
    weight = model.sample_weights(at_expected, torch.tensor([0]))
    assert weight.item() == pytest.approx(_mae_weight(torch.tensor(-2.6, dtype=torch.float64)).item(), rel=1e-9)
    # ... and lift the initial weights of 100 classes from marginal (Fig. 7)
    vanilla = _model(num_classes=100, loss="mae").sample_weights(logits, target)
    fixed = model.sample_weights(logits, target)
    assert vanilla.mean() < 0.06 and fixed.mean() > 0.2 and fixed.median() > 8 * vanilla.median()


def test_measure_takes_the_mean_margin_of_the_first_training_batches(fm_root, tmp_path):
    dm = _data(fm_root)
    model = _model(dm, loss="mae", mode="shift", tau=2.0, expected_margin="measure", measure_batches=2)
    captured = []
    hook = model.net.register_forward_hook(lambda m, i, o: captured.append(o.detach().double()) if m.training else None)
    targets = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            targets.append(batch[1].clone())

    L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0, callbacks=[Spy()], default_root_dir=tmp_path).fit(model, dm)
    hook.remove()
    margins = []
    for logits, y in zip(captured[:2], targets[:2]):
        p = _p_label(logits, y)
        margins.append(torch.log(p) - torch.log1p(-p))
    expected = torch.cat(margins).mean().item()
    assert int(model.loss_fn.measured_batches) == 2
    assert float(model.loss_fn.margin_estimate(10)) == pytest.approx(expected, rel=1e-6)
    # the fix now reads w at Δ + |E[Δ]| - τ with the measured E[Δ]
    logits = torch.randn(8, 10, dtype=torch.float64)
    y = torch.arange(8)
    p = _p_label(logits, y)
    delta = torch.log(p) - torch.log1p(-p)
    torch.testing.assert_close(model.sample_weights(logits, y), _mae_weight(delta + abs(expected) - 2.0), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"loss": "nce"}, ValueError, "Expected argument `loss` to be a loss of p_y alone"),
        ({"loss": "ce", "loss_args": {"label_smoothing": 0.1}}, ValueError, "loss of p_y alone"),
        ({"loss": "mae", "tau": 2.0}, ValueError, "Expected `tau` and `expected_margin` to be None without a `mode`"),
        ({"loss": "mae", "mode": "scale"}, ValueError, r"Expected argument `tau` > 0 with mode='scale', but got None"),
        ({"loss": "mae", "mode": "scaled", "tau": 1.0}, ValueError, "Expected argument `mode` in"),
        ({"loss": "mae", "mode": "scale", "tau": 2.0, "expected_margin": "eq4"}, ValueError, "'measure', but got 'eq4'"),
        ({"loss": "mae", "taus": 2.0}, TypeError, "taus"),
    ],
)
def test_invalid_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        _model(**kwargs)


def test_constructible_like_the_classifier_and_hyperparameters_saved():
    base = dict(num_classes=10, class_counts=[5] * 10, input_shape=(1, 28, 28), noise_rate=0.4, backbone="mlp")
    model = Curriculum(**base, **Curriculum.BENCHMARK_KWARGS)
    assert model.hparams["mode"] == "scale" and model.hparams["tau"] == 2.0 and model.hparams["loss"] == "mae"
    rebuilt = Curriculum(**dict(model.hparams))
    assert type(rebuilt.base_loss).__name__ == "MAE" and rebuilt.loss_fn.mode == "scale"
    assert isinstance(Curriculum(**base), Classifier)


class _DiagnosedCurriculum(Curriculum):
    def configure_callbacks(self):
        return super().configure_callbacks() + [CurriculumDiagnostics(log_every_n_steps=4)]


@pytest.mark.slow
def test_resume_with_a_measured_margin_gives_the_uninterrupted_run(fm_root, tmp_path):
    # 10 batches per epoch; measuring over 14 batches crosses the interruption after epoch 1, so the
    # resumed run must continue the measurement from the checkpointed buffers.
    def make_data():
        return _data(fm_root)

    def make_model():
        return _model(make_data(), cls=_DiagnosedCurriculum, loss="agce", loss_args={"a": 0.1, "q": 0.1},
                      mode="scale", tau=2.6, expected_margin="measure", measure_batches=14)

    straight, resumed = resume_pair(make_model, make_data, tmp_path, epochs=3, stop_after=1)
    assert_same_state(straight, resumed)
    assert int(straight["state_dict"]["loss_fn.measured_batches"]) == 14
    assert straight["callbacks"]["CurriculumDiagnostics"]["epochs"] == [0, 1, 2]


# ----------------------------------------------------------------------------------------------------
# Configs: every curriculum_* and apl_* config parses, offline (print_config instantiates nothing)
CONFIG_FILES = sorted(p.name for p in CONFIGS.glob("curriculum_*.yaml")) + sorted(p.name for p in CONFIGS.glob("apl_*.yaml"))

# The APL code's per-dataset settings (HanxunH/Active-Passive-Losses configs/{mnist,cifar10,cifar100}/
# {sym,asym}/*.yaml; sym and asym are identical): (epochs, lr, weight decay, nesterov, eta_min / lr).
APL_OPTIM = {
    "mnist": (50, 0.01, 1e-2, True, 0.1),
    "cifar10": (120, 0.01, 1e-4, False, 0.0),
    "cifar100": (200, 0.1, 1e-5, False, 0.0),
}
APL_BACKBONE = {"mnist": "cnn4", "cifar10": "cnn8", "cifar100": "resnet34_cifar"}
# Loss hyperparameters there (RCE's log 0 clamped at log(1e-4)).
A = math.log(1e-4)
APL_LOSS = {
    ("mnist", "sce"): {"alpha": 0.01, "beta": 1.0, "A": A},
    ("cifar10", "sce"): {"alpha": 0.1, "beta": 1.0, "A": A},
    ("cifar100", "sce"): {"alpha": 6.0, "beta": 0.1, "A": A},
    ("mnist", "nce+mae"): {"alpha": 1.0, "beta": 10.0},
    ("cifar10", "nce+mae"): {"alpha": 1.0, "beta": 1.0},
    ("cifar100", "nce+mae"): {"alpha": 10.0, "beta": 1.0},
    ("mnist", "nce+rce"): {"alpha": 1.0, "beta": 10.0, "A": A},
    ("cifar10", "nce+rce"): {"alpha": 1.0, "beta": 1.0, "A": A},
    ("cifar100", "nce+rce"): {"alpha": 10.0, "beta": 0.1, "A": A},
    ("mnist", "nfl+rce"): {"alpha": 1.0, "beta": 10.0, "gamma": 0.5, "A": A},
    ("cifar10", "nfl+rce"): {"alpha": 1.0, "beta": 1.0, "gamma": 0.5, "A": A},
    ("cifar100", "nfl+rce"): {"alpha": 10.0, "beta": 0.1, "gamma": 0.5, "A": A},
    **{(d, "gce"): {"q": 0.7} for d in APL_OPTIM},
    **{(d, "focal"): {"gamma": 0.5} for d in APL_OPTIM},
    **{(d, "ce"): {} for d in APL_OPTIM},
}


def test_the_configs_exist():
    names = set(CONFIG_FILES)
    assert {f"apl_{d}_{loss.replace('+', '_')}.yaml" for d, loss in APL_LOSS} <= names
    rows = ("mae", "mae_scale", "mae_shift", "agce", "agce_scale", "agce_shift")  # Tables 3, 10, 11
    assert {f"curriculum_cifar100_{row}.yaml" for row in rows} <= names


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_parses_offline_and_documents_its_row(name):
    path = CONFIGS / name
    header = path.read_text().split("\n\n")[0]
    assert re.search(r"Tables? \d+", header) and "row" in header.lower(), f"{name}: header must name its table and row"
    config = print_config("--config", str(path))
    model = config["model"]["init_args"]
    # the classes accept the arguments (constructing a datamodule reads no file; the data facts the CLI
    # links into the model come from the datamodule's class). A small stand-in backbone keeps this fast;
    # the configured one must be registered.
    data = load_class(config["data"]["class_path"])(**config["data"]["init_args"])
    assert model["backbone"] in available_backbones()
    built = load_class(config["model"]["class_path"])(
        **{**model, "num_classes": data.num_classes, "input_shape": data.input_shape, "noise_rate": data.noise_rate,
           "backbone": "mlp", "backbone_args": {"hidden": [8]}}
    )
    for callback in config["trainer"]["callbacks"] or []:
        load_class(callback["class_path"])(**callback.get("init_args", {}))
    if name.startswith("curriculum_"):
        assert isinstance(built, Curriculum) == (model["loss"] not in ("nce", "nce+mae"))
        assert any(c["class_path"].endswith("CurriculumDiagnostics") for c in config["trainer"]["callbacks"])
    match = re.fullmatch(r"apl_(mnist|cifar10|cifar100)_(\w+)\.yaml", name)
    if match:
        dataset, loss = match.group(1), match.group(2).replace("_", "+")
        epochs, lr, wd, nesterov, eta_ratio = APL_OPTIM[dataset]
        assert config["trainer"]["max_epochs"] == epochs
        assert config["trainer"]["gradient_clip_val"] == 5.0  # the APL code's grad_bound
        assert model["optimizer"]["lr"] == lr and model["optimizer"]["weight_decay"] == wd
        assert model["optimizer"]["nesterov"] is nesterov and model["optimizer"]["momentum"] == 0.9
        assert model["lr_schedule"]["name"] == "cosine" and model["lr_schedule"]["min_lr_ratio"] == pytest.approx(eta_ratio)
        assert model["backbone"] == APL_BACKBONE[dataset] and model["loss"] == loss
        assert (model["loss_args"] or {}) == pytest.approx(APL_LOSS[dataset, loss])
        assert config["data"]["init_args"]["batch_size"] == 128


def test_noise_is_settable_from_the_command_line():
    config = print_config("--config", str(CONFIGS / "apl_cifar10_nce_rce.yaml"), "--data.init_args.noise", "asymmetric",
                           "--data.init_args.noise_rate", "0.3", subcommand=True)
    assert config["data"]["init_args"]["noise"] == "asymmetric" and config["data"]["init_args"]["noise_rate"] == 0.3
    config = print_config("--config", str(CONFIGS / "curriculum_cifar100_mae_scale.yaml"), "--model.init_args.tau", "3.0",
                           "--data.init_args.human_labels", "noisy")
    assert config["model"]["init_args"]["tau"] == 3.0 and config["data"]["init_args"]["human_labels"] == "noisy"
    assert load_class(config["data"]["class_path"])(**config["data"]["init_args"]).human_labels == "noisy"  # CIFAR-100N
    config = print_config("--config", str(CONFIGS / "curriculum_cifar10_aul.yaml"), "--model.init_args.loss_args",
                           "{a: 3.0, q: 0.7}")  # the AUL† row of Table 2
    assert config["model"]["init_args"]["loss_args"] == {"a": 3.0, "q": 0.7}
