#!/usr/bin/env python
"""How much cosine margin a ReLU feature can reach against a set of class prototypes
(:func:`lt_noise.prototypes.nonnegative_margins`): PAL's anchored simplex, Table 7's ``use_relu``
prototypes, and the head of any lt-noise checkpoint (a learned cosine or linear head's rows).

    python tools/prototype_margins.py --classes 10 --dim 128
    python tools/prototype_margins.py --classes 10 --dim 128 --checkpoint runs/.../checkpoints/last.ckpt

Prints min / mean / max over classes, and Lemma 3.1's optimum for features anywhere on the sphere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lt_noise.prototypes import generate_prototypes, nonnegative_margins  # noqa: E402


def head_rows(checkpoint: Path) -> torch.Tensor:
    """The class prototypes of a checkpoint's head: its (num_classes, dim) weight or prototypes buffer."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    rows = [value for name, value in state.items() if name.startswith("net.head.") and value.dim() == 2]
    if len(rows) != 1:
        raise SystemExit(f"Expected one 2-D tensor in the head of {checkpoint}, but got {len(rows)}")
    return rows[0].float()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dim", type=int, default=128, help="feature dimension (cnn4: 128, resnet32: 64)")
    parser.add_argument("--seed", type=int, default=0, help="the prototypes' seed (lt-noise's default: 0)")
    parser.add_argument("--checkpoint", type=Path, nargs="*", default=[])
    args = parser.parse_args(argv)
    sets = {
        "anchored simplex (PAL default)": generate_prototypes(args.classes, args.dim, seed=args.seed),
        "ReLU prototypes (prototypes_nonnegative)": generate_prototypes(args.classes, args.dim, nonnegative=True, seed=args.seed),
    }
    sets.update({f"head of {path}": head_rows(path) for path in args.checkpoint})
    print(f"Cosine margin reachable by a non-negative feature, k={args.classes}, d={args.dim} "
          f"(features anywhere on the sphere, simplex: {1 + 1 / (args.classes - 1):.3f})\n")
    print("| prototypes | min | mean | max |")
    print("|---|---|---|---|")
    for name, prototypes in sets.items():
        margins = nonnegative_margins(prototypes)
        print(f"| {name} | {margins.min():.3f} | {margins.mean():.3f} | {margins.max():.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
