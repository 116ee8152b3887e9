import json

import lightning as L
import numpy as np
import pytest
import torch
from support.fashion import fashion_mnist_data, fashion_mnist_root
from support.methods import build_method
from support.runs import assert_same_state, resume_pair

from lt_noise.callbacks import DeferredReweighting
from lt_noise.losses import class_balanced_weights
from lt_noise.methods import Classifier, NonFiniteLossError
from lt_noise.optim import LRSchedule

fm_root = fashion_mnist_root(n_train=400, n_test=101)


_data = fashion_mnist_data


def _model(dm, **kwargs):
    return build_method(Classifier, dm, **{"backbone": "cnn4", "lr_schedule": SCHEDULE, **kwargs})


SCHEDULE = LRSchedule(name="multistep", milestones=(1,), gamma=0.5)


def _trainer(tmp_path, **kwargs):
    options = dict(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    options.update(kwargs)
    return L.Trainer(**options)


def test_training_learns_the_fixture(fm_root, tmp_path):
    L.seed_everything(0)
    dm = _data(fm_root, augment="none")
    model = _model(dm)
    _trainer(tmp_path, max_epochs=3).fit(model, dm)
    assert model.history[-1]["acc"] > 0.6, model.history
    assert [r["epoch"] for r in model.history] == [0, 1, 2]


def test_default_reduction_is_the_mean_and_class_weights_weight_it(fm_root):
    model = _model(_data(fm_root))
    losses = torch.tensor([1.0, 2.0, 4.0])
    targets = torch.tensor([0, 1, 1])
    assert model.reduce(losses, targets, torch.arange(3)) == pytest.approx(7 / 3)
    model.class_weights[1] = 3.0
    assert model.reduce(losses, targets, torch.arange(3)) == pytest.approx((1 + 3 * 2 + 3 * 4) / 7)


def test_drw_sets_class_balanced_weights_from_its_epoch(fm_root, tmp_path):
    dm = _data(fm_root, imbalance="exp", imbalance_ratio=10)
    model = _model(dm)
    seen = []

    class Spy(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append(pl_module.class_weights.clone())

    _trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=0,
             callbacks=[DeferredReweighting(start_epoch=1, beta=0.999), Spy()]).fit(model, dm)
    torch.testing.assert_close(seen[0], torch.ones(10))
    counts = np.array(dm.class_counts, dtype=np.float64)
    effective = (1 - 0.999) / (1 - 0.999**counts)
    torch.testing.assert_close(seen[1], torch.tensor(effective / effective.sum() * 10, dtype=torch.float32))
    torch.testing.assert_close(seen[1], class_balanced_weights(dm.class_counts, 0.999))


def test_a_non_finite_loss_stops_training_naming_the_step_and_the_samples(fm_root, tmp_path):
    dm = _data(fm_root)
    model = _model(dm)
    before = {k: v.clone() for k, v in model.named_parameters()}
    poisoned = torch.nn.Module()
    poisoned.forward = lambda logits, target: torch.full((len(target),), float("nan"))
    model.loss_fn = poisoned
    with pytest.raises(NonFiniteLossError, match=r"global step 0.*sample indices of the batch: \[\d+, \d+"):
        _trainer(tmp_path, max_steps=2).fit(model, dm)
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name]), f"{name} changed"
    assert all(torch.isfinite(b).all() for b in model.buffers())


