#!/usr/bin/env python
"""Save the figures a run logged to TensorBoard as PNG files (the last logged image of each tag).

    python tools/tb_figures.py runs/sweeps/fmnist_longtail/Dynamic_Loss/N-LT/seed0 --tags dynamic_loss/ \\
        --prefix docs/results/fmnist-longtail-dl-

Every diagnostics callback of lt-noise logs its figures (the papers' plots: Dynamic Loss's margins and label
corrector, ABSGD's weights, the curriculum's α and SNR, per-class accuracy, the reliability diagram) as
TensorBoard images; this writes the last one of each tag whose name starts with one of ``--tags`` to
``<prefix><tag with / as _>.png`` and prints what it wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run's log directory (holding events.out.tfevents.*)")
    parser.add_argument("--tags", nargs="*", default=[""], help="tag prefixes (default: every image tag)")
    parser.add_argument("--prefix", default="", help="output path prefix (default: the current directory)")
    args = parser.parse_args(argv)
    if not any(args.run.glob("events.out.tfevents.*")):
        raise SystemExit(f"Expected TensorBoard event files in {args.run}, but found none")
    events = EventAccumulator(str(args.run), size_guidance={IMAGES: 0})
    events.Reload()
    written = 0
    for tag in sorted(events.Tags()[IMAGES]):
        if any(tag.startswith(prefix) for prefix in args.tags):
            image = events.Images(tag)[-1]
            path = Path(f"{args.prefix}{tag.replace('/', '_')}.png")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image.encoded_image_string)
            print(f"{tag} (step {image.step}) -> {path}")
            written += 1
    if not written:
        raise SystemExit(f"Expected image tags starting with {args.tags} in {args.run}, but found {sorted(events.Tags()[IMAGES])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
