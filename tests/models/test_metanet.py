"""Tests for lt_noise.models.metanet: shapes, initialisation, an explicit numpy forward, gradients, ablations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from lt_noise.models.metanet import (
    HIDDEN_DIM,
    LABEL_CORRECTOR_BIAS,
    MARGIN_BIAS,
    LabelCorrector,
    MarginGenerator,
    MetaNet,
    correct_labels,
    predicted_labels,
)

K, R = 10, 100
G0 = 1.0 / (1.0 + math.exp(-3.98))  # sigmoid(3.98) = 0.9817: the authors' initial label weight


def _batch(batch=32, num_classes=K, bins=R, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, bins, (batch,), generator=gen), torch.randint(0, num_classes, (batch,), generator=gen))


# ----------------------------------------------------------------------------------------------------
# Independent numpy forward from the parameters (architecture written from the docstring/authors' code).


def _np_mlp(params, x):
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    h = relu(x @ params["mlp.0.weight"].T + params["mlp.0.bias"])
    h = relu(h @ params["mlp.2.weight"].T + params["mlp.2.bias"])
    return h @ params["mlp.4.weight"].T + params["mlp.4.bias"]


def _np_params(module):
    return {k: v.detach().double().numpy() for k, v in module.state_dict().items()}


def _np_corrector_table(module):
    p = _np_params(module)
    logits = _np_mlp(p, p["bin_embedding.weight"])  # one-hot(r) @ E == E[r]
    table = 0.5 * (1.0 + np.tanh(0.5 * logits))  # sigmoid, overflow-free
    return np.broadcast_to(table, (module.num_bins, module.num_classes))


# ----------------------------------------------------------------------------------------------------
# Constants


def test_constants_follow_authors_code():
    assert (HIDDEN_DIM, LABEL_CORRECTOR_BIAS, MARGIN_BIAS) == (64, 3.98, 1.0)


# ----------------------------------------------------------------------------------------------------
# LabelCorrector


@pytest.mark.parametrize("classwise", [True, False])
def test_corrector_matches_numpy_forward(classwise):
    torch.manual_seed(0)
    lc = LabelCorrector(K, bins=R, classwise=classwise).double()
    # Perturb every parameter so that the comparison is not dominated by the initial bias.
    with torch.no_grad():
        for p in lc.parameters():
            p.add_(0.3 * torch.randn_like(p))
    bins, labels = _batch()
    table = _np_corrector_table(lc)
    np.testing.assert_allclose(lc.table().detach().numpy(), table, rtol=1e-12, atol=1e-12)
    expected = table[bins.numpy(), labels.numpy()]
    np.testing.assert_allclose(lc(bins, labels).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_corrector_architecture():
    lc = LabelCorrector(K, bins=R)
    assert tuple(lc.bin_embedding.weight.shape) == (R, 64)
    shapes = [tuple(lc.mlp[i].weight.shape) for i in (0, 2, 4)]
    assert shapes == [(64, 64), (64, 64), (K, 64)]
    assert isinstance(lc.mlp[1], torch.nn.ReLU) and isinstance(lc.mlp[3], torch.nn.ReLU)
    assert torch.all(lc.mlp[0].bias == 0) and torch.all(lc.mlp[2].bias == 0)
    assert torch.all(lc.mlp[4].bias == 3.98)
    assert tuple(LabelCorrector(K, bins=R, classwise=False).mlp[4].weight.shape) == (1, 64)


@pytest.mark.parametrize("seed", range(5))
def test_corrector_initial_weights_near_sigmoid_bias(seed):
    torch.manual_seed(seed)
    g = LabelCorrector(K, bins=R).table().detach()
    assert g.shape == (R, K)
    # The Xavier-normal last layer moves the logit by a few tenths at most; sigmoid is flat near 3.98,
    # so every g stays within 0.02 of sigmoid(3.98) (observed max ~0.007 over 200 seeds).
    assert torch.all((g - G0).abs() < 0.02)


def test_corrector_initial_weights_exact_with_zero_last_layer():
    lc = LabelCorrector(K, bins=R)
    with torch.no_grad():
        lc.mlp[4].weight.zero_()
    bins, labels = _batch()
    torch.testing.assert_close(lc(bins, labels), torch.full((32,), G0), rtol=0, atol=1e-7)


def test_corrector_output_shape_range_dtype():
    lc = LabelCorrector(K, bins=R)
    bins, labels = _batch(batch=17)
    g = lc(bins, labels)
    assert g.shape == (17,) and g.dtype == torch.float32
    assert torch.all((g >= 0) & (g <= 1))
    assert lc(bins[:0], labels[:0]).shape == (0,)


def test_corrector_reads_table_at_observed_class():
    torch.manual_seed(1)
    lc = LabelCorrector(K, bins=R)
    with torch.no_grad():
        for p in lc.parameters():
            p.add_(0.3 * torch.randn_like(p))
    table = lc.table()
    bins, labels = _batch(batch=64)
    torch.testing.assert_close(lc(bins, labels), torch.stack([table[r, y] for r, y in zip(bins, labels)]))


def test_class_agnostic_corrector_ignores_label():
    torch.manual_seed(2)
    lc = LabelCorrector(K, bins=R, classwise=False)
    with torch.no_grad():
        for p in lc.parameters():
            p.add_(0.3 * torch.randn_like(p))
    bins = torch.arange(R)
    first = lc(bins, torch.zeros(R, dtype=torch.long))
    for c in range(1, K):
        torch.testing.assert_close(lc(bins, torch.full((R,), c)), first)


def test_corrector_gradients_reach_every_parameter():
    lc = LabelCorrector(K, bins=R)
    bins = torch.arange(R)
    labels = torch.arange(R) % K
    lc(bins, labels).log().sum().backward()
    for name, p in lc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # Only the embedding rows of bins present in the batch receive gradient.
    lc.zero_grad()
    lc(torch.tensor([3, 3, 7]), torch.tensor([0, 1, 2])).sum().backward()
    rows = lc.bin_embedding.weight.grad.abs().sum(dim=1)
    assert set(torch.nonzero(rows).flatten().tolist()) == {3, 7}


@pytest.mark.parametrize("mode", ["mlp", "vector"])
def test_corrector_gradcheck_float64(mode):
    torch.manual_seed(3)
    lc = LabelCorrector(4, bins=5, hidden=6, mode=mode).double()
    bins, labels = torch.tensor([0, 4, 2, 2]), torch.tensor([3, 0, 1, 1])
    names = [n for n, _ in lc.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for p in lc.parameters())

    def fn(*params):
        return functional_call(lc, dict(zip(names, params)), (bins, labels))

    assert torch.autograd.gradcheck(fn, values)


def test_corrector_vector_mode():
    lc = LabelCorrector(K, bins=R, mode="vector")
    assert [n for n, _ in lc.named_parameters()] == ["logits"]
    assert lc.logits.shape == (R, K)
    torch.testing.assert_close(lc.table(), torch.full((R, K), G0))
    with torch.no_grad():
        lc.logits[5, 3] = 0.0
    assert lc(torch.tensor([5, 5]), torch.tensor([3, 2])).tolist() == pytest.approx([0.5, G0])
    agnostic = LabelCorrector(K, bins=R, mode="vector", classwise=False)
    assert agnostic.logits.shape == (R, 1) and agnostic.table().shape == (R, K)


def test_corrector_can_learn_a_table():
    # A few Adam steps on a BCE target: noisy-looking high bins of class 0 should drop below 0.5.
    torch.manual_seed(4)
    lc = LabelCorrector(3, bins=10, hidden=16)
    opt = torch.optim.Adam(lc.parameters(), lr=3e-3 * 10)
    target = torch.ones(10, 3)
    target[7:, 0] = 0.0
    for _ in range(200):
        opt.zero_grad()
        F.binary_cross_entropy(lc.table(), target).backward()
        opt.step()
    table = lc.table().detach()
    assert torch.all(table[7:, 0] < 0.5) and torch.all(table[:7, 0] > 0.5) and torch.all(table[:, 1:] > 0.5)


@pytest.mark.parametrize("bins, labels, match", [
    (torch.tensor([0, R]), torch.tensor([0, 1]), "`bins`"),
    (torch.tensor([-1, 0]), torch.tensor([0, 1]), "`bins`"),
    (torch.tensor([0, 1]), torch.tensor([0, K]), "`labels`"),
    (torch.tensor([0, 1]), torch.tensor([0]), "`labels`"),
    (torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), "`bins`"),
    (torch.tensor([[0, 1]]), torch.tensor([0, 1]), "`bins`"),
    (np.array([0, 1]), torch.tensor([0, 1]), "`bins`"),
])
def test_corrector_forward_validation(bins, labels, match):
    with pytest.raises(ValueError, match=match):
        LabelCorrector(K, bins=R)(bins, labels)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=0), "`num_classes`"),
    (dict(num_classes=K, bins=0), "`bins`"),
    (dict(num_classes=K, hidden=2.5), "`hidden`"),
    (dict(num_classes=K, mode="table"), "`mode`"),
    (dict(num_classes=K, classwise=1), "`classwise`"),
])
def test_corrector_init_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LabelCorrector(**kwargs)


# ----------------------------------------------------------------------------------------------------
# MarginGenerator


def test_margin_matches_numpy_forward():
    torch.manual_seed(5)
    mg = MarginGenerator(K).double()
    with torch.no_grad():
        for p in mg.parameters():
            p.add_(0.3 * torch.randn_like(p))
    p = _np_params(mg)
    np.testing.assert_allclose(mg().detach().numpy(), _np_mlp(p, p["input"])[0], rtol=1e-12, atol=1e-12)


def test_margin_initialisation():
    mg = MarginGenerator(K)
    assert mg().shape == (K,)
    assert tuple(mg.input.shape) == (1, 64)
    assert torch.all(mg.mlp[4].bias == 1.0)
    assert [tuple(mg.mlp[i].weight.shape) for i in (0, 2, 4)] == [(64, 64), (64, 64), (K, 64)]
    # Near the all-ones vector of eq. 5 (per-class offsets from the Xavier last layer: std ~0.1).
    torch.manual_seed(6)
    q = torch.stack([MarginGenerator(K)().detach() for _ in range(50)])
    assert abs(q.mean().item() - 1.0) < 0.05 and (q - 1).abs().max() < 1.0
    with torch.no_grad():
        mg.mlp[4].weight.zero_()
    torch.testing.assert_close(mg(), torch.ones(K))


def test_margin_gradients_and_gradcheck():
    mg = MarginGenerator(K)
    (mg() * torch.arange(K)).sum().backward()
    for name, p in mg.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    torch.manual_seed(7)
    small = MarginGenerator(3, hidden=5).double()
    names = [n for n, _ in small.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for p in small.parameters())
    assert torch.autograd.gradcheck(lambda *ps: functional_call(small, dict(zip(names, ps)), ()), values)


def test_margin_vector_mode():
    mg = MarginGenerator(K, mode="vector")
    assert [n for n, _ in mg.named_parameters()] == ["q"]
    torch.testing.assert_close(mg(), torch.ones(K))
    mg().pow(2).sum().backward()
    torch.testing.assert_close(mg.q.grad, torch.full((K,), 2.0))


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=-1), "`num_classes`"),
    (dict(num_classes=K, hidden=0), "`hidden`"),
    (dict(num_classes=K, mode="MLP"), "`mode`"),
])
def test_margin_init_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MarginGenerator(**kwargs)


# ----------------------------------------------------------------------------------------------------
# Pure functions


def test_correct_labels_formula():
    gen = torch.Generator().manual_seed(8)
    g = torch.rand(6, generator=gen, dtype=torch.float64)
    y = F.one_hot(torch.randint(0, 4, (6,), generator=gen), 4).double()
    p = torch.softmax(torch.randn(6, 4, generator=gen, dtype=torch.float64), dim=1)
    out = correct_labels(g, y, p)
    for i in range(6):
        for k in range(4):
            assert out[i, k].item() == pytest.approx(g[i].item() * y[i, k].item() + (1 - g[i].item()) * p[i, k].item())
    torch.testing.assert_close(out.sum(dim=1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(correct_labels(torch.ones(6, dtype=torch.float64), y, p), y)
    torch.testing.assert_close(correct_labels(torch.zeros(6, dtype=torch.float64), y, p), p)


def test_correct_labels_gradcheck():
    gen = torch.Generator().manual_seed(9)
    g = torch.rand(5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = F.one_hot(torch.randint(0, 3, (5,), generator=gen), 3).double()
    p = torch.rand(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: correct_labels(a, y, b), (g, p))


@pytest.mark.parametrize("g, y, p, match", [
    (torch.ones(4, 1), torch.eye(4), torch.eye(4), "`g`"),
    (torch.ones(4), torch.eye(4), torch.eye(3), "`y_pred`"),
    (torch.ones(4), torch.ones(4), torch.ones(4), "`labels_onehot`"),
])
def test_correct_labels_validation(g, y, p, match):
    with pytest.raises(ValueError, match=match):
        correct_labels(g, y, p)


def test_predicted_labels_hard_is_categorical_sample_of_softmax():
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]]).repeat(20000, 1).requires_grad_()
    gen = torch.Generator().manual_seed(10)
    sample = predicted_labels(logits, generator=gen)
    assert not sample.requires_grad and sample.shape == logits.shape
    assert torch.all(sample.sum(dim=1) == 1) and torch.all((sample == 0) | (sample == 1))
    freq = sample.mean(dim=0)
    probs = torch.softmax(logits[0].detach(), dim=0)
    sigma = (probs * (1 - probs) / 20000).sqrt()
    assert torch.all((freq - probs).abs() < 5 * sigma)
    # Reproducible with a generator.
    again = predicted_labels(logits, generator=torch.Generator().manual_seed(10))
    torch.testing.assert_close(sample, again)


def test_predicted_labels_soft_is_detached_softmax():
    logits = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    soft = predicted_labels(logits, hard=False)
    assert not soft.requires_grad and soft.dtype == torch.float64
    torch.testing.assert_close(soft, torch.softmax(logits.detach(), dim=1))
    with pytest.raises(ValueError, match="`logits`"):
        predicted_labels(torch.randn(5))


# ----------------------------------------------------------------------------------------------------
# MetaNet


def test_metanet_full_forward_matches_parts():
    torch.manual_seed(11)
    net = MetaNet(K, bins=R)
    bins, labels = _batch()
    y_pred = predicted_labels(torch.randn(32, K), generator=torch.Generator().manual_seed(0))
    targets, q = net(bins, labels, y_pred)
    g = net.corrector(bins, labels)
    torch.testing.assert_close(targets, correct_labels(g, F.one_hot(labels, K).float(), y_pred))
    torch.testing.assert_close(q, net.margin_generator())
    assert targets.shape == (32, K) and q.shape == (K,)


def test_metanet_corrector_only():
    net = MetaNet(K, bins=R, use_margin=False)
    assert net.margin_generator is None and not net.use_margin and net.use_corrector
    assert all(n.startswith("corrector.") for n, _ in net.named_parameters())
    torch.testing.assert_close(net.margin(), torch.zeros(K))
    assert "_zeros" not in net.state_dict()


def test_metanet_margin_only():
    net = MetaNet(K, bins=R, use_corrector=False)
    assert net.corrector is None and net.use_margin and not net.use_corrector
    assert all(n.startswith("margin_generator.") for n, _ in net.named_parameters())
    bins, labels = _batch()
    y_pred = torch.softmax(torch.randn(32, K), dim=1)
    torch.testing.assert_close(net.corrected_targets(bins, labels, y_pred), F.one_hot(labels, K).float())
    torch.testing.assert_close(net.label_weights(bins, labels), torch.ones(32))


def test_metanet_vector_mode_and_dtype_moves():
    net = MetaNet(K, bins=R, mode="vector").double()
    assert sorted(n for n, _ in net.named_parameters()) == ["corrector.logits", "margin_generator.q"]
    bins, labels = _batch()
    targets, q = net(bins, labels, torch.softmax(torch.randn(32, K, dtype=torch.float64), dim=1))
    assert targets.dtype == q.dtype == torch.float64
    assert MetaNet(K, use_margin=False).double().margin().dtype == torch.float64


def test_metanet_dynamic_loss_gradients_reach_both_branches():
    torch.manual_seed(12)
    net = MetaNet(K, bins=R)
    bins, labels = _batch()
    logits = torch.randn(32, K)
    y_pred = predicted_labels(logits, generator=torch.Generator().manual_seed(1))
    targets, q = net(bins, labels, y_pred)
    loss = -(targets * torch.log_softmax(logits + q, dim=1)).sum(dim=1).mean()  # eq. 2 with soft targets
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_metanet_requires_a_branch():
    with pytest.raises(ValueError, match="`use_corrector` / `use_margin`"):
        MetaNet(K, use_corrector=False, use_margin=False)
    with pytest.raises(ValueError, match="`use_margin`"):
        MetaNet(K, use_margin="yes")


def test_metanet_state_dict_roundtrip():
    torch.manual_seed(13)
    a, b = MetaNet(K, bins=R), MetaNet(K, bins=R)
    b.load_state_dict(a.state_dict())
    bins, labels = _batch()
    y_pred = torch.softmax(torch.randn(32, K), dim=1)
    for x, y in zip(a(bins, labels, y_pred), b(bins, labels, y_pred)):
        torch.testing.assert_close(x, y)