def test_skip_mode_makes_no_update_from_a_bad_batch_and_goes_on(fm_root, tmp_path):
    dm = _data(fm_root)
    model = _model(dm, on_nonfinite="skip")
    real = model.loss_fn
    calls = []

    def nan_on_odd_calls(logits, target):
        calls.append(1)
        losses = real(logits, target)
        return losses * float("nan") if len(calls) % 2 else losses

    wrapper = torch.nn.Module()
    wrapper.forward = nan_on_odd_calls
    model.loss_fn = wrapper
    before = {k: v.clone() for k, v in model.named_parameters()}
    _trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(model, dm)
    assert len(calls) == 1
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name]), f"{name} changed by a skipped batch"
    _trainer(tmp_path, max_epochs=1, limit_train_batches=4, limit_val_batches=0).fit(model, dm)
    assert len(calls) == 5
    assert any(not torch.equal(v, before[k]) for k, v in model.named_parameters()), "good batches must update"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_num_classes_mismatch_between_data_and_model_is_an_error(fm_root, tmp_path):
    dm = _data(fm_root)
    model = _model(dm, num_classes=7, class_counts=None)
    with pytest.raises(ValueError, match="num_classes=7.*has 10"):
        _trainer(tmp_path, max_steps=1).fit(model, dm)


def test_results_json_has_last_best_and_test(fm_root, tmp_path):
    L.seed_everything(0)
    dm = _data(fm_root, imbalance="exp", imbalance_ratio=5)
    model = _model(dm)
    trainer = _trainer(tmp_path, max_epochs=2)
    trainer.fit(model, dm)
    trainer.test(model, dm)
    results = json.loads((tmp_path / "results.json").read_text())
    history = results["fit"]["history"]
    assert len(history) == 2 and results["fit"]["last"] == history[-1]
    assert results["fit"]["best"]["acc"] == max(r["acc"] for r in history)
    assert results["test"]["num_samples"] == 101 and len(results["test"]["per_class_acc"]) == 10
    assert results["data"]["class_counts"] == dm.class_counts and results["method"] == "Classifier"


@pytest.mark.slow
def test_resume_after_an_epoch_gives_the_uninterrupted_weights(fm_root, tmp_path):
    def make_data():
        return _data(fm_root, noise="symmetric", noise_rate=0.3, augment="crop_flip")

    def make_model():
        return _model(make_data(), backbone="cnn4")

    straight, resumed = resume_pair(make_model, make_data, tmp_path, epochs=3, stop_after=1)
    assert_same_state(straight, resumed)


