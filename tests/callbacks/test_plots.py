"""The evaluation figures: the reliability diagram shows over- and under-confidence apart, without overlap."""

import numpy as np
from matplotlib.colors import to_rgba

from lt_noise.callbacks.plots import per_class_accuracy_figure, reliability_diagram_figure


def test_reliability_diagram_draws_the_signed_gap_on_top_of_the_lower_of_accuracy_and_confidence():
    confidence = [0.05, 0.15, 0.25, 0.35, 0.45] + [0.0] * 5
    accuracy = [0.0, 0.30, 0.10, 0.35, 0.40] + [0.0] * 5
    count = [0, 10, 10, 10, 10] + [0] * 5  # 10 bins; 1 under-confident, 2 and 4 over-confident, 3 calibrated
    figure = reliability_diagram_figure(confidence, accuracy, count, ece=0.1)
    axis = figure.axes[0]
    bars = {label: [] for label in ("accuracy", "over", "under")}
    for container in axis.containers:
        bars[container.get_label().split("-")[0]] = list(container)
    solid = {round(p.get_x() + p.get_width() / 2, 3): p for p in bars["accuracy"]}
    assert sorted(solid) == [0.15, 0.25, 0.35, 0.45], "nothing drawn for empty bins"
    np.testing.assert_allclose([solid[c].get_height() for c in sorted(solid)], [0.15, 0.10, 0.35, 0.40])
    (under,) = bars["under"]
    assert under.get_y() == 0.15 and np.isclose(under.get_height(), 0.15)  # from confidence up to accuracy
    assert to_rgba(under.get_edgecolor()) == to_rgba("tab:green") and under.get_hatch()
    over = sorted(bars["over"], key=lambda p: p.get_x())
    assert [(round(p.get_y(), 3), round(p.get_height(), 3)) for p in over] == [(0.10, 0.15), (0.40, 0.05)]
    assert all(to_rgba(p.get_edgecolor()) == to_rgba("tab:red") and p.get_hatch() for p in over)
    for p in bars["over"] + bars["under"]:  # a gap starts where its bin's solid bar ends: no dark overlap
        centre = round(p.get_x() + p.get_width() / 2, 3)
        assert np.isclose(p.get_y(), solid[centre].get_height())
    assert "ECE = 10.00%" in axis.get_title()


def test_per_class_accuracy_orders_classes_by_training_count():
    figure = per_class_accuracy_figure([0.9, 0.5, 0.1], [10, 100, 1], class_names=["a", "b", "c"])
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["b", "a", "c"]
