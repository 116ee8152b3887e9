"""Throughput of the ImageNet-style input pipeline: JPEG decode (PIL) + random-resized crop, flip, colour
jitter, normalisation, in dataloader worker processes.

Writes a fixture of a few thousand JPEGs (an ImageFolder tree of random-sized images, like the 256-px
releases of WebVision / Places-365) into a temporary directory, then times one pass of
``ImageListDataModule.train_dataloader()`` (and, with ``--eval``, of the resize/centre-crop evaluation
loader) for each ``--workers`` value and prints images/second in total and per worker::

    python tools/bench_data.py                     # 3000 JPEGs, workers 0 1 2, 224-px crops
    python tools/bench_data.py --images 5000 --workers 0 1 2 4 --eval

The first batch (worker start-up) is not timed. With ``num_workers=0`` the main process decodes, so its
figure is the per-process rate. This is a benchmark, not a test: figures depend on the CPU and on what
else runs on it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lt_noise.data.modules import ImageListDataModule

# Short side of the fixture images, like the "resized" (256 px) WebVision / Places-365 releases.
SHORT_SIDE = 256
# Long side drawn uniformly in this range (aspect ratios 1 to ~1.5, as in ImageNet).
LONG_SIDE = (256, 384)
JPEG_QUALITY = 90
NUM_CLASSES = 10


def write_fixture(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` JPEGs in ``folder/<class>/<i>.jpg``: smooth random images (realistic JPEG sizes)."""
    rng = np.random.default_rng(seed)
    grain = rng.integers(-12, 13, size=(LONG_SIDE[1], LONG_SIDE[1], 3)).astype(np.int16)  # reused sensor noise
    for i in range(count):
        long_side = int(rng.integers(*LONG_SIDE))
        height, width = (SHORT_SIDE, long_side) if i % 2 else (long_side, SHORT_SIDE)
        # low-frequency colour field + mild noise: compresses like a photo, not like white noise
        coarse = rng.integers(0, 256, size=(height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        offset = int(rng.integers(0, LONG_SIDE[1] - max(height, width) + 1))
        noisy = np.clip(np.asarray(image, dtype=np.int16) + grain[offset : offset + height, offset : offset + width], 0, 255)
        path = folder / f"class_{i % NUM_CLASSES}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy.astype(np.uint8)).save(path, quality=JPEG_QUALITY)


def time_loader(loader) -> tuple[float, int]:
    """(seconds, images) of one pass, from the first batch's arrival to the last one's."""
    iterator = iter(loader)
    next(iterator)  # worker start-up and the first batch are not timed
    start, images = time.perf_counter(), 0
    for batch in iterator:
        images += len(batch[1])
    return time.perf_counter() - start, images


def time_pipeline(root: Path, pipeline: str, workers: int, threads: int | None, args: argparse.Namespace) -> str:
    """One table row: images/s of one pass of the ``pipeline`` loader with ``workers`` processes."""
    default_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        dm = ImageListDataModule(
            root=str(root), train="train", test="train", num_workers=workers, batch_size=args.batch_size,
            image_size=args.image_size,
        )
        dataset = dm.train_dataset() if pipeline == "train" else dm.test_dataset()
        seconds, images = time_loader(dm.loader(dataset, train=pipeline == "train"))
    finally:
        torch.set_num_threads(default_threads)
    rate = images / seconds
    per_worker = rate / max(workers, 1)
    label = f"{workers}" if threads is None else f"{workers} ({threads} torch thread{'s' * (threads > 1)})"
    return f"| {pipeline} | {label} | {rate:.0f} | {per_worker:.0f} | {1000 / per_worker:.2f} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="number of JPEGs in the fixture")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="num_workers values to time")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224, help="crop side of the pipeline")
    parser.add_argument("--eval", action="store_true", help="also time the evaluation (resize + centre crop) loader")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_fixture(root / "train", args.images)
        size = sum(p.stat().st_size for p in (root / "train").rglob("*.jpg")) / args.images / 1024
        print(
            f"fixture: {args.images} JPEGs, short side {SHORT_SIDE}px, mean {size:.0f} KiB, "
            f"written in {time.perf_counter() - start:.1f}s; torch threads {torch.get_num_threads()}"
        )
        print("\n| pipeline | num_workers | images/s | images/s per worker | ms/image/worker |")
        print("|---|---|---|---|---|")
        for pipeline in ["train"] + (["eval"] if args.eval else []):
            for workers in args.workers:
                # Worker processes run torch with one thread; the main process runs each tensor op on all
                # cores, which on a busy machine is slower than one thread: time both for workers=0.
                for threads in [None, 1] if workers == 0 else [None]:
                    print(time_pipeline(root, pipeline, workers, threads, args), flush=True)


if __name__ == "__main__":
    main()
