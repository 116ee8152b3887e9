"""The label-issue report: the margin and the detection metrics against slow NumPy references, the area under
the margin against a loop over the records of every step, the file every fit leaves, and its figures."""

from __future__ import annotations

import csv
import math

import lightning as L
import numpy as np
import pytest
import torch
from support.fashion import fashion_mnist_data, fashion_mnist_root
from support.methods import build_method

from lt_noise.callbacks import LabelIssues
from lt_noise.callbacks.label_issues_report import (
    COLUMNS,
    assigned_margin,
    balanced_margin,
    class_thresholds,
    confident_issue_count,
    detection_metrics,
    most_suspect,
    precision_recall_at_each_rank,
    suspect_order,
)
from lt_noise.callbacks.label_issues_plots import precision_recall_figure, score_histogram_figure, suspects_grid_figure
from lt_noise.methods import Classifier, MixupClassifier

fm_root = fashion_mnist_root(n_train=200, n_test=40)


# --------------------------------------------------------------------------------------------------
# The math against references
def test_assigned_margin_is_the_label_logit_minus_the_largest_other():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7)).astype(np.float32)
    labels = rng.integers(0, 7, size=50)
    margin, other = assigned_margin(torch.from_numpy(logits).bfloat16(), torch.from_numpy(labels))
    rounded = torch.from_numpy(logits).bfloat16().float().numpy()
    for i in range(50):
        rest = [(rounded[i, j], j) for j in range(7) if j != labels[i]]
        best, best_class = max(rest)
        assert margin[i].item() == pytest.approx(rounded[i, labels[i]] - best, abs=1e-6)
        assert other[i].item() == best_class
    assert margin.dtype == torch.float32


def _auroc_by_pairs(scores, noisy):
    pos, neg = scores[noisy], scores[~noisy]
    wins = sum((p < n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _average_precision_by_thresholds(scores, noisy):
    total, previous_recall = 0.0, 0.0
    for threshold in sorted(set(scores.tolist())):
        flagged = scores <= threshold
        precision = (flagged & noisy).sum() / flagged.sum()
        recall = (flagged & noisy).sum() / noisy.sum()
        total += (recall - previous_recall) * precision
        previous_recall = recall
    return total


@pytest.mark.parametrize("ties", [False, True])
def test_detection_metrics_match_pairwise_auroc_and_thresholded_average_precision(ties):
    rng = np.random.default_rng(1)
    noisy = rng.random(120) < 0.3
    scores = rng.normal(size=120) - 1.5 * noisy
    if ties:
        scores = np.round(scores, 0)
    metrics = detection_metrics(scores, noisy)
    assert metrics["auroc"] == pytest.approx(_auroc_by_pairs(scores, noisy), abs=1e-12)
    assert metrics["average_precision"] == pytest.approx(_average_precision_by_thresholds(scores, noisy), abs=1e-12)
    k = int(noisy.sum())
    top = np.argsort(scores, kind="stable")[:k]
    assert metrics["precision_at_k"] == pytest.approx(noisy[top].mean()) and metrics["k"] == k
    precision, recall = precision_recall_at_each_rank(scores, noisy)
    assert precision[k - 1] == pytest.approx(recall[k - 1])  # at k = #noisy they are equal


def test_detection_metrics_agree_with_scikit_learn():
    metrics_module = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    noisy = rng.random(300) < 0.4
    scores = np.round(rng.normal(size=300) - noisy, 1)
    ours = detection_metrics(scores, noisy)
    assert ours["auroc"] == pytest.approx(metrics_module.roc_auc_score(noisy, -scores))
    assert ours["average_precision"] == pytest.approx(metrics_module.average_precision_score(noisy, -scores))


def test_the_balanced_margin_divides_each_class_by_its_confident_threshold():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 4, size=60)
    probs = rng.dirichlet(np.ones(5), size=60)  # class 4: nobody's label, threshold 1
    margin, suggested = balanced_margin(probs, labels)
    reference, reference_suggested = _balanced_margin_by_loop(probs, labels)
    np.testing.assert_allclose(margin, reference, rtol=1e-12)
    np.testing.assert_array_equal(suggested, reference_suggested)
    np.testing.assert_allclose(class_thresholds(probs, labels)[:4], [probs[labels == j, j].mean() for j in range(4)])
    assert class_thresholds(probs, labels)[4] == 1.0
    # Scaling a class's probabilities scales its threshold alike: the margins do not move.
    scaled = probs * np.array([1, 1, 3, 1, 1])
    np.testing.assert_allclose(balanced_margin(scaled, labels)[0], margin, rtol=1e-9)


@pytest.mark.parametrize("num_classes", [2, 5])
def test_the_confident_learning_count_matches_a_loop_and_cleanlab(num_classes):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, num_classes, size=400)
    logits = rng.normal(size=(400, num_classes)) + 2.0 * np.eye(num_classes)[labels] * (rng.random(400) > 0.3)[:, None]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    count = confident_issue_count(probs, labels)
    assert count == _confident_count_by_loop(probs, labels) and count > 0
    assert confident_issue_count(probs[labels > 0], labels[labels > 0]) >= 0  # a class without samples is fine
    mask = most_suspect(np.array([0.3, np.nan, -1.0, 0.2]), 3)
    assert mask.tolist() == [True, False, True, True]
    cleanlab_count = pytest.importorskip("cleanlab.count")  # the [bench] extra
    assert count == cleanlab_count.num_label_issues(labels, probs)


