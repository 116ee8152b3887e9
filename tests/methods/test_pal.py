"""Tests of lt_noise.methods.PAL and FNPAL (papers/000: Sections 3.3, 4.1-4.2, 5.2) and their configs.

Independent references: logits and losses written out in float64 NumPy from the paper's formulas
(``W z``; ``s W z/||z||``; LDAM's ``CE(s (cos - m_y e_y))``; ``s = 0.25/(0.05 + η)``), Proposition 4.3
(``Σ_i NSL(f(x), i) = 0``), and the uninterrupted / single-process runs for resume / DDP.
"""

from __future__ import annotations

import inspect
import io
import math
import re
import shlex
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from support.fashion import data_facts, fashion_mnist_root
from support.cli import cli_config, load_class, print_config
from support.methods import build_method
from support.runs import assert_same_state, assert_same_weights, resume_pair, run_cli_fit
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lt_noise.data.modules import FashionMNISTDataModule
from lt_noise.losses import NSL, ldam_margins
from lt_noise.methods import FNPAL, PAL
from lt_noise.methods.pal import noise_aware_scale
from lt_noise.models import available_backbones
from lt_noise.optim import LRSchedule, OptimizerConfig
from lt_noise.prototypes import save_prototypes, simplex_prototypes

NUM_CLASSES = 4
FEATURES = 6


