"""The command line as a person meets it: short errors that name the config key (and their exit codes),
``lt-noise predict`` writing predictions.csv into the run, and ``lt-noise label_issues`` from a checkpoint."""

from __future__ import annotations

import csv
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from support.cli import cli_config
from support.fixtures import write_mnist_like

from lt_noise.cli import main
from lt_noise.cli_errors import DEBUG_ENV, condense_parse_error
from lt_noise.data.modules import FashionMNISTDataModule

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fm_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm")
    write_mnist_like(root / "FashionMNIST" / "raw", n_train=120, n_test=30)
    return root


@pytest.fixture
def config(fm_root, tmp_path):
    """A tiny fit config on the fixture, as a YAML file; the run writes into tmp_path/run."""
    data = {"noise": "symmetric", "noise_rate": 0.4, "noise_exact": True, "batch_size": 32}
    run = tmp_path / "run"
    content = cli_config("Classifier", fm_root, data=data, max_epochs=2)
    content["trainer"].update(logger=False, default_root_dir=str(run), enable_progress_bar=False,
                              enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    content["checkpoint"] = {"dirpath": str(run / "checkpoints")}
    content["test_after_fit"] = False
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def _error(capsys, *args):
    """(exit code, stderr lines) of ``lt-noise ARGS`` that is expected to fail."""
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return stop.value.code, lines


# --------------------------------------------------------------------------------------------------
# Errors: one short message naming the key, a non-zero exit, the traceback behind a switch
@pytest.mark.parametrize(("args", "expected"), [
    (("--data.init_args.noise_rate", "1.2"), r"`data.init_args.noise_rate`: Expected argument `noise_rate` in \[0, 1\), but got 1.2"),
    (("--model.init_args.loss", "focall"), r"`model.init_args.loss`: Expected a registered loss name, .*'focal'.*but got 'focall'"),
    (("--model.init_args.backbone", "resnet99"), r"`model.init_args.backbone`: Expected a backbone in .*'resnet32'.*but got 'resnet99'"),
    (("--model.class_path", "Clasifier"), r"`model.class_path`: no class named 'Clasifier'; did you mean `Classifier`"),
    (("--data.init_args.nosie_rate", "0.3"), r"`data.init_args.nosie_rate`: FashionMNISTDataModule has no option `nosie_rate`; did you mean `noise_rate`"),
    (("--trainer.max_epochs", "many"), r"`trainer.max_epochs`: Expected a value of type int, but got 'many'"),
    (("--data.class_path", "CIFAR10DataModule", "--data.init_args.root", "/no/such/dir"),
     r"`data.init_args.root`: CIFAR10 not found or unreadable.\nMissing file: /no/such/dir/cifar-10-batches-py"),
])
def test_a_config_mistake_is_one_message_naming_the_key(args, expected, config, capsys):
    code, lines = _error(capsys, "fit", "--config", str(config), *args)
    message = "\n".join(line for line in lines if not line.startswith("Seed set"))
    assert code == 2
    assert message.startswith("lt-noise fit: error: ")
    assert len(lines) <= 9 and "Traceback" not in message, message  # (the missing dataset lists its layout)
    assert re.search(expected, message), message
    assert lines[-1].startswith("(full details: set LT_NOISE_DEBUG=1 or add --debug)")


def test_a_user_error_while_running_exits_1_and_a_missing_checkpoint_is_named(config, tmp_path, capsys):
    code, lines = _error(capsys, "test", "--config", str(config), "--ckpt_path", str(tmp_path / "nope.ckpt"))
    assert code == 1 and any("nope.ckpt" in line for line in lines), lines


def test_the_debug_switch_shows_the_whole_report(config, capsys, monkeypatch):
    with pytest.raises(ValueError, match="noise_rate"):  # the exception itself, with its traceback
        main(["fit", "--config", str(config), "--data.init_args.noise_rate", "1.2", "--debug"])
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--data.init_args.nosie_rate", "0.3"])
    assert "usage:" in capsys.readouterr().err  # jsonargparse's own report


def test_the_issue_example_at_the_console(tmp_path):
    """`lt-noise fit --config configs/quickstart.yaml --data.init_args.noise_rate 1.2`, as a person types it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop(DEBUG_ENV, None)
    result = subprocess.run([sys.executable, "-m", "lt_noise.cli", "fit", "--config", str(ROOT / "configs" / "quickstart.yaml"),
                             "--data.init_args.noise_rate", "1.2"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line and "warn(" not in line]
    assert result.returncode == 2
    assert lines[-2:] == ["lt-noise fit: error: `data.init_args.noise_rate`: Expected argument `noise_rate` in [0, 1), but got 1.2",
                          "(full details: set LT_NOISE_DEBUG=1 or add --debug)"], result.stderr


def test_condensed_parse_errors_keep_what_matters():
    message = ('Parser key "model":\n  Does not validate against any of the Union subtypes\n  Subtypes: [...]\n  Errors:\n'
               "    - Problem with given class_path 'lt_noise.methods.Classifier':\n        Parser key \"optimizer.lr\":\n"
               "          Expected a <class 'float'>. Got value: abc\n    - Expected a <class 'NoneType'>\n"
               "  Given value type: <class 'jsonargparse._util.NestedArg'>\n  Given value: NestedArg(key='optimizer.lr', val='abc')")
    assert condense_parse_error(message) == "`model.init_args.optimizer.lr`: Expected a value of type float, but got 'abc'"
    assert condense_parse_error("unrecognized arguments: --foo 1") == "`foo`: unrecognised option"


# --------------------------------------------------------------------------------------------------
# predict and label_issues on a finished run
def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_fit_then_predict_then_label_issues_from_the_checkpoint(config, fm_root, tmp_path, capsys, caplog, one_thread):
    caplog.set_level(logging.INFO)
    run = tmp_path / "run"
    main(["fit", "--config", str(config)])
    saved, ckpt = run / "config.yaml", run / "checkpoints" / "last.ckpt"
    fitted = _rows(run / "label_issues.csv")
    data = FashionMNISTDataModule(root=str(fm_root), noise="symmetric", noise_rate=0.4, noise_exact=True)
    assert len(fitted) == data.train_size

    main(["predict", "--config", str(saved), "--ckpt_path", str(ckpt), "--predictions.top_k", "2"])
    predictions = _rows(run / "predictions.csv")
    assert [int(r["index"]) for r in predictions] == list(range(30))  # one row per test image
    assert all(len(r["top_k"].split("; ")) == 2 for r in predictions)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "label_issues.csv", "predictions.csv",
                                                     "results.json"], "predict opened no new log directory"

    # From the saved training dynamics: the same report as the one fit wrote, plus its figures.
    (run / "label_issues.csv").rename(run / "fit_label_issues.csv")
    caplog.clear()
    main(["label_issues", "--config", str(saved), "--ckpt_path", str(ckpt)])
    assert "from the training dynamics saved in the checkpoint" in caplog.text
    assert (run / "label_issues.csv").read_text() == (run / "fit_label_issues.csv").read_text()
    assert (run / "label_issues_suspects.png").is_file() and (run / "label_issues_scores.png").is_file()

    # A checkpoint without them: one pass of its model over the training set, into --output.
    checkpoint = torch.load(ckpt, weights_only=False)
    checkpoint["callbacks"] = {k: v for k, v in checkpoint["callbacks"].items() if not k.startswith("LabelIssues")}
    bare = tmp_path / "bare.ckpt"
    torch.save(checkpoint, bare)
    main(["label_issues", "--config", str(saved), "--ckpt_path", str(bare), "--output", str(tmp_path / "final.csv")])
    assert "one pass of its model over the training set" in caplog.text
    final = _rows(tmp_path / "final.csv")
    assert sorted(int(r["index"]) for r in final) == list(range(data.train_size))
    assert {r["epochs"] for r in final} == {"1"}
    assert not (run / "predictions_skipped.txt").exists() and len(_rows(run / "predictions.csv")) == 30

    # README: the training split with a bare output name, which lands in the run's directory too.
    main(["predict", "--config", str(saved), "--ckpt_path", str(ckpt), "--data.init_args.predict_split", "train",
          "--predictions.top_k", "3", "--predictions.output", "train_predictions.csv"])
    train_rows = _rows(run / "train_predictions.csv")
    assert len(train_rows) == data.train_size and all(len(r["top_k"].split("; ")) == 3 for r in train_rows)

    code, lines = _error(capsys, "label_issues", "--config", str(saved))
    assert code == 2 and "`ckpt_path`" in lines[0]


@pytest.mark.ddp
def test_under_ddp_every_sample_is_in_each_file_exactly_once(fm_root, tmp_path):
    from support.runs import run_cli_fit

    config = cli_config("Classifier", fm_root, data={"noise": "symmetric", "noise_rate": 0.4}, max_epochs=2)
    run = tmp_path / "run"
    run_cli_fit(config, run, devices=2, batch_size=16)  # 120 training samples: 4 steps of 2 x 16, the last padded
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "lt_noise.cli", "predict", "--config", str(run / "config.yaml"), "--ckpt_path",
         str(run / "checkpoints" / "last.ckpt"), "--trainer.devices", "2", "--trainer.strategy", "ddp",
         "--data.init_args.eval_batch_size", "4"],
        cwd=run, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    predictions = _rows(run / "predictions.csv")
    assert sorted(int(r["index"]) for r in predictions) == list(range(30))
    issues = _rows(run / "label_issues.csv")
    assert sorted(int(r["index"]) for r in issues) == list(range(120))
    assert {r["epochs"] for r in issues} == {"1"}  # epoch 1 only: each sample counted once, padding or not
    assert np.isfinite([float(r["score"]) for r in issues]).all()


def test_predict_on_a_folder_of_new_images_writes_one_row_per_image(tmp_path):
    from support.image_fixtures import band_image, write_image_folder, write_jpeg

    write_image_folder(tmp_path / "train", [4, 4], class_names=["cat", "dog"])
    write_image_folder(tmp_path / "test", [2, 2], class_names=["cat", "dog"], seed=1)
    rng = np.random.default_rng(0)
    for name in ("one.jpg", "two.jpg", "more/three.jpg"):
        write_jpeg(tmp_path / "new" / name, band_image(1, 2, 8, rng))
    config = {
        "seed_everything": 0,
        "trainer": {"logger": False, "default_root_dir": str(tmp_path / "logs"), "enable_progress_bar": False,
                    "accelerator": "cpu"},
        "model": {"class_path": "lt_noise.methods.Classifier", "init_args": {"backbone": "mlp", "backbone_args": {"hidden": [8]}}},
        "data": {"class_path": "lt_noise.data.modules.ImageListDataModule",
                 "init_args": {"root": str(tmp_path), "train": "train", "test": "test", "image_size": 16, "num_workers": 0}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["predict", "--config", str(path), "--data.init_args.predict", "new", "--predictions.top_k", "2"])
    rows = _rows(tmp_path / "logs" / "predictions.csv")  # no checkpoint: the trainer's log directory
    assert [r["path"] for r in rows] == [str(tmp_path / "new" / p) for p in ("more/three.jpg", "one.jpg", "two.jpg")]
    assert {r["predicted_name"] for r in rows} <= {"cat", "dog"} and all(r["label"] == "" for r in rows)