def test_never_seen_samples_rank_last_and_count_as_least_suspect():
    scores = np.array([0.5, np.nan, -1.0, 0.5])
    assert suspect_order(scores).tolist() == [2, 0, 3, 1]
    assert detection_metrics(scores, np.array([False, True, True, False]))["auroc"] == pytest.approx(0.5)
    assert math.isnan(detection_metrics(scores, np.zeros(4, dtype=bool))["auroc"])


def _reference_aum(batches, num_samples, num_classes):
    """Per epoch the mean margin of each sample's records, then the mean over the epochs it was seen in;
    the suggestion: arg-max of the per-epoch mean softmax summed over those epochs (slow loops)."""
    margin_sum = np.zeros(num_samples)
    epochs = np.zeros(num_samples)
    probs = np.zeros((num_samples, num_classes))
    for epoch_batches in batches:
        margins = {}
        softmaxes = {}
        for logits, labels, index in epoch_batches:
            for row, label, i in zip(logits, labels, index):
                others = [row[j] for j in range(num_classes) if j != label]
                margins.setdefault(int(i), []).append(row[label] - max(others))
                e = np.exp(row - row.max())
                softmaxes.setdefault(int(i), []).append(e / e.sum())
        for i, values in margins.items():
            margin_sum[i] += np.mean(values)
            epochs[i] += 1
            probs[i] += np.mean(softmaxes[i], axis=0)
    with np.errstate(invalid="ignore"):
        score = np.where(epochs > 0, margin_sum / np.maximum(epochs, 1), np.nan)
        mean_probs = probs / epochs[:, None]
    return score, np.where(epochs > 0, probs.argmax(axis=1), -1), mean_probs


def _thresholds_by_loop(probs, labels):
    return [np.mean([probs[i, j] for i in range(len(labels)) if labels[i] == j]) if (labels == j).any() else None
            for j in range(probs.shape[1])]


def _balanced_margin_by_loop(probs, labels):
    """log(p_y / t_y) - max over other classes of log(p_j / t_j), t_j the mean p_j of the samples labelled j."""
    thresholds = [1.0 if t is None else t for t in _thresholds_by_loop(probs, labels)]
    margins, suggested = [], []
    for row, label in zip(probs, labels):
        scaled = [np.log(max(row[j], np.finfo(np.float32).tiny)) - np.log(thresholds[j]) for j in range(len(row))]
        margins.append(scaled[label] - max(v for j, v in enumerate(scaled) if j != label))
        suggested.append(int(np.argmax(scaled)))
    return np.array(margins), np.array(suggested)


def _confident_count_by_loop(probs, labels):
    """The off-diagonal of the confident joint (Northcutt et al. 2021, Sec. 3.1), one sample at a time."""
    num_classes = probs.shape[1]
    thresholds = [np.inf if t is None else t for t in _thresholds_by_loop(probs, labels)]
    count = 0
    for row, label in zip(probs, labels):
        confident = [j for j in range(num_classes) if row[j] >= thresholds[j] - 1e-6]
        if not confident:
            continue
        guess = confident[0] if len(confident) == 1 else int(np.argmax(row))
        argmax_is_label = row[label] + 1e-6 >= row.max()
        count += guess != label and not argmax_is_label
    return count


