#!/usr/bin/env python
"""Per-step cost of every method against plain cross-entropy, in one process (DESIGN.md §5).

    python tools/bench_step.py                       # CPU, ResNet-32 on 32x32, batch 128
    python tools/bench_step.py --device cuda --precision bf16-mixed --channels-last --compile
    python tools/bench_step.py --backbone cnn4 --image-shape 1 28 28 --batch 256 --steps 40

Every :class:`~lt_noise.methods.Classifier` subclass exported by :mod:`lt_noise.methods` is measured with
the same backbone, batch and data (an in-memory synthetic set), through a real Lightning Trainer: the
time from ``on_train_batch_start`` to ``on_train_batch_end`` (forward, backward, optimizer step, and
for manual-optimisation methods everything their step does), device-synchronised. Batches are loaded
in the main process (``num_workers=0``), so no loader worker competes with the step for the cores
(on a 2-core machine that alone moves a step by ±5%). Each method is measured in ``--rounds`` rounds,
each a pair of runs of ``--steps`` steps (after ``--warmup`` steps): plain CE, then the method, back to
back, so that the machine's drift (frequency, other load) hits both alike; the method's ratio is the
median over rounds of (method median / paired CE median). A method may set a class attribute ``BENCHMARK_KWARGS`` (its constructor arguments for
a representative step: e.g. ABSGD with a finite λ, Dynamic Loss after warm-up); a method with per-epoch
work outside the steps exposes it as ``epoch_overhead(datamodule)``, which is timed in every round and
compared (median) with one CE epoch.

Prints a table and exits non-zero when a budget of DESIGN.md §5 is missed.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402

import lt_noise.methods as methods  # noqa: E402
from lt_noise.data.modules import SyntheticDataModule  # noqa: E402
from lt_noise.methods import Classifier  # noqa: E402

# DESIGN.md §5: per-step cost as a multiple of a plain CE step on the same model, batch and machine.
# Dynamic Loss: 2.0x with its default last-block virtual step (3.0x is the budget of the exact
# all-parameter step, `virtual_params: all`).
STEP_BUDGETS = {"ABSGD": 1.05, "Curriculum": 1.05, "PAL": 1.05, "FNPAL": 1.05, "DynamicLoss": 2.0}
# DESIGN.md §5: Dynamic Loss's per-epoch ranking and split, as a multiple of one CE epoch.
EPOCH_OVERHEAD_BUDGETS = {"DynamicLoss": 0.4}


class StepTimer(L.Callback):
    """Wall time of each training step after ``warmup`` steps, synchronised with the device."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.times: list[float] = []
        self._start = 0.0

    @staticmethod
    def _sync(trainer: L.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(trainer)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(trainer)
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._start)


def method_classes() -> dict[str, type[Classifier]]:
    """Every Classifier (sub)class that lt_noise.methods exports, plain Classifier first."""
    found = {name: obj for name, obj in vars(methods).items() if inspect.isclass(obj) and issubclass(obj, Classifier)}
    return dict(sorted(found.items(), key=lambda item: item[0] != "Classifier"))


def measure(cls: type[Classifier], args: argparse.Namespace, datamodule: SyntheticDataModule) -> dict[str, list[float]]:
    L.seed_everything(0, verbose=False)
    kwargs = dict(
        num_classes=datamodule.num_classes,
        class_counts=datamodule.class_counts,
        input_shape=datamodule.input_shape,
        noise_rate=datamodule.noise_rate,
        backbone=args.backbone,
        channels_last=args.channels_last,
        compile=args.compile,
    )
    kwargs.update(getattr(cls, "BENCHMARK_KWARGS", {}))
    model = cls(**kwargs)
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(
        accelerator=args.device,
        devices=1,
        max_epochs=1,
        limit_train_batches=args.warmup + args.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision=args.precision,
        callbacks=[timer],
        default_root_dir=args.workdir,
    )
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, datamodule)
    result = {
        "steps": timer.times,
        "peak_mb": [torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else float("nan")],
    }
    overhead = getattr(model, "epoch_overhead", None)
    if callable(overhead):
        start = time.perf_counter()
        overhead(datamodule)
        if args.device == "cuda":
            torch.cuda.synchronize()
        result["epoch_overhead_s"] = [time.perf_counter() - start]
    return result


