"""The shared argument and tensor checks: each failure names what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lt_noise.losses import MAE
from lt_noise.validation import (
    SEED_LIMIT,
    check_choice,
    check_class_counts,
    check_finite_values,
    check_index_tensor,
    check_int,
    check_interval,
    check_labels,
    check_logits,
    check_nonzero,
    check_per_sample,
    check_positive,
    check_positive_int,
    check_real,
    check_seed,
    check_target,
)


def test_interval_message_template():
    with pytest.raises(ValueError, match=r"^Expected argument `q` in \(0, 1\], but got 1.5$"):
        check_interval("q", 1.5, 0.0, 1.0, high_closed=True)
    assert check_interval("q", 1, 0.0, 1.0, high_closed=True) == 1.0
    with pytest.raises(ValueError, match=r"Expected argument `q` in \(0, 1\], but got 0"):
        check_interval("q", 0.0, 0.0, 1.0, high_closed=True)


@pytest.mark.parametrize("bad", [True, None, "1", [1.0], float("inf")])
def test_real_rejects_non_numbers(bad):
    with pytest.raises(ValueError, match="Expected argument `x`"):
        check_interval("x", bad)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "2"])
def test_positive_int(bad):
    with pytest.raises(ValueError, match="Expected argument `order` to be an integer >= 1"):
        check_positive_int("order", bad)
    assert check_positive_int("order", np.int64(3)) == 3


@pytest.mark.parametrize(
    "counts", [[5, 3, 1], (5, 3, 1), np.array([5, 3, 1]), torch.tensor([5, 3, 1]), np.array([5.0, 3.0, 1.0])]
)
def test_class_counts_accepts_sequences_arrays_tensors(counts):
    out = check_class_counts(counts)
    assert out.dtype == torch.int64 and out.tolist() == [5, 3, 1]


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ([5, 0, 1], r"positive integers, but got 0 at index 1"),
        ([5, -2, 1], r"positive integers, but got -2 at index 1"),
        ([5, 2.5, 1], r"to hold integers, but got 2.5 at index 1"),
        ([7], r"at least 2 classes, but got shape \(1,\)"),
        ([[1, 2], [3, 4]], r"one-dimensional .* but got shape \(2, 2\)"),
        ("abc", r"sequence of integers"),
        ([True, False], r"to hold integers, but got dtype torch.bool"),
    ],
)
def test_class_counts_errors(counts, match):
    with pytest.raises(ValueError, match=match):
        check_class_counts(counts)


def test_logits_checks():
    with pytest.raises(ValueError, match=r"Expected `logits` of shape \(B, C\) with C >= 2 classes, but got shape \(4,\)"):
        check_logits(torch.zeros(4))
    with pytest.raises(ValueError, match=r"but got shape \(4, 1\)"):
        check_logits(torch.zeros(4, 1))
    with pytest.raises(ValueError, match="floating-point tensor, but got dtype torch.int64"):
        check_logits(torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="torch.Tensor, but got ndarray"):
        check_logits(np.zeros((4, 3)))


def test_target_checks():
    logits = torch.zeros(4, 3)
    assert check_target(torch.tensor([0, 1, 2, 0]), logits) == "hard"
    assert check_target(torch.full((4, 3), 1 / 3), logits) == "soft"
    with pytest.raises(ValueError, match="dtype torch.int64, but got torch.int32"):
        check_target(torch.tensor([0, 1, 2, 0], dtype=torch.int32), logits)
    with pytest.raises(ValueError, match=r"Expected class indices in \[0, 2\], but got values in \[0, 3\]"):
        check_target(torch.tensor([0, 1, 3, 0]), logits)
    with pytest.raises(ValueError, match=r"Expected class indices in \[0, 2\], but got values in \[-1, 2\]"):
        check_target(torch.tensor([0, -1, 2, 0]), logits)
    with pytest.raises(ValueError, match=r"shape \(4,\) to match logits \(4, 3\), but got shape \(5,\)"):
        check_target(torch.zeros(5, dtype=torch.int64), logits)
    with pytest.raises(ValueError, match=r"soft `target` of shape \(4, 3\) \(like logits\), but got shape \(4, 2\)"):
        check_target(torch.full((4, 2), 0.5), logits)
    with pytest.raises(ValueError, match="rows of a soft `target` to sum to 1, but got a row off by 0.5"):
        check_target(torch.full((4, 3), 0.5), logits)
    with pytest.raises(ValueError, match="non-negative entries"):
        check_target(torch.tensor([[1.5, -0.5, 0.0]] * 4), logits)
    with pytest.raises(ValueError, match="floating point, but got torch.int64"):
        check_target(torch.zeros(4, 3, dtype=torch.int64), logits)
    with pytest.raises(ValueError, match=r"but got shape \(4, 3, 1\)"):
        check_target(torch.zeros(4, 3, 1), logits)


def test_checks_run_at_the_public_entry():
    with pytest.raises(ValueError, match=r"Expected class indices in \[0, 2\]"):
        MAE()(torch.zeros(2, 3), torch.tensor([0, 5]))


def test_empty_batch_gives_empty_losses():
    out = MAE()(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))
    assert out.shape == (0,)


def test_class_counts_policy_empty_classes_only_where_asked_and_the_class_count():
    assert check_class_counts([5, 0, 1], allow_empty=True).tolist() == [5, 0, 1]
    with pytest.raises(ValueError, match=r"non-negative integers, but got -1 at index 1"):
        check_class_counts([5, -1, 1], allow_empty=True)
    with pytest.raises(ValueError, match=r"positive integers, but got 0 at index 1 \(an empty class"):
        check_class_counts([5, 0, 1])
    with pytest.raises(ValueError, match=r"`class_counts` to have num_classes=4 entries, but got 3"):
        check_class_counts([5, 2, 1], num_classes=4)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: check_int("n", 1.0, minimum=0), r"^Expected argument `n` to be an integer >= 0, but got 1.0$"),
        (lambda: check_int("n", True), r"`n` to be an integer, but got True"),
        (lambda: check_int("n", 0, minimum=1, optional=True), r"`n` to be None or an integer >= 1, but got 0"),
        (lambda: check_choice("mode", "Scale", (None, "scale")), r"`mode` in \(None, 'scale'\), but got 'Scale'"),
        (lambda: check_seed(-1), r"`seed` to be an integer >= 0, but got -1"),
        (lambda: check_seed(2**32, below=SEED_LIMIT), r"`seed` to be an integer in \[0, 2\*\*32\), but got 4294967296"),
        (lambda: check_seed(1.5, optional=True, sequence=True), r"None or an integer >= 0 or a numpy SeedSequence"),
        (lambda: check_nonzero("lam", 0.0, allow_inf=True), r"`lam` to be a nonzero number or ±inf, but got 0.0"),
        (lambda: check_real("lam", float("nan"), allow_inf=True), r"`lam` to be a real number or ±inf, but got nan"),
        (lambda: check_positive("lr", float("inf")), r"`lr` to be a finite number > 0, but got inf"),
        (lambda: check_interval("rate", "0.2", 0.0, 1.0, low_closed=True), r"`rate` in \[0, 1\), but got '0.2'"),
        (lambda: check_labels(np.array([0, 3]), 3), r"`labels` to hold class indices in \[0, 3\), but got values in \[0, 3\]"),
        (lambda: check_labels(np.array([0.0]), 3), r"`labels` to have an integer dtype"),
        (lambda: check_finite_values([0.0, np.nan], name="losses", length=2), r"`losses` to be finite.*\[1\]"),
        (lambda: check_per_sample("losses", torch.ones(2, 2)), r"`losses` to be a 1-D tensor"),
        (lambda: check_index_tensor("bins", torch.tensor([0, 5]), 5), r"`bins` in \[0, 4\].*e.g. 5"),
    ],
)
def test_one_message_template(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_checks_return_the_checked_value():
    assert check_int("n", np.int64(3), minimum=1) == 3 and check_int("n", None, optional=True) is None
    assert check_seed(None, optional=True) is None and check_seed(np.uint32(7)) == 7
    sequence = np.random.SeedSequence(3)
    assert check_seed(sequence, sequence=True) is sequence
    assert check_real("lam", float("-inf"), allow_inf=True) == float("-inf")
    assert check_labels(torch.tensor([2, 0]), 3).dtype == np.int64