@pytest.mark.parametrize("max_probability_state", [1 << 24, 0])
def test_area_under_the_margin_matches_a_loop_over_the_records(max_probability_state):
    rng = np.random.default_rng(3)
    n, k = 30, 4
    callback = LabelIssues(score="aum", max_probability_state=max_probability_state)
    callback._allocate(n, k, torch.device("cpu"))
    epochs = []
    for epoch in range(3):
        batches = []
        for _ in range(4):  # samples may repeat within an epoch (padding, sampling with replacement)
            index = rng.integers(0, n - 2, size=9)  # the last two samples are never seen
            labels = rng.integers(0, k, size=9)
            logits = rng.normal(size=(9, k)) * 3
            batches.append((logits, labels, index))
            callback.current_epoch = epoch
            callback.record(torch.from_numpy(logits).float(), torch.from_numpy(labels), torch.from_numpy(index))
        callback.close_epoch()
        epochs.append(batches)
    report = callback.report()
    score, suggested, _ = _reference_aum(epochs, n, k)
    np.testing.assert_allclose(report.score, score, rtol=1e-5, atol=1e-5)
    assert np.isnan(report.score[-2:]).all() and (report.epochs[-2:] == 0).all()
    if max_probability_state:
        np.testing.assert_array_equal(report.suggested, suggested)
    else:  # the largest other class of the last record: never the observed label
        seen = report.epochs > 0
        assert (report.suggested[seen] != report.observed[seen]).all()
    assert callback.closed_epochs == [0, 1, 2]


# --------------------------------------------------------------------------------------------------
# Every fit leaves the report
class CaptureRecords(L.Callback):
    """The records each training step hands to the callbacks, by epoch (a copy, for the reference)."""

    def __init__(self):
        self.epochs: dict[int, list] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        recorded = torch.cat([record.index for record in pl_module.training_records])
        assert sorted(recorded.tolist()) == sorted(batch[2].tolist())  # each sample of the batch once
        for logits, labels, index in pl_module.training_records:
            self.epochs.setdefault(trainer.current_epoch, []).append(
                (logits.float().numpy().astype(np.float64), labels.numpy(), index.numpy()))


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("method", [Classifier, MixupClassifier])
def test_every_fit_writes_the_report_from_the_records_of_every_step(method, fm_root, tmp_path, one_thread):
    dm = fashion_mnist_data(fm_root, noise="symmetric", noise_rate=0.4, noise_exact=True)
    options = {"mixup_alpha": 1.0} if method is MixupClassifier else {}
    model = build_method(method, dm, seed=0, **options)
    capture = CaptureRecords()
    trainer = L.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[capture])
    trainer.fit(model, dm)
    rows = _read(tmp_path / "label_issues.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert sorted(int(r["index"]) for r in rows) == list(range(dm.train_size))  # every training sample once
    assert [int(r["rank"]) for r in rows] == list(range(1, dm.train_size + 1))
    scores = np.array([float(r["score"]) for r in rows])
    assert (np.diff(scores) >= 0).all()  # most suspect first
    by_index = {int(r["index"]): r for r in rows}
    observed = dm.observed_targets
    assert all(int(by_index[i]["observed_label"]) == observed[i] for i in range(dm.train_size))
    assert by_index[0]["observed_name"] == dm.class_names[observed[0]] and by_index[0]["path"] == ""
    # The default score: the balanced margin of the mean softmax of epochs 1 and 2 (start_epoch 1); each sample
    # once per step even under mixup.
    _, _, mean_probs = _reference_aum([capture.epochs[1], capture.epochs[2]], dm.train_size, 10)
    reference, suggested = _balanced_margin_by_loop(mean_probs, observed)
    count = _confident_count_by_loop(mean_probs, observed)
    flagged = set(np.argsort(reference)[:count].tolist())
    assert 0 < count < dm.train_size
    for i in range(dm.train_size):
        assert float(by_index[i]["score"]) == pytest.approx(reference[i], rel=1e-4, abs=1e-4)
        assert int(by_index[i]["suggested_label"]) == suggested[i]
        assert int(by_index[i]["epochs"]) == 2
        assert by_index[i]["suspected"] == str(int(i in flagged))
    assert not list(tmp_path.glob("*.png"))  # no logger: the CSV only


def test_figures_beside_the_report_and_in_tensorboard_with_a_logger(fm_root, tmp_path, one_thread):
    dm = fashion_mnist_data(fm_root, noise="symmetric", noise_rate=0.4, noise_exact=True)
    logger = L.pytorch.loggers.TensorBoardLogger(tmp_path, name="run")
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0)
    trainer.fit(build_method(Classifier, dm, seed=0), dm)
    folder = tmp_path / "run" / "version_0"
    names = {p.name for p in folder.glob("label_issues*")}
    assert names == {"label_issues.csv", "label_issues_scores.png", "label_issues_precision_recall.png",
                     "label_issues_suspects.png"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder)).Reload()
    assert {"label_issues/scores", "label_issues/precision_recall", "label_issues/suspects"} <= set(events.Tags()["images"])
    assert "label_issues/auroc" in events.Tags()["scalars"]


