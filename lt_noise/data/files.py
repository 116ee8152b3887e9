"""Compact lists of image files: paths kept in one byte buffer, images decoded with PIL on access.

A list of 2.4 million paths (WebVision) held as Python strings costs some 200 MB of objects, and every
dataloader worker that reads them touches their reference counts, which turns the fork's shared
copy-on-write pages into private copies, one per worker. Here a list is a :class:`PathTable`: one
``uint8`` buffer (usually the list file's own bytes) plus ``int64`` start/end offsets. Workers share it
read-only; a path becomes a Python string only for the moment its image is opened, inside the worker.

- :func:`read_path_list` parses a ``"<path> <label>"`` (or path-only) text file with vectorised NumPy
  operations, never creating a Python object per line; a malformed line is a ``ValueError`` naming the
  file and the line number.
- :class:`PathTable` holds the paths; :meth:`PathTable.fixed_width` turns them into a NumPy ``S`` array
  for sorting and joining (Clothing1M's key -> label files).
- :class:`ImageFiles` is the ``images`` sequence of a :class:`~lt_noise.data.modules.base.Split`: item
  ``i`` is the decoded RGB image (an (H, W, 3) uint8 array) of path ``i`` under ``root``. A missing,
  truncated or undecodable image raises :class:`ImageReadError` naming the file and the dataset's
  expected layout; the exception survives the trip from a worker process to the main process (it takes
  a single message argument).
  Datamodules call :meth:`ImageFiles.first_missing` on a few files at load time, so that a dataset whose
  images were never extracted fails in ``setup`` with a ``DatasetNotFoundError``, not in the first batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["ImageFiles", "ImageReadError", "PathTable", "decode_all", "image_problem", "join_labels", "read_path_list"]

# Byte values treated as whitespace around paths and labels: tab, LF, VT, FF, CR, space.
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True
# Separators between the path and the label: the last run of spaces/tabs on a line (paths may contain
# spaces; labels may not).
_SEPARATOR = np.zeros(256, dtype=bool)
_SEPARATOR[[ord(" "), ord("\t")]] = True
# FNV-1a 64-bit constants: a cheap vectorisable hash of fixed-width keys for joining (collisions are
# checked by comparing the keys themselves).
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_UTF8_BOM = b"\xef\xbb\xbf"
# Longest decimal label accepted: 18 digits always fit in int64.
_MAX_LABEL_DIGITS = 18
# Bytes gathered per chunk when copying many slices at once (bounds the temporary index arrays).
_GATHER_CHUNK_BYTES = 1 << 22
# Below this kept fraction of the buffer, :meth:`PathTable.take` copies the kept paths into a new,
# smaller buffer instead of keeping the whole file alive (mini-WebVision keeps ~3% of 2.4M lines).
_COMPACT_BELOW = 0.5


# Side of the reduced JPEG decode that :func:`image_problem` asks PIL for (``Image.draft``): the whole file
# is read and its entropy-coded data decoded, at a fraction of a full decode's cost.
_CHECK_DRAFT_SIZE = (64, 64)


def image_problem(path: Path | str) -> str | None:
    """Why the file at ``path`` is not a readable image (a short reason), or None if it decodes.

    The file is opened and decoded by PIL (JPEGs at reduced size, which still reads every byte), so a
    non-image file, an unknown format and a truncated image are all found.
    """
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", _CHECK_DRAFT_SIZE)
            image.load()
    except FileNotFoundError:
        return "the file does not exist"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return f"{type(error).__name__}: {error}"
    return None


class ImageReadError(FileNotFoundError):
    """An image file is missing, truncated or undecodable; the message names it and the expected layout.

    It takes the finished message as its only argument, so that PyTorch's dataloader re-raises it with
    the same type in the main process.
    """


def _gather_rows(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """A zero-padded ``(n, width)`` uint8 matrix whose row i holds ``buffer[starts[i]:starts[i]+lengths[i]]``."""
    out = np.zeros((len(starts), width), dtype=np.uint8)
    if len(starts) == 0 or width == 0:
        return out
    cols = np.arange(width)
    rows_per_chunk = max(1, _GATHER_CHUNK_BYTES // width)
    last = len(buffer) - 1
    for lo in range(0, len(starts), rows_per_chunk):
        hi = lo + rows_per_chunk
        index = starts[lo:hi, None] + cols
        mask = cols < lengths[lo:hi, None]
        block = buffer[np.minimum(index, last)]
        block[~mask] = 0
        out[lo:hi] = block
    return out


def _concatenate(buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copy the slices ``buffer[starts[i]:ends[i]]`` back to back; returns (new buffer, new offsets)."""
    lengths = ends - starts
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    lo = 0
    while lo < len(starts):
        # as many slices as fit in one chunk of output bytes (at least one)
        hi = max(lo + 1, int(np.searchsorted(offsets, offsets[lo] + _GATHER_CHUNK_BYTES, side="right")) - 1)
        hi = min(hi, len(starts))
        count = lengths[lo:hi]
        index = np.repeat(starts[lo:hi] - offsets[lo:hi], count) + np.arange(offsets[lo], offsets[hi])
        out[offsets[lo] : offsets[hi]] = buffer[index]
        lo = hi
    return out, offsets