def summarize(samples: list[dict[str, list[float]]]) -> dict[str, float]:
    steps = [t for sample in samples for t in sample["steps"]]
    deciles = statistics.quantiles(steps, n=10)
    result = {"median": statistics.median(steps), "p10": deciles[0], "p90": deciles[-1],
              "peak_mb": max(p for sample in samples for p in sample["peak_mb"])}
    overheads = [t for sample in samples for t in sample.get("epoch_overhead_s", [])]
    if overheads:
        result["epoch_overhead_s"] = statistics.median(overheads)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backbone", default="resnet32")
    parser.add_argument("--image-shape", type=int, nargs=3, default=(3, 32, 32))
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15, help="measured steps per method and round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all methods")
    parser.add_argument("--precision", default="32-true", help="e.g. bf16-mixed on a GPU")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--methods", nargs="*", help="subset of method names (default: all)")
    parser.add_argument("--no-check", action="store_true", help="report only; exit 0 even when a budget is missed")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    args.workdir = tempfile.mkdtemp(prefix="lt-noise-bench-")  # results files of the runs go here

    datamodule = SyntheticDataModule(
        num_classes=args.num_classes,
        image_shape=tuple(args.image_shape),
        train_size=max(4 * args.batch * (args.warmup + args.steps), 2000),
        test_size=args.num_classes * 10,
        batch_size=args.batch,
        num_workers=0,
        imbalance="exp",
        imbalance_ratio=10,
        noise="symmetric",
        noise_rate=0.2,
    )
    classes = method_classes()
    names = ["Classifier"] + [n for n in classes if n != "Classifier" and (not args.methods or n in args.methods)]
    samples: dict[str, list[dict[str, list[float]]]] = {name: [] for name in names}
    paired: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names[1:]:
            reference = measure(classes["Classifier"], args, datamodule)
            sample = measure(classes[name], args, datamodule)
            samples["Classifier"].append(reference)
            samples[name].append(sample)
            paired[name].append(statistics.median(sample["steps"]) / statistics.median(reference["steps"]))
    paired["Classifier"] = [1.0]
    results = {name: summarize(samples[name]) for name in names}
    base = results["Classifier"]["median"]
    steps_per_epoch = len(datamodule.train_dataloader())

    options = f"{args.device}, {args.precision}" + (", channels_last" if args.channels_last else "") + (", compile" if args.compile else "")
    print(f"\nStep time vs plain CE ({args.backbone}, batch {args.batch}, {options}; median of "
          f"{args.rounds} x {args.steps} steps)\n")
    print("| method | ms/step (p10-p90) | ratio | budget | peak MB | ok |")
    print("|---|---|---|---|---|---|")
    missed = []
    for name, result in results.items():
        ratio = statistics.median(paired[name])
        budget = STEP_BUDGETS.get(name)
        ok = budget is None or ratio <= budget
        if not ok:
            missed.append(f"{name}: {ratio:.3f}x > {budget}x")
        print(f"| {name} | {1e3 * result['median']:.1f} ({1e3 * result['p10']:.1f}-{1e3 * result['p90']:.1f}) | "
              f"{ratio:.3f} | {budget or '-'} | {result['peak_mb']:.0f} | {'yes' if ok else 'NO'} |")
        if "epoch_overhead_s" in result:
            epoch_ratio = result["epoch_overhead_s"] / (base * steps_per_epoch)
            limit = EPOCH_OVERHEAD_BUDGETS.get(name)
            fine = limit is None or epoch_ratio <= limit
            if not fine:
                missed.append(f"{name} epoch overhead: {epoch_ratio:.3f}x > {limit}x")
            print(f"| {name}: per-epoch work | {1e3 * result['epoch_overhead_s']:.0f} ms vs CE epoch "
                  f"{1e3 * base * steps_per_epoch:.0f} ms | {epoch_ratio:.3f} | {limit or '-'} | | {'yes' if fine else 'NO'} |")
    rounds = [statistics.median(sample["steps"]) * 1e3 for sample in samples["Classifier"]]
    print(f"\nCE median per run: {min(rounds):.1f} to {max(rounds):.1f} ms over {len(rounds)} runs")
    print("Per-round ratios: " + "; ".join(f"{n} {', '.join(f'{r:.3f}' for r in paired[n])}" for n in names[1:]))
    if missed:
        print("Budgets missed: " + "; ".join(missed))
        return 0 if args.no_check else 1
    print("All budgets met.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