def test_a_checkpoint_of_another_class_count_or_method_is_refused(fm_root, tmp_path):
    dm = _data(fm_root)
    trainer = _trainer(tmp_path, max_steps=1, enable_checkpointing=True,
                       callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    trainer.fit(_model(dm), dm)
    checkpoint = tmp_path / "last.ckpt"

    class Other(Classifier):
        pass

    with pytest.raises(ValueError, match="Other, but it was saved by Classifier"):
        _trainer(tmp_path, max_steps=2).fit(Other(**dict(_model(dm).hparams)), dm, ckpt_path=str(checkpoint))
    hundred = _model(dm, num_classes=100, class_counts=None)
    with pytest.raises(ValueError, match="num_classes=100.*num_classes=10"):
        hundred.on_load_checkpoint(torch.load(checkpoint, weights_only=False))


def test_init_from_loads_the_network_or_only_the_backbone(fm_root, tmp_path):
    dm = _data(fm_root)
    trainer = _trainer(tmp_path, max_steps=2, enable_checkpointing=True,
                       callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    source = _model(dm)
    trainer.fit(source, dm)
    checkpoint = str(tmp_path / "last.ckpt")
    whole = _model(dm, init_from=checkpoint)
    for (name, a), b in zip(source.net.state_dict().items(), whole.net.state_dict().values()):
        assert torch.equal(a, b), name
    L.seed_everything(99)
    fresh_head = _model(dm, init_from=checkpoint, init_parts="backbone")
    assert torch.equal(fresh_head.net.backbone.fc[1].weight, source.net.backbone.fc[1].weight)
    assert not torch.equal(fresh_head.net.head.weight, source.net.head.weight)
    torch.save(source.net.state_dict(), tmp_path / "net.pt")
    from_state_dict = _model(dm, init_from=str(tmp_path / "net.pt"))
    assert torch.equal(from_state_dict.net.head.bias, source.net.head.bias)
    with pytest.raises(ValueError, match="shape"):
        _model(dm, num_classes=7, class_counts=None, init_from=checkpoint)
    with pytest.raises(ValueError, match="does not match"):
        _model(dm, backbone="mlp", init_from=checkpoint)
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        _model(dm, init_from=str(tmp_path / "nowhere.ckpt"))


@pytest.mark.parametrize("freeze", ["backbone", "backbone_except_last_block"])
def test_frozen_parts_keep_their_weights_and_batch_norm_statistics(fm_root, tmp_path, freeze):
    dm = _data(fm_root)
    model = _model(dm, freeze=freeze)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=0).fit(model, dm)
    after = model.state_dict()
    trained_prefixes = ["net.head."] + (["net.backbone.fc."] if freeze == "backbone_except_last_block" else [])
    for name, value in after.items():
        if not name.startswith("net."):
            continue
        should_change = any(name.startswith(p) for p in trained_prefixes)
        assert torch.equal(value, before[name]) != should_change, f"{name}: changed={not torch.equal(value, before[name])}"


def test_class_counts_are_checked_once_at_the_entry_and_an_empty_class_is_an_error():
    options = dict(num_classes=3, input_shape=(1, 28, 28), backbone="mlp")
    with pytest.raises(ValueError, match="positive integers, but got 0 at index 2 .an empty class"):
        Classifier(class_counts=[5, 4, 0], **options)  # whatever the loss: docs/conventions.md
    with pytest.raises(ValueError, match="`class_counts` to have num_classes=3 entries, but got 2"):
        Classifier(class_counts=[5, 4], **options)
    model = Classifier(class_counts=np.array([5, 4, 3]), loss="ldam", head="cosine", **options)
    assert model.class_counts == [5, 4, 3] and all(type(c) is int for c in model.class_counts)
    assert model.loss_fn.class_counts.tolist() == [5, 4, 3] and model.val_metrics.class_counts == [5, 4, 3]


@pytest.mark.parametrize("loss, scale", [("ce", 1.0), ("ldam", 30.0)])
def test_predictions_metrics_and_records_use_the_losss_predictive_scale(fm_root, tmp_path, loss, scale):
    """LDAM trains CE(s (z - m_y e_y)) on cosine logits z: the model's probabilities are softmax(s z), not
    softmax(z) (which is nearly uniform for |z| <= 1). Reference: the network's own output, scaled by hand."""
    dm = _data(fm_root, augment="none")
    model = _model(dm, loss=loss, head="cosine" if loss == "ldam" else "linear")
    _trainer(tmp_path).fit(model, dm)
    model.eval()
    dm.setup("test")
    x, targets, index = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        expected = model.net(x).float() * scale
        out = model.predict_step((x, targets, index), 0)
    torch.testing.assert_close(out["logits"], expected)
    torch.testing.assert_close(out["probs"], torch.softmax(expected, dim=1))
    # The test metrics' ECE: |accuracy - confidence| per confidence bin, written here from its definition.
    model.test_metrics.reset()
    model.test_step((x, targets, index), 0)
    report = model.test_metrics.compute()
    probs = torch.softmax(expected, dim=1).numpy()
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == targets.numpy()
    edges = np.linspace(0, 1, 16)
    ece = sum(
        abs(correct[m].mean() - confidence[m].mean()) * m.mean()
        for lo, hi in zip(edges[:-1], edges[1:])
        if (m := (confidence > lo) & (confidence <= hi)).any()
    )
    assert report["ece"] == pytest.approx(ece, abs=1e-5)
    # The training records carry the predictive logits too (label-issue scores read their softmax).
    model.train()
    model.training_records = []
    logits = model(x)
    model.record_training_logits(logits, targets, index)
    torch.testing.assert_close(model.training_records[0].logits, logits.detach() * scale)
