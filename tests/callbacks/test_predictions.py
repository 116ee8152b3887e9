"""The predictions file: its rows against the model's own forward pass, each sample once, where it goes,
what is skipped, and that a failed predict leaves nothing half-written."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from support.fashion import fashion_mnist_data, fashion_mnist_root
from support.image_fixtures import band_image, write_image_folder, write_jpeg
from support.methods import build_method

from lt_noise.callbacks import PredictionWriter
from lt_noise.callbacks.predictions import COLUMNS
from lt_noise.callbacks.tables import run_directory
from lt_noise.data.modules import ImageListDataModule
from lt_noise.methods import Classifier

fm_root = fashion_mnist_root(n_train=100, n_test=37)


def _trainer(tmp_path, *callbacks):
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, callbacks=list(callbacks))


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _expected(model, dataset):
    """Softmax of the model's own forward pass on every sample of ``dataset`` (eval mode), by index."""
    model.eval()
    with torch.no_grad():
        x = torch.stack([dataset[i][0] for i in range(len(dataset))])
        return model(x).softmax(dim=1).numpy()


@pytest.mark.parametrize("split", ["test", "train"])
def test_rows_are_the_models_forward_pass_one_per_sample(split, fm_root, tmp_path):
    dm = fashion_mnist_data(fm_root, noise="symmetric", noise_rate=0.3, predict_split=split)
    model = build_method(Classifier, dm, seed=0)
    writer = PredictionWriter(str(tmp_path / "out" / "p.csv"), top_k=3)
    _trainer(tmp_path, writer).predict(model, dm, return_predictions=False)
    rows = _read(tmp_path / "out" / "p.csv")
    assert list(rows[0]) == list(COLUMNS) and writer.written == tmp_path / "out" / "p.csv"
    dataset = dm.predict_dataset()
    assert [int(r["index"]) for r in rows] == list(range(len(dataset)))
    probs = _expected(model, dataset)
    for row in rows:
        i = int(row["index"])
        order = np.argsort(-probs[i], kind="stable")
        assert int(row["predicted"]) == order[0] and row["predicted_name"] == dm.class_names[order[0]]
        assert float(row["probability"]) == pytest.approx(probs[i, order[0]], rel=1e-4)
        top = [pair.rsplit(":", 1) for pair in row["top_k"].split("; ")]
        assert [name for name, _ in top] == [dm.class_names[c] for c in order[:3]]
        np.testing.assert_allclose([float(p) for _, p in top], probs[i, order[:3]], atol=1e-4)
        assert int(row["label"]) == dataset.labels[i] and row["label_name"] == dm.class_names[dataset.labels[i]]
        assert row["path"] == ""
    if split == "train":
        np.testing.assert_array_equal([int(r["label"]) for r in rows], dm.observed_targets)
    assert not list((tmp_path / "out").glob(".*tmp*")), "no temporary file left"


def test_each_index_is_written_once_whatever_the_batches_repeat(fm_root, tmp_path):
    writer = PredictionWriter(str(tmp_path / "p.csv"), top_k=2)
    module = build_method(Classifier, fashion_mnist_data(fm_root), seed=0)
    trainer = _trainer(tmp_path)
    writer.on_predict_start(trainer, module)
    probs = torch.softmax(torch.randn(4, 10), dim=1)
    for index in ([3, 1], [1, 0], [2, 3]):  # a padded sampler repeats samples: 1 and 3 come twice
        rows = torch.tensor(index)
        writer.write_on_batch_end(trainer, module, {"probs": probs[rows], "target": rows, "index": rows}, None, None, 0, 0)
    writer.on_predict_end(trainer, module)
    assert [int(r["index"]) for r in _read(tmp_path / "p.csv")] == [0, 1, 2, 3]


def test_the_default_place_is_the_run_directory_of_the_checkpoint(tmp_path):
    assert run_directory(tmp_path / "run" / "checkpoints" / "last.ckpt", None) == (tmp_path / "run").resolve()
    assert run_directory(tmp_path / "elsewhere" / "model.ckpt", None) == (tmp_path / "elsewhere").resolve()
    assert run_directory(None, tmp_path / "logs") == tmp_path / "logs"
    writer = PredictionWriter()
    trainer = _trainer(tmp_path)
    assert writer.output_path(trainer) == tmp_path / "predictions.csv"  # no checkpoint: the log directory
    # a bare file name goes beside it, a path with a folder is taken as it is
    assert PredictionWriter("train_predictions.csv").output_path(trainer) == tmp_path / "train_predictions.csv"
    assert PredictionWriter(str(tmp_path / "out" / "p.csv")).output_path(trainer) == tmp_path / "out" / "p.csv"
    assert PredictionWriter("./p.csv").output_path(trainer) == Path("./p.csv")


def test_bad_settings_and_outputs_are_errors(fm_root, tmp_path):
    with pytest.raises(ValueError, match="top_k"):
        PredictionWriter(top_k=0)
    dm = fashion_mnist_data(fm_root)
    with pytest.raises(ValueError, match="`top_k` <= num_classes=10, but got 11"):
        _trainer(tmp_path, PredictionWriter(str(tmp_path / "p.csv"), top_k=11)).predict(build_method(Classifier, dm), dm)

    class Bare(Classifier):
        def predict_step(self, batch, batch_idx):
            return self(batch[0])

    with pytest.raises(ValueError, match="'probs' or 'logits', 'target' and 'index'"):
        _trainer(tmp_path, PredictionWriter(str(tmp_path / "p.csv"))).predict(build_method(Bare, dm), dm)
    assert not (tmp_path / "p.csv").exists()


def test_a_failing_predict_leaves_no_file(fm_root, tmp_path):
    dm = fashion_mnist_data(fm_root, eval_batch_size=8)

    class FailsLate(Classifier):
        def predict_step(self, batch, batch_idx):
            if batch_idx == 2:
                raise RuntimeError("disk on fire")
            return super().predict_step(batch, batch_idx)

    output = tmp_path / "out" / "p.csv"
    output.parent.mkdir()
    with pytest.raises(RuntimeError, match="disk on fire"):
        _trainer(tmp_path, PredictionWriter(str(output))).predict(build_method(FailsLate, dm), dm)
    assert list(output.parent.iterdir()) == []


def test_new_images_get_their_paths_and_skipped_files_are_listed(tmp_path):
    write_image_folder(tmp_path / "train", [4, 4], class_names=["cat", "dog"])
    write_image_folder(tmp_path / "test", [2, 2], class_names=["cat", "dog"], seed=1)
    new = tmp_path / "new"
    rng = np.random.default_rng(0)
    for name in ("x.jpg", "y.jpg"):
        write_jpeg(new / name, band_image(0, 2, 8, rng))
    (new / "readme.md").write_text("# not an image")
    dm = ImageListDataModule(root=str(tmp_path), train="train", test="test", predict=str(new), skip_unreadable=True,
                             image_size=16, num_workers=0)
    model = build_method(Classifier, num_classes=2, input_shape=(3, 16, 16), seed=0)
    output = tmp_path / "run" / "predictions.csv"
    _trainer(tmp_path, PredictionWriter(str(output), top_k=2)).predict(model, dm, return_predictions=False)
    rows = _read(output)
    assert [r["path"] for r in rows] == [str(new / "x.jpg"), str(new / "y.jpg")]
    assert all(r["label"] == "" and r["label_name"] == "" for r in rows)
    skipped = (tmp_path / "run" / "predictions_skipped.txt").read_text().splitlines()
    assert len(skipped) == 1 and skipped[0].startswith(f"{new / 'readme.md'}\t")
