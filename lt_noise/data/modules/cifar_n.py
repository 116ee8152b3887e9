"""CIFAR-10N / CIFAR-100N: real human label sets for the CIFAR training images (Wei et al., ICLR 2022).

The official release (github.com/UCSC-REAL/cifar-10-100n, ``data/``) is one ``torch.save``-d dict per
dataset, indexed like the training images of the standard "python version" pickles:

- ``CIFAR-10_human.pt``: ``clean_label``, ``aggre_label`` (majority vote, 9.03% noise),
  ``worse_label`` (worst of three, 40.21%), ``random_label1..3`` (one annotator each, ~17-18%);
- ``CIFAR-100_human.pt``: ``clean_label``, ``noisy_label`` (40.20% noise) and the 20-superclass
  ``clean_coarse_label`` / ``noisy_coarse_label``.

:func:`load_human_labels` reads one label set and checks that the file's clean labels equal the CIFAR
training labels (the same image order), failing clearly otherwise. The file is read with
``torch.load(weights_only=True)``, allowing only the NumPy array types it contains, so no code in it runs.
The CIFAR datamodules expose the label sets through ``human_labels`` / ``human_labels_file``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["HUMAN_LABEL_SETS", "HUMAN_LABEL_FILES", "SOURCE", "find_human_labels_file", "load_human_labels"]

# Option value -> (key of the observed labels, key of the clean labels they are checked against).
HUMAN_LABEL_SETS: dict[str, dict[str, tuple[str, str]]] = {
    "cifar10": {
        "aggregate": ("aggre_label", "clean_label"),
        "worst": ("worse_label", "clean_label"),
        "random1": ("random_label1", "clean_label"),
        "random2": ("random_label2", "clean_label"),
        "random3": ("random_label3", "clean_label"),
    },
    "cifar100": {
        "noisy": ("noisy_label", "clean_label"),
        "noisy_coarse": ("noisy_coarse_label", "clean_coarse_label"),
    },
}
HUMAN_LABEL_FILES = {"cifar10": "CIFAR-10_human.pt", "cifar100": "CIFAR-100_human.pt"}
SOURCE = "download data/{name} from https://github.com/UCSC-REAL/cifar-10-100n (http://noisylabels.com)"


def _numpy_safe_globals() -> list:
    """The globals a pickled dict of NumPy integer arrays needs, under both NumPy 1 and 2 module names."""
    reconstruct = np._core.multiarray._reconstruct  # type: ignore[attr-defined]
    codes = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
    dtype_classes = [type(np.dtype(code)) for code in codes]
    return [
        np.ndarray,
        np.dtype,
        reconstruct,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        *dtype_classes,
    ]


def find_human_labels_file(
    root: Path, dataset: str, explicit: str | None, batches_folder: str
) -> tuple[Path | None, list[Path]]:
    """(the label file or None, the candidates searched): ``explicit`` (as given, then under ``root``), or
    ``<root>/<file>``, ``<root>/CIFAR-N/<file>``, ``<root>/<batches folder>/<file>``, ``<root>/cifar-10-100n/data/<file>``."""
    name = HUMAN_LABEL_FILES[dataset]
    if explicit is not None:
        given = Path(explicit).expanduser()
        candidates = [given] if given.is_absolute() else [given, root / given]
    else:
        candidates = [
            root / name, root / "CIFAR-N" / name, root / batches_folder / name, root / "cifar-10-100n" / "data" / name
        ]
    found = next((path for path in candidates if path.is_file()), None)
    return found, candidates


def load_human_labels(path: Path, dataset: str, label_set: str, clean_reference: np.ndarray) -> np.ndarray:
    """The ``label_set`` labels of every training image, after checking the file against ``clean_reference``.

    Raises ValueError naming the file when it cannot be read safely, lacks the keys, has the wrong
    length, or when its clean labels differ from ``clean_reference`` (the CIFAR training labels).
    """
    sets = HUMAN_LABEL_SETS[dataset]
    if label_set not in sets:
        raise ValueError(f"Expected a {dataset} human label set in {tuple(sets)}, but got {label_set!r}")
    noisy_key, clean_key = sets[label_set]
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise ValueError(f"Could not read the CIFAR-N label file {path}: {type(error).__name__}: {error}") from error
    if not isinstance(data, dict) or noisy_key not in data or clean_key not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"Expected keys {noisy_key!r} and {clean_key!r} in {path}, but got {keys}")
    noisy = np.asarray(data[noisy_key], dtype=np.int64).reshape(-1)
    clean = np.asarray(data[clean_key], dtype=np.int64).reshape(-1)
    reference = np.asarray(clean_reference, dtype=np.int64)
    if len(noisy) != len(reference) or len(clean) != len(reference):
        raise ValueError(
            f"Expected {len(reference)} labels (one per CIFAR training image) in {path}, but got "
            f"{len(noisy)} {noisy_key!r} and {len(clean)} {clean_key!r}"
        )
    mismatched = np.flatnonzero(clean != reference)
    if len(mismatched):
        raise ValueError(
            f"Expected the {clean_key!r} of {path} to equal the CIFAR training labels, but they differ at "
            f"{len(mismatched)} images (first: index {mismatched[0]}); the file does not belong to these "
            "training images or orders them differently"
        )
    return noisy
