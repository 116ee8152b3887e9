"""SIGTERM mid-epoch leaves a resumable checkpoint, and the sweep resumes from it."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from support.fixtures import write_mnist_like

from lt_noise.sweep import Run, resume_checkpoint, status


@pytest.mark.slow
def test_sigterm_mid_epoch_leaves_a_checkpoint_that_resumes(tmp_path):
    write_mnist_like(tmp_path / "data" / "FashionMNIST" / "raw", n_train=400, n_test=50)
    run_dir = tmp_path / "run"
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 40, "accelerator": "cpu", "logger": False, "enable_progress_bar": False,
                    "default_root_dir": str(run_dir), "num_sanity_val_steps": 0},
        "model": {"class_path": "lt_noise.methods.Classifier",
                  "init_args": {"backbone": "mlp", "backbone_args": {"hidden": [32]}}},
        "data": {"class_path": "lt_noise.data.modules.FashionMNISTDataModule",
                 "init_args": {"root": str(tmp_path / "data"), "batch_size": 2, "num_workers": 0}},
        "checkpoint": {"dirpath": str(run_dir / "checkpoints"), "save_last": True},
        "test_after_fit": False,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "lt_noise.cli", "fit", "--config", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert last.exists(), process.communicate()[0][-3000:] if process.poll() is not None else "no checkpoint in time"
    time.sleep(1.0)  # well inside epoch 1 (200 steps of a tiny MLP)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    assert interrupted.exists(), output[-3000:]
    saved = torch.load(interrupted, weights_only=False)
    assert saved["global_step"] % 200 != 0, "the checkpoint must be from the middle of an epoch"

    run = Run("r", "c", 0, path, {}, run_dir)
    assert status(run) == "partial" and resume_checkpoint(run) == interrupted
    epochs = saved["epoch"] + 2  # finish the interrupted epoch and one more
    finished = subprocess.run([sys.executable, "-m", "lt_noise.cli", "fit", "--config", str(path), "--ckpt_path",
                               str(interrupted), "--trainer.max_epochs", str(epochs)],
                              capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-3000:]
    final = torch.load(last, weights_only=False)
    # no optimizer step is repeated or lost: every epoch took its 200 steps
    assert final["epoch"] == epochs - 1 and final["global_step"] == 200 * epochs
    results = json.loads((run_dir / "results.json").read_text())
    assert status(run) == "done" and [r["epoch"] for r in results["fit"]["history"]] == list(range(epochs))