@dataclass(frozen=True, eq=False)
class PathTable:
    """Paths ``buffer[starts[i]:ends[i]]`` (file-system encoded bytes); ``table[i]`` decodes path i."""

    buffer: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def __post_init__(self) -> None:
        if self.buffer.dtype != np.uint8 or self.buffer.ndim != 1:
            raise ValueError(f"Expected a 1-D uint8 buffer, but got {self.buffer.dtype} of shape {self.buffer.shape}")
        if self.starts.shape != self.ends.shape or self.starts.ndim != 1:
            raise ValueError(f"Expected 1-D starts and ends of equal length, but got {self.starts.shape}, {self.ends.shape}")

    @classmethod
    def from_strings(cls, paths: Iterable[str]) -> PathTable:
        encoded = [os.fsencode(p) for p in paths]
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        ends = np.cumsum(lengths)
        buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return cls(buffer, ends - lengths, ends)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> str:
        return os.fsdecode(self.buffer[self.starts[index] : self.ends[index]].tobytes())

    def take(self, indices: np.ndarray) -> PathTable:
        """The paths at ``indices``; copied into a smaller buffer when only a small part is kept."""
        indices = np.asarray(indices, dtype=np.int64)
        starts, ends = self.starts[indices], self.ends[indices]
        if int((ends - starts).sum()) < _COMPACT_BELOW * len(self.buffer):
            buffer, offsets = _concatenate(self.buffer, starts, ends)
            return PathTable(buffer, offsets[:-1], offsets[1:])
        return PathTable(self.buffer, starts, ends)

    def startswith(self, prefix: str) -> np.ndarray:
        """Boolean mask: which paths begin with ``prefix``."""
        raw = np.frombuffer(os.fsencode(prefix), dtype=np.uint8)
        lengths = self.ends - self.starts
        head = _gather_rows(self.buffer, self.starts, np.minimum(lengths, len(raw)), len(raw))
        return (lengths >= len(raw)) & (head == raw).all(axis=1)

    def strip_prefix(self, prefix: str) -> PathTable:
        """The same paths without ``prefix`` (which every path must start with)."""
        if not self.startswith(prefix).all():
            raise ValueError(f"Expected every path to start with {prefix!r}")
        shift = len(os.fsencode(prefix))
        return PathTable(self.buffer, self.starts + shift, self.ends)

    def without_leading_slash(self) -> PathTable:
        """The same paths with one leading ``/`` removed (lists that write root-relative paths as ``/a/b.jpg``)."""
        if len(self.buffer) == 0:
            return self
        lead = (self.ends > self.starts) & (self.buffer[np.minimum(self.starts, len(self.buffer) - 1)] == ord("/"))
        return PathTable(self.buffer, self.starts + lead, self.ends)

    def fixed_width(self) -> np.ndarray:
        """The paths as a NumPy ``S<width>`` array (for sorting and joining; trailing NULs are dropped)."""
        lengths = self.ends - self.starts
        width = max(1, int(lengths.max()) if len(lengths) else 1)
        return _gather_rows(self.buffer, self.starts, lengths, width).view(f"S{width}").ravel()