def test_the_state_is_the_checkpoints_and_a_mismatched_dataset_is_refused(fm_root, tmp_path):
    callback = LabelIssues()
    callback._allocate(5, 3, torch.device("cpu"))
    callback.current_epoch = 1
    callback.record(torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([0]), torch.tensor([4]))
    state = callback.state_dict()
    restored = LabelIssues()
    restored.load_state_dict(state)
    assert restored.current_epoch == 1 and torch.equal(restored.pending["margin"], callback.pending["margin"])
    with pytest.raises(ValueError, match="adjust='prior'"):
        LabelIssues(adjust="prior").load_state_dict(state)
    dm = fashion_mnist_data(fm_root)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[restored])
    restored.setup = lambda *args, **kwargs: None  # keep the restored state, as after a checkpoint restore
    with pytest.raises(ValueError, match="cover 200 training samples and 10 classes, but it covers 5 and 3"):
        trainer.fit(build_method(Classifier, dm), dm)


@pytest.mark.parametrize(("kwargs", "field"), [({"start_epoch": -1}, "start_epoch"), ({"adjust": "balanced"}, "adjust"),
                                               ({"score": "loss"}, "score"),
                                               ({"filename": "a/b.csv"}, "filename"), ({"grid_size": -2}, "grid_size")])
def test_bad_settings_name_the_argument(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LabelIssues(**kwargs)


def test_prior_adjustment_is_the_margin_of_the_logits_minus_the_log_class_counts(fm_root, tmp_path, one_thread):
    dm = fashion_mnist_data(fm_root, imbalance="exp", imbalance_ratio=10)
    plain = LabelIssues(filename="plain.csv", score="aum")
    adjusted = LabelIssues(filename="adjusted.csv", score="aum", adjust="prior")
    capture = CaptureRecords()
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[plain, adjusted, capture])
    trainer.fit(build_method(Classifier, dm, seed=0), dm)
    log_prior = np.log(np.asarray(dm.class_counts, dtype=np.float64))
    shifted = [[(logits - log_prior, labels, index) for logits, labels, index in capture.epochs[1]]]
    np.testing.assert_allclose(plain.report().score, _reference_aum([capture.epochs[1]], dm.train_size, 10)[0],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(adjusted.report().score, _reference_aum(shifted, dm.train_size, 10)[0], rtol=1e-4, atol=1e-4)
    assert {p.name for p in tmp_path.glob("*.csv")} == {"plain.csv", "adjusted.csv"}


# --------------------------------------------------------------------------------------------------
# Figures (arrays in, Figure out)
def test_the_figures_draw_what_they_are_given():
    rng = np.random.default_rng(4)
    noisy = rng.random(200) < 0.3
    scores = rng.normal(size=200) - 2 * noisy
    histogram = score_histogram_figure(scores, noisy)
    assert len(histogram.axes[0].patches) > 0
    assert {t.get_text().split(" (")[0] for t in histogram.axes[0].get_legend().get_texts()} >= {"clean", "noisy"}
    precision, recall = precision_recall_at_each_rank(scores, noisy)
    curve = precision_recall_figure(precision, recall, average_precision=0.8, noisy_fraction=float(noisy.mean()),
                                    k=int(noisy.sum()))
    np.testing.assert_allclose(curve.axes[0].lines[0].get_ydata(), precision)
    images = [rng.integers(0, 255, size=(8, 8), dtype=np.uint8), rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)]
    grid = suspects_grid_figure(images, ["a", "b"], ["c", "a very long class name"], [-1.0, -0.5], noisy=[True, False])
    titles = [axis.get_title() for axis in grid.axes if axis.get_title()]
    assert titles[0].startswith("a → c") and "…" in titles[1]
    with pytest.raises(ValueError, match="one caption part per image"):
        suspects_grid_figure(images, ["a"], ["b"], [0.0])