class LinearBackbone(nn.Module):
    """A trainable linear backbone, so that the features (and the logits) have a closed form."""

    feature_dim = FEATURES

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(FEATURES, FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def _model(cls=PAL, **kwargs):
    options = {"num_classes": NUM_CLASSES, "class_counts": [40, 20, 10, 5], "input_shape": (1, 2, 3),
               "backbone": LinearBackbone(), "optimizer": OptimizerConfig(lr=0.5)}
    return build_method(cls, seed=0, **{**options, **kwargs})  # seeded after the backbone's initialisation


def _batch(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(size=(n, 1, 2, 3))), torch.from_numpy(rng.integers(0, NUM_CLASSES, size=n))


def _features_and_prototypes(model, x):
    with torch.no_grad():
        return model.features(x).numpy(), model.prototypes.double().numpy()


# ----------------------------------------------------------------------------------------------------
# Logits and the noise-aware scale
# ----------------------------------------------------------------------------------------------------


def test_pal_logits_are_w_z_with_unnormalised_features():
    model = _model().double()
    x, _ = _batch()
    z, W = _features_and_prototypes(model, x)
    np.testing.assert_allclose(model(x).detach().numpy(), z @ W.T, rtol=1e-12)
    assert not model.net.head.normalize and model.net.head.scale == 1.0


@pytest.mark.parametrize("eta", [0.0, 0.2, 0.4, 0.6, 0.8])
def test_fnpal_noise_aware_scale_and_logits(eta):
    assert noise_aware_scale(eta) == pytest.approx(0.25 / (0.05 + eta), rel=1e-15)
    model = _model(FNPAL, noise_rate=eta).double()
    assert model.scale == model.net.head.scale == pytest.approx(0.25 / (0.05 + eta), rel=1e-15)
    x, _ = _batch()
    z, W = _features_and_prototypes(model, x)
    z_hat = z / np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(model(x).detach().numpy(), 0.25 / (0.05 + eta) * z_hat @ W.T, rtol=1e-12)


@pytest.mark.parametrize("loss,loss_args", [("nce+mae", {}), ("nce+rce", {}), ("nfl+rce", {"gamma": 0.5}),
                                            ("nce+agce", {})])
def test_fnpal_auto_scale_is_10_for_active_passive_losses(loss, loss_args):
    # PAL Section 5.2: "s = 10 for APL losses", whatever the noise rate.
    model = _model(FNPAL, loss=loss, loss_args=loss_args, noise_rate=0.8)
    assert model.scale == model.net.head.scale == 10.0 and model.hparams["scale"] == "auto"


@pytest.mark.parametrize("loss", ["ce", "sce", "gce"])
def test_fnpal_auto_scale_is_noise_aware_for_other_losses(loss):
    model = _model(FNPAL, loss=loss, noise_rate=0.8)
    assert model.scale == model.net.head.scale == pytest.approx(0.25 / 0.85, rel=1e-15)


def test_fnpal_explicit_scale_wins_over_the_rule():
    assert _model(FNPAL, loss="nce+rce", noise_rate=0.8, scale=3.0).net.head.scale == 3.0
    assert _model(FNPAL, loss="nce+rce", noise_rate=0.8, scale="noise_aware").net.head.scale == pytest.approx(0.25 / 0.85)
    assert _model(FNPAL, loss="ldam").net.head.scale == 1.0  # auto: LDAM's own s scales the cosine logits
    with pytest.raises(ValueError, match="noise_rate"):
        _model(FNPAL, loss="ce")
    with pytest.raises(ValueError, match="Expected argument `scale`"):
        _model(FNPAL, loss="ce", noise_rate=0.2, scale="noise-aware")


def test_fnpal_numeric_scale_does_not_need_a_noise_rate():
    model = _model(FNPAL, scale=10)
    assert model.scale == model.net.head.scale == 10.0 and model.net.head.normalize and model.hparams["scale"] == 10


def test_nsl_on_anchored_prototypes_is_symmetric():
    """Proposition 4.3: Σ_i L_NSL(f(x), i) = 0 because the anchored prototypes sum to zero."""
    for cls, extra in ((PAL, {}), (FNPAL, {"scale": 3.0})):
        model = _model(cls, loss="nsl", **extra).double()
        x, _ = _batch(n=5)
        logits = model(x).detach()
        total = sum(NSL()(logits, torch.full((5,), i)) for i in range(NUM_CLASSES))
        # The prototypes are stored in float32: their sum is zero up to float32 rounding.
        assert float(total.abs().max()) < 1e-6 * float(logits.abs().max())


def test_ldam_with_pal_is_ldam_on_the_cosine_to_anchored_prototypes():
    """LDAM (Cao et al.; PAL eq. 2): CE(s (cos θ - m_y e_y)) with unit z and anchored w; the margins m_y =
    max_m (n_min / n_y)^(1/4). PAL normalises the features for it; FNPAL needs scale 1."""
    counts = [40, 20, 10, 5]
    model = _model(loss="ldam", loss_args={"max_m": 0.5, "s": 30.0}).double()
    assert model.net.head.normalize and model.net.head.scale == 1.0
    x, y = _batch()
    z, W = _features_and_prototypes(model, x)
    cos = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ W.T
    margins = 0.5 * (min(counts) / np.asarray(counts, float)) ** 0.25
    shifted = 30.0 * (cos - margins[y.numpy()][:, None] * np.eye(NUM_CLASSES)[y.numpy()])
    expected = -shifted[np.arange(len(y)), y.numpy()] + np.log(np.exp(shifted).sum(axis=1))
    # LDAM keeps its margins in float32: s * m_y is exact to ~30 * 6e-8
    np.testing.assert_allclose(model.per_sample_loss(model(x), y).detach().numpy(), expected, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(ldam_margins(counts, 0.5).numpy(), margins, rtol=1e-6)
    assert _model(FNPAL, scale=1.0, loss="ldam").net.head.normalize
    with pytest.raises(ValueError, match="scale` 1 for FNPAL with the LDAM"):
        _model(FNPAL, noise_rate=0.4, loss="ldam", scale="noise_aware")


# ----------------------------------------------------------------------------------------------------
# Anchoring: no gradient, not in the optimizer, unchanged by training
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,extra", [(PAL, {"mixup_alpha": 1.0}), (FNPAL, {"noise_rate": 0.4})])
def test_prototypes_get_no_gradient_are_not_optimised_and_never_change(cls, extra, tmp_path):
    model = _model(cls, **extra)
    before = model.prototypes.clone()
    backbone_before = model.backbone.linear.weight.detach().clone()
    assert "net.head.prototypes" in model.state_dict()
    assert all("prototypes" not in name for name, _ in model.named_parameters())
    x, y = _batch(n=24)
    loader = DataLoader(TensorDataset(x.float(), y, torch.arange(24)), batch_size=8)
    grads = []

    class Spy(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads.append(pl_module.prototypes.grad)
            params = {id(p) for group in optimizer.param_groups for p in group["params"]}
            assert id(pl_module.prototypes) not in params

    L.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, callbacks=[Spy()],
              default_root_dir=tmp_path).fit(model, train_dataloaders=loader)
    assert len(grads) == 6 and all(g is None for g in grads)
    assert torch.equal(model.prototypes, before)
    assert not torch.equal(model.backbone.linear.weight, backbone_before)  # the features did train


def test_prototypes_from_a_file_and_clear_errors(tmp_path):
    path = tmp_path / "protos.pt"
    prototypes = simplex_prototypes(NUM_CLASSES, FEATURES, seed=11)
    save_prototypes(path, prototypes)
    assert torch.equal(_model(prototypes_path=str(path)).prototypes, prototypes)
    save_prototypes(tmp_path / "wrong.pt", simplex_prototypes(NUM_CLASSES, FEATURES + 1))
    with pytest.raises(ValueError, match=f"dim={FEATURES}"):
        _model(prototypes_path=str(tmp_path / "wrong.pt"))
    with pytest.raises(ValueError, match=r"<= dim \+ 1"):
        _model(num_classes=8, class_counts=None, prototypes_method="closed_form")
    with pytest.raises(ValueError, match="Expected `head` 'anchored'"):
        _model(head="linear")
    with pytest.raises(ValueError, match="no `head_args`"):
        _model(head_args={"scale": 2.0})
    with pytest.raises(ValueError, match="noise_rate"):
        _model(FNPAL)  # noise-aware scale without a noise rate
    with pytest.raises(ValueError, match=r"`noise_rate` in \[0, 1\)"):
        _model(FNPAL, noise_rate=1.2)
    with pytest.raises(ValueError, match="scale"):
        _model(FNPAL, scale=-1.0)
    with pytest.raises(ValueError, match="mixup_alpha"):
        _model(mixup_alpha=-0.5)


@pytest.mark.parametrize("cls,extra", [(PAL, {"mixup_alpha": 1.0, "loss": "ldam"}), (FNPAL, {"noise_rate": 0.4})])
def test_load_from_checkpoint_rebuilds_the_same_head(cls, extra, tmp_path):
    model = cls(num_classes=NUM_CLASSES, class_counts=[40, 20, 10, 5], input_shape=(1, 4, 4), backbone="mlp",
                backbone_args={"hidden": [8]}, prototypes_seed=4, **extra)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, max_epochs=0, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = cls.load_from_checkpoint(tmp_path / "model.ckpt")
    assert torch.equal(loaded.prototypes, model.prototypes)
    assert (loaded.net.head.normalize, loaded.net.head.scale) == (model.net.head.normalize, model.net.head.scale)


# ----------------------------------------------------------------------------------------------------
# Resume and DDP
# ----------------------------------------------------------------------------------------------------


fm_root = fashion_mnist_root(n_train=240, n_test=60)


@pytest.mark.slow
@pytest.mark.parametrize("cls,extra", [(PAL, {"mixup_alpha": 1.0}), (FNPAL, {})])
def test_resume_restores_the_prototypes_and_replays_exactly(fm_root, tmp_path, cls, extra):
    def make_data():
        return FashionMNISTDataModule(root=str(fm_root), num_workers=0, batch_size=40, seed=0, noise="symmetric",
                                      noise_rate=0.4, augment="crop")

    def make_model():
        dm = make_data()
        return cls(**data_facts(dm),
                   backbone="mlp", backbone_args={"hidden": [64, 32]}, prototypes_seed=None if cls is PAL else 3,
                   # multistep: the resumed run must replay the step change at epoch 1
                   optimizer=OptimizerConfig(lr=0.05), lr_schedule=LRSchedule(name="multistep", milestones=(1,)), **extra)

    initial = make_model().prototypes.clone()
    straight, resumed = resume_pair(make_model, make_data, tmp_path, epochs=2, stop_after=1)
    assert_same_state(straight, resumed)
    assert torch.equal(straight["state_dict"]["net.head.prototypes"], initial)
    diagnostics = [v for k, v in straight["callbacks"].items() if "PrototypeDiagnostics" in k]
    assert len(diagnostics) == 1 and diagnostics[0]["epochs"] == [0, 1]
    assert diagnostics[0]["min_angles"] == pytest.approx([math.degrees(math.acos(-1 / 9))] * 2, abs=1e-3)


@pytest.mark.ddp
@pytest.mark.parametrize("method,extra", [("PAL", {"mixup_alpha": 1.0}), ("FNPAL", {"scale": "noise_aware"})])
def test_ddp_two_processes_follow_the_one_process_trajectory_with_mixup_and_the_noise_aware_scale(fm_root, tmp_path, method, extra):
    # beyond the reliability matrix's PAL and FNPAL runs: mixup across the global batch, the noise-aware scale
    config = cli_config(
        method, fm_root,
        model={"backbone_args": {"hidden": [64, 32]}, "loss": "ce", "lr_schedule": {"name": "constant"}, **extra},
        # drop_last: a padded last batch (duplicates under DDP) would differ from the single process's
        data={"noise": "symmetric", "noise_rate": 0.4, "augment": "crop", "drop_last": True},
    )
    single = run_cli_fit(config, tmp_path / "one", devices=1, batch_size=32)
    double = run_cli_fit(config, tmp_path / "two", devices=2, batch_size=16)
    assert single["global_step"] == double["global_step"] > 0
    assert_same_weights(single, double, atol=2e-5)
    assert torch.equal(single["state_dict"]["net.head.prototypes"], double["state_dict"]["net.head.prototypes"])


# ----------------------------------------------------------------------------------------------------
# Configs: every file parses and builds, and so does every command line its header documents
# ----------------------------------------------------------------------------------------------------

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name.startswith(("pal_", "fnpal_", "mislas_")))
# A documented command line in a header: "#   LABEL:   --option value ...".
OVERRIDE_LINE = re.compile(r"^#\s+([^:]+):\s+(--.*)$")


def _variants(name: str) -> list[tuple[str, list[str]]]:
    header = (CONFIGS / name).read_text().split("\nseed_everything")[0]
    lines = [OVERRIDE_LINE.match(line) for line in header.splitlines()]
    return [("default", [])] + [(m.group(1).strip(), shlex.split(m.group(2))) for m in lines if m]


def test_every_table_has_its_configs():
    expected = {f"fnpal_{d}.yaml" for d in ("mnist", "cifar10", "cifar100", "webvision")}
    expected |= {f"pal_{d}_nsl.yaml" for d in ("mnist", "cifar10", "cifar100")}
    expected |= {"pal_cifar100_lt.yaml", "pal_cifar_lt.yaml", "pal_imagenet_lt.yaml", "pal_webvision.yaml",
                 "mislas_cifar100_lt_stage1.yaml", "mislas_cifar100_lt.yaml", "mislas_imagenet_lt_stage1.yaml",
                 "mislas_imagenet_lt.yaml", "pal_cifar100_lt_crt.yaml"}
    assert expected <= set(CONFIG_FILES)


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_and_its_documented_command_lines_parse_and_build(name):
    header = (CONFIGS / name).read_text().split("\nseed_everything")[0]
    assert re.search(r"Tables? \d", header) and "row" in header, f"{name}: the header must name its table and row"
    variants = _variants(name)
    for label, args in variants:
        config = print_config("--config", str(CONFIGS / name), *args)
        model = dict(config["model"]["init_args"])
        data = load_class(config["data"]["class_path"])(**config["data"]["init_args"])
        assert model["backbone"] in available_backbones() or model["backbone"].startswith("torchvision/")
        # ImageNet-LT reads its class count from the split files: not here
        num_classes = 1000 if isinstance(inspect.getattr_static(type(data), "num_classes"), property) else data.num_classes
        # A small backbone (no download; d >= k - 1: closed-form prototypes): the method's arguments are under test.
        model.update(backbone="mlp", backbone_args={"hidden": [num_classes]}, init_from=None, num_classes=num_classes,
                     class_counts=list(range(5, 5 + num_classes)), input_shape=(1, 4, 4), noise_rate=data.noise_rate)
        cls = load_class(config["model"]["class_path"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MiSLAS without init_from
            built = cls(**model)
        for callback in config["trainer"]["callbacks"] or []:
            load_class(callback["class_path"])(**callback.get("init_args", {}))
        if isinstance(built, FNPAL) and "webvision" not in name and not label.startswith("Norm"):  # 10 for APL losses, else noise-aware
            apl = model["loss"] in ("nce+mae", "nce+rce", "nfl+rce")
            assert built.scale == pytest.approx(10.0 if apl else 0.25 / (0.05 + data.noise_rate)), (name, label)
        if label == "CIFAR-100":  # a data class switch keeps the imbalance settings
            assert config["data"]["init_args"]["imbalance"] == "exp" and config["data"]["init_args"]["imbalance_ratio"] == 100
    if name.startswith("mislas_") and not name.endswith("_stage1.yaml"):
        stage1 = yaml.safe_load((CONFIGS / name.replace(".yaml", "_stage1.yaml")).read_text())
        stage2 = yaml.safe_load((CONFIGS / name).read_text())
        assert stage2["model"]["init_args"]["init_from"].startswith(f"runs/{stage1['trainer']['logger']['init_args']['name']}/version_0/")
        assert stage1["model"]["class_path"].endswith(".PAL") and stage1["model"]["init_args"]["mixup_alpha"] > 0
        assert stage2["data"]["init_args"]["sampling"] == "class_balanced"