# --------------------------------------------------------------------------------------------------
# Parsing list files
def _strip(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move ``starts`` forward and ``ends`` back over whitespace (a few vectorised passes)."""
    starts, ends = starts.copy(), ends.copy()
    if len(arr) == 0:
        return starts, ends
    last = len(arr) - 1
    while True:
        step = (ends > starts) & _WHITESPACE[arr[np.clip(ends - 1, 0, last)]]
        if not step.any():
            break
        ends -= step
    while True:
        step = (ends > starts) & _WHITESPACE[arr[np.clip(starts, 0, last)]]
        if not step.any():
            break
        starts += step
    return starts, ends


def _lines(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bytes as uint8, start, end, 1-based line number) of every non-blank line, whitespace-stripped."""
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == ord("\n"))
    starts = np.concatenate(([0], newlines + 1)).astype(np.int64)
    ends = np.concatenate((newlines, [len(arr)])).astype(np.int64)
    if data.startswith(_UTF8_BOM):
        starts[0] += len(_UTF8_BOM)
    starts, ends = _strip(arr, starts, ends)
    keep = np.flatnonzero(ends > starts)
    return arr, starts[keep], ends[keep], keep + 1


def _parse_ints(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Decimal integers in ``arr[starts[i]:ends[i]]``; returns (values, index of the first bad one or None)."""
    values = np.zeros(len(starts), dtype=np.int64)
    lengths = ends - starts
    rows_per_chunk = 1 << 20
    for lo in range(0, len(starts), rows_per_chunk):
        s, n = starts[lo : lo + rows_per_chunk], lengths[lo : lo + rows_per_chunk]
        bad = (n < 1) | (n > _MAX_LABEL_DIGITS)
        width = int(np.clip(n, 0, _MAX_LABEL_DIGITS).max()) if len(n) else 0
        digits = _gather_rows(arr, s, np.clip(n, 0, _MAX_LABEL_DIGITS), width).astype(np.int64) - ord("0")
        inside = np.arange(width) < n[:, None]
        bad |= (inside & ((digits < 0) | (digits > 9))).any(axis=1)
        if bad.any():
            return values, lo + int(np.flatnonzero(bad)[0])
        place = np.clip(n[:, None] - 1 - np.arange(width), 0, None)
        values[lo : lo + len(s)] = np.where(inside, digits * (10**place), 0).sum(axis=1)
    return values, None


def read_path_list(path: Path | str, *, labels: bool = True) -> tuple[PathTable, np.ndarray | None]:
    """Read a list file of ``"<path> <label>"`` lines (or bare ``"<path>"`` lines with ``labels=False``).

    The label is the last whitespace-separated field (a non-negative decimal integer), so paths may
    contain spaces; blank lines, surrounding whitespace and Windows line ends are ignored. Raises
    ``OSError`` if the file cannot be read and ``ValueError`` naming the file and line number for a
    malformed line (a truncated last line, a missing or non-numeric label).
    """
    path = Path(path)
    arr, starts, ends, line_numbers = _lines(path.read_bytes())
    if not labels:
        return PathTable(arr, starts, ends), None
    blanks = np.flatnonzero(_SEPARATOR[arr])
    last_blank = np.searchsorted(blanks, ends) - 1
    separator = np.where(last_blank >= 0, blanks[np.maximum(last_blank, 0)], -1)
    if len(starts) and (missing := np.flatnonzero(separator < starts)).size:
        i = int(missing[0])
        raise ValueError(
            f"Expected '<path> <label>' on line {line_numbers[i]} of {path}, but got "
            f"{_excerpt(arr, starts[i], ends[i])!r} (truncated or malformed list file?)"
        )
    path_starts, path_ends = _strip(arr, starts, separator)
    values, bad = _parse_ints(arr, separator + 1, ends)
    if bad is not None:
        raise ValueError(
            f"Expected a non-negative integer label on line {line_numbers[bad]} of {path}, but got "
            f"{_excerpt(arr, separator[bad] + 1, ends[bad])!r}"
        )
    return PathTable(arr, path_starts, path_ends), values


def _excerpt(arr: np.ndarray, start: int, end: int, limit: int = 120) -> str:
    return arr[start : min(end, start + limit)].tobytes().decode("utf-8", errors="replace")


def _hash(keys: np.ndarray) -> np.ndarray:
    """FNV-1a hash (uint64) of every fixed-width key."""
    rows = keys.view(np.uint8).reshape(len(keys), keys.dtype.itemsize)
    hashed = np.full(len(keys), _FNV_OFFSET, dtype=np.uint64)
    for column in rows.T:
        hashed ^= column
        hashed *= _FNV_PRIME  # wraps modulo 2**64, as FNV intends
    return hashed


def join_labels(keys: PathTable, table: PathTable, labels: np.ndarray, *, source: str) -> np.ndarray:
    """The label of every key, looked up in ``(table, labels)``; ValueError naming a missing key.

    Keys are compared as fixed-width byte strings through a sorted 64-bit hash, so a million keys join
    in about a second without a Python object per key.
    """
    width = max(int((keys.ends - keys.starts).max(initial=1)), int((table.ends - table.starts).max(initial=1)))
    table_keys = table.fixed_width().astype(f"S{width}")
    wanted = keys.fixed_width().astype(f"S{width}")
    table_hash = _hash(table_keys)
    order = np.argsort(table_hash, kind="stable")
    sorted_hash = table_hash[order]
    position = np.minimum(np.searchsorted(sorted_hash, _hash(wanted)), max(len(order) - 1, 0))
    found = np.zeros(len(keys), dtype=bool)
    match = np.zeros(len(keys), dtype=np.int64)
    if len(order):
        match = order[position]
        found = table_keys[match] == wanted
    if not found.all():
        i = int(np.flatnonzero(~found)[0])
        raise ValueError(f"Expected every key to have a label in {source}, but {keys[i]!r} has none")
    return np.asarray(labels, dtype=np.int64)[match]


# --------------------------------------------------------------------------------------------------
# Decoding
class ImageFiles(Sequence):
    """``images[i]`` is the decoded image of ``root / paths[i]``, an (H, W, 3) uint8 RGB array.

    Absolute paths in the table are used as they are.

    Args:
        root: directory the relative paths are resolved against.
        paths: the file paths.
        name: the dataset's name, for error messages.
        layout: the expected on-disk layout, quoted in error messages.
        source: where to get the dataset, quoted in error messages.
    """

    def __init__(self, root: Path | str, paths: PathTable, *, name: str, layout: str = "", source: str = "") -> None:
        self.root = Path(root)
        self.paths = paths
        self.name = name
        self.layout = layout
        self.source = source

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> Path:
        return self.root / self.paths[index]

    def error_message(self, path: Path, problem: str) -> str:
        return (
            f"{self.name}: could not read image {path}: {problem}\nExpected layout:\n{self.layout}\n"
            f"How to get it: {self.source}"
        )

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        path = self.path(int(index))
        try:
            with Image.open(path) as image:
                image.load()
                # np.array, not np.asarray: PIL exports a read-only buffer, and torch warns when it
                # wraps read-only memory; the extra copy costs ~1% of the decode.
                return np.array(image if image.mode == "RGB" else image.convert("RGB"))
        except FileNotFoundError as error:
            raise ImageReadError(self.error_message(path, "the file does not exist")) from error
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            # PIL reports truncated data as OSError, unknown formats as UnidentifiedImageError (OSError).
            raise ImageReadError(self.error_message(path, f"{type(error).__name__}: {error}")) from error

    def first_missing(self, indices: Iterable[int]) -> Path | None:
        """The path of the first of the given images that is not a file, or None if all exist."""
        for index in indices:
            path = self.path(int(index))
            if not path.is_file():
                return path
        return None


def decode_all(images: Sequence[np.ndarray], side: int, *, desc: str = "decoding") -> np.ndarray:
    """Decode every image of ``images`` (e.g. :class:`ImageFiles`) once into one (N, side, side, 3) uint8
    array: the short side resized to ``side`` (bilinear, antialiased, as torchvision's Resize), then the
    centre ``side`` x ``side`` square; with a progress bar. An unreadable file raises the sequence's own
    error, which names it."""
    from tqdm.auto import tqdm

    out = np.empty((len(images), side, side, 3), dtype=np.uint8)
    for i in tqdm(range(len(images)), desc=desc, unit="img", mininterval=1.0, disable=len(images) < 1000):
        image = Image.fromarray(images[i])
        width, height = image.size
        scale = side / min(width, height)
        resized = image.resize((max(side, round(width * scale)), max(side, round(height * scale))), Image.BILINEAR,
                               reducing_gap=None)
        left, top = (resized.width - side) // 2, (resized.height - side) // 2
        out[i] = np.asarray(resized.crop((left, top, left + side, top + side)))
    return out
