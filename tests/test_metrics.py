"""lt_noise.metrics against an independent NumPy reference: per-class accuracy, many / medium / few-shot
accuracy (OLTR's thresholds on *training* counts), the expected calibration error with its bins, and the
same numbers from two DDP ranks that each saw half of the samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support.distributed import run_on_ranks

from lt_noise.metrics import (
    ECE_BINS,
    FEW_SHOT,
    MANY_SHOT,
    ClassificationMetrics,
    expected_calibration_error,
    per_class_accuracy,
    shot_accuracy,
    shot_groups,
)

NUM_CLASSES = 8
# Training counts on both sides of every threshold: > 100 is many, 20..100 medium, < 20 few.
COUNTS = [500, 101, 100, 50, 20, 19, 5, 1]


# --------------------------------------------------------------------------------------------------
# The reference: slow loops written from the definitions


def reference_report(logits: np.ndarray, targets: np.ndarray, counts: list[int], bins: int = ECE_BINS) -> dict:
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    per_class = []
    for c in range(logits.shape[1]):
        members = targets == c
        per_class.append(float((predicted[members] == c).mean()) if members.any() else math.nan)
    groups = {"many": [c > MANY_SHOT for c in counts], "medium": [FEW_SHOT <= c <= MANY_SHOT for c in counts],
              "few": [c < FEW_SHOT for c in counts]}
    report = {"acc": float((predicted == targets).mean()), "per_class_acc": per_class}
    for name, member in groups.items():
        values = [a for a, m in zip(per_class, member) if m and not math.isnan(a)]
        report[name] = sum(values) / len(values) if values else math.nan
    ece, bin_count = 0.0, [0] * bins
    for b in range(bins):
        # equal-width confidence bins [b/15, (b+1)/15), the last one closed
        upper = confidence < (b + 1) / bins if b < bins - 1 else confidence <= 1.0
        members = (confidence >= b / bins) & upper
        bin_count[b] = int(members.sum())
        if members.any():
            accuracy = (predicted[members] == targets[members]).mean()
            ece += members.sum() / len(targets) * abs(accuracy - confidence[members].mean())
    report.update(ece=ece, bin_count=bin_count)
    return report


def _case(n: int = 400, seed: int = 0, absent: tuple[int, ...] = (6,)):
    """Logits with a learnable signal (accuracies between 0 and 1), targets long-tailed, some classes absent."""
    rng = np.random.default_rng(seed)
    targets = rng.choice(NUM_CLASSES, size=n, p=np.array(COUNTS) / sum(COUNTS))
    targets = np.where(np.isin(targets, absent), 0, targets)
    logits = rng.normal(size=(n, NUM_CLASSES)) * 2.0
    logits[np.arange(n), targets] += rng.uniform(0.0, 3.0, size=n)
    return logits, targets


def _compare(report: dict, expected: dict) -> None:
    assert report["acc"] == pytest.approx(expected["acc"], abs=1e-12)
    np.testing.assert_allclose(report["per_class_acc"].numpy(), expected["per_class_acc"], rtol=0, atol=1e-12)
    for name in ("many", "medium", "few"):
        assert report[name] == pytest.approx(expected[name], abs=1e-12, nan_ok=True)
    assert report["ece"] == pytest.approx(expected["ece"], abs=1e-6)  # float32 confidences
    assert report["bin_count"].tolist() == expected["bin_count"]


# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_report_equals_the_reference(seed):
    logits, targets = _case(seed=seed)
    metrics = ClassificationMetrics(NUM_CLASSES, COUNTS)
    for chunk in np.array_split(np.arange(len(targets)), 5):  # accumulated over batches
        metrics.update(torch.from_numpy(logits[chunk]).float(), torch.from_numpy(targets[chunk]))
    report = metrics.compute()
    expected = reference_report(logits.astype(np.float32).astype(np.float64), targets, COUNTS)
    _compare(report, expected)
    assert report["num_samples"] == len(targets)
    assert math.isnan(report["per_class_acc"][6].item())  # an absent class is NaN, not 0 (torchmetrics' 0)


def test_shot_groups_use_the_oltr_thresholds_on_training_counts():
    groups = shot_groups(COUNTS)
    assert groups["many"].tolist() == [True, True, False, False, False, False, False, False]
    assert groups["medium"].tolist() == [False, False, True, True, True, False, False, False]
    assert groups["few"].tolist() == [False, False, False, False, False, True, True, True]


def test_shot_accuracy_skips_unevaluated_classes_and_is_nan_for_an_empty_group():
    per_class = torch.tensor([1.0, 0.5, math.nan, 0.25, 0.0, math.nan, math.nan, math.nan], dtype=torch.float64)
    result = shot_accuracy(per_class, COUNTS)
    assert result["many"] == pytest.approx(0.75) and result["medium"] == pytest.approx(0.125)
    assert math.isnan(result["few"])  # every few-shot class is unevaluated
    assert math.isnan(shot_accuracy(per_class, [1000] * NUM_CLASSES)["few"])  # no few-shot class at all


def test_per_class_accuracy_of_a_confusion_matrix():
    confmat = torch.tensor([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    np.testing.assert_allclose(per_class_accuracy(confmat).numpy(), [0.75, math.nan, 0.5])


def test_ece_of_bin_statistics_and_of_an_empty_evaluation():
    count, confidence, correct = torch.tensor([2, 0, 3]), torch.tensor([1.5, 0.0, 2.7]), torch.tensor([1, 0, 3])
    assert expected_calibration_error(count, confidence, correct) == pytest.approx((0.5 + 0.3) / 5)
    assert math.isnan(expected_calibration_error(torch.zeros(3), torch.zeros(3), torch.zeros(3)))


def test_a_perfectly_confident_correct_model_is_calibrated():
    targets = np.arange(40) % NUM_CLASSES
    logits = np.full((40, NUM_CLASSES), -50.0)
    logits[np.arange(40), targets] = 50.0
    metrics = ClassificationMetrics(NUM_CLASSES, COUNTS)
    metrics.update(torch.from_numpy(logits).float(), torch.from_numpy(targets))
    report = metrics.compute()
    assert report["acc"] == 1.0 and report["ece"] == pytest.approx(0.0, abs=1e-6)
    assert report["bin_count"][-1] == 40  # confidence 1 falls in the last, closed bin


def test_class_counts_are_descriptive_here_an_empty_class_is_a_few_shot_class():
    metrics = ClassificationMetrics(3, [200, 50, 0])
    assert metrics.class_counts == [200, 50, 0]
    assert shot_groups(metrics.class_counts)["few"].tolist() == [False, False, True]


@pytest.mark.parametrize(("args", "match"), [((1, None), "`num_classes`"), ((3, [5, 5]), "num_classes=3 entries"),
                                             ((3, [5, -1, 5]), "non-negative"), ((3, None, 0), "`n_bins`")])
def test_bad_settings_are_value_errors(args, match):
    with pytest.raises(ValueError, match=match):
        ClassificationMetrics(*args)


def test_bad_batches_are_value_errors():
    metrics = ClassificationMetrics(NUM_CLASSES)
    with pytest.raises(ValueError, match=r"logits of shape \(B, 8\)"):
        metrics.update(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets of shape \(4,\)"):
        metrics.update(torch.zeros(4, NUM_CLASSES), torch.zeros(5, dtype=torch.long))


# --------------------------------------------------------------------------------------------------
# DDP: each of 2 ranks updates with its interleaved shard; compute() syncs the sum states


def _ddp_metrics(rank: int, world_size: int, out: str) -> None:
    logits, targets = _case(n=301, seed=4)  # an odd count: the ranks' shards differ in size
    metrics = ClassificationMetrics(NUM_CLASSES, COUNTS)
    mine = np.arange(rank, len(targets), world_size)
    for chunk in np.array_split(mine, 3):
        metrics.update(torch.from_numpy(logits[chunk]).float(), torch.from_numpy(targets[chunk]))
    torch.save(metrics.compute(), f"{out}/rank{rank}.pt")


@pytest.mark.ddp
def test_two_ranks_report_the_numbers_of_all_samples(tmp_path):
    run_on_ranks(_ddp_metrics, str(tmp_path))
    logits, targets = _case(n=301, seed=4)
    expected = reference_report(logits.astype(np.float32).astype(np.float64), targets, COUNTS)
    for rank in range(2):
        report = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        _compare(report, expected)
        assert report["num_samples"] == 301  # every sample counted once
