"""Default callbacks: a method names them, the callbacks layer builds them, and every fit gets them, from
the CLI and from a plain ``L.Trainer(...).fit(model, data)`` alike, unless the trainer has one of the type."""

from __future__ import annotations

import lightning as L
import pytest
from support.fashion import fashion_mnist_data, fashion_mnist_root
from support.methods import build_method

from lt_noise.callbacks import (
    AttentionalWeightFigures,
    EvaluationFigures,
    InterruptCheckpoint,
    LabelIssues,
    PrototypeDiagnostics,
    ResultsWriter,
    build_default_callbacks,
    register_default_callback,
)
from lt_noise.callbacks.defaults import DEFAULT_CALLBACKS
from lt_noise.methods import ABSGD, FNPAL, PAL, Classifier, Curriculum, DynamicLoss

fm_root = fashion_mnist_root(n_train=100, n_test=20)
BASE = {ResultsWriter, EvaluationFigures, InterruptCheckpoint, LabelIssues}


def _fit(model, root, tmp_path, callbacks=()):
    trainer = L.Trainer(accelerator="cpu", max_steps=1, limit_val_batches=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=list(callbacks))
    trainer.fit(model, fashion_mnist_data(root))
    return trainer


@pytest.mark.parametrize(("cls", "extra"), [(Classifier, set()), (PAL, {PrototypeDiagnostics}), (FNPAL, {PrototypeDiagnostics}),
                                            (ABSGD, {AttentionalWeightFigures}), (Curriculum, set()), (DynamicLoss, set())])
def test_each_method_names_its_defaults(cls, extra):
    assert {type(c) for c in build_default_callbacks(cls.DEFAULT_CALLBACKS)} == BASE | extra


def test_a_plain_trainer_fit_gets_the_defaults(fm_root, tmp_path):
    dm = fashion_mnist_data(fm_root)
    trainer = _fit(build_method(PAL, dm, noise_rate=0.0), fm_root, tmp_path)
    assert BASE | {PrototypeDiagnostics} <= {type(c) for c in trainer.callbacks}


def test_a_configured_callback_of_the_type_is_kept_with_its_settings(fm_root, tmp_path):
    dm = fashion_mnist_data(fm_root)
    mine = EvaluationFigures(every_n_epochs=7)
    trainer = _fit(build_method(Classifier, dm), fm_root, tmp_path, callbacks=[mine])
    figures = [c for c in trainer.callbacks if isinstance(c, EvaluationFigures)]
    assert figures == [mine]


def test_a_subclass_extends_the_defaults_by_a_registered_name(fm_root, tmp_path):
    class Marker(L.Callback):
        pass

    register_default_callback("_TestMarker", Marker)
    try:
        class Marked(Classifier):
            DEFAULT_CALLBACKS = Classifier.DEFAULT_CALLBACKS + ("_TestMarker",)

        trainer = _fit(build_method(Marked, fashion_mnist_data(fm_root)), fm_root, tmp_path)
        assert any(isinstance(c, Marker) for c in trainer.callbacks)
        with pytest.raises(ValueError, match="already registered"):
            register_default_callback("_TestMarker", L.Callback)
    finally:
        del DEFAULT_CALLBACKS["_TestMarker"]


def test_an_unknown_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"among \[.*'ResultsWriter'.*\], but got unknown \['ResultWriter'\]"):
        build_default_callbacks(["ResultWriter"])
