"""The datamodule base class: base dataset -> imbalance -> label noise -> loaders.

Every benchmark datamodule subclasses :class:`LTNoiseDataModule` and implements :meth:`load_split`
(read the published on-disk format). The base class composes, in this order, all as functions of
``seed`` (so every machine and every DDP rank builds the identical training set):

1. long-tailed or step subsampling of the training split (``imbalance``, ``imbalance_ratio``):
   class i keeps ``n_max * ratio^(-i/(C-1))`` samples (LDAM-DRW convention), picked at random;
2. label corruption of the kept samples (``noise``, ``noise_rate``, ...);
3. an optional held-out validation part of the corrupted training set (``val_fraction``).

Two data paths serve the loaders (``pipeline``): datasets held in memory as a uint8 array (MNIST,
Fashion-MNIST, CIFAR, CIFAR-N, the synthetic set, cached image lists) take the batched path of
:mod:`lt_noise.data.batched` (the images as one tensor on the training device, whole batches gathered and
augmented there, no worker processes); decoded-file datasets take the per-sample path
(:class:`~lt_noise.data.datasets.IndexedDataset` with ``num_workers`` loader processes). Both key each
sample's augmentation by ``(seed, epoch, index)``.

The test split is never subsampled or corrupted. With ``val_fraction=0`` (the default) the validation
loader is the test set, which is how the five papers report "best epoch" accuracy; set ``val_fraction``
for honest model selection on held-out noisy training data.

``predict`` runs on ``predict_split`` (:meth:`LTNoiseDataModule.predict_dataset`): the test split by
default, or the training set (un-augmented, with its observed labels) or the validation set;
:meth:`~LTNoiseDataModule.sample_path` and :meth:`~LTNoiseDataModule.sample_image` give a sample's file
and image for reports (the prediction and label-issue files).

Arrays for diagnostics only (no method may read them): ``clean_targets`` and ``is_noisy``.

A method that builds its own training loader every epoch (Dynamic Loss: a meta split, two views per
sample) registers an :class:`EpochLoaderFactory` with :meth:`LTNoiseDataModule.register_epoch_loader`;
``train_dataloader`` then returns what it builds. The datamodule knows nothing else of methods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from lt_noise.data import imbalance as imbalance_lib
from lt_noise.data import noise as noise_lib
from lt_noise.data.batched import BATCHED_AUGMENTATIONS, BatchTransform, InMemoryDataset, to_image_batch
from lt_noise.data.datasets import IndexedDataset, to_image_tensor
from lt_noise.data.loaders import SAMPLINGS, ClassAwareSampler, make_loader
from lt_noise.data.transforms import AUGMENTATIONS, build_eval_transform, build_train_transform
from lt_noise.seeding import global_seed  # re-exported: its historical home
from lt_noise.validation import check_choice, check_int, check_interval

__all__ = ["PREDICT_SPLITS", "ComposedTrainingSet", "DatasetNotFoundError", "EpochLoaderFactory", "LTNoiseDataModule", "Split",
           "global_seed"]

IMBALANCE_KINDS = imbalance_lib.IMBALANCE_KINDS
# "auto": the batched in-memory path where the data and augmentation allow it, else per sample.
PIPELINES = ("auto", "batched", "per_sample")
# What `predict` can run on (datamodules with other sources extend it: ImageListDataModule's "predict").
PREDICT_SPLITS = ("test", "train", "val")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file is missing or unreadable; the message names the path, the layout and the source."""

    def __init__(self, name: str, searched: Sequence[Path | str], layout: str, source: str, problem: str = "") -> None:
        where = "\n".join(f"  - {p}" for p in searched)
        detail = f"{problem}\n" if problem else ""
        super().__init__(
            f"{name} not found or unreadable.\n{detail}Searched:\n{where}\nExpected layout:\n{layout}\n"
            f"How to get it: {source}"
        )


@dataclass(frozen=True)
class Split:
    """One split of a base dataset: ``images[i]`` decodes image i, ``labels[i]`` is its label."""

    images: Sequence[Any]
    labels: np.ndarray


@dataclass(frozen=True)
class ComposedTrainingSet:
    """The training set the datamodule composed from the base training split: subsampled, corrupted and
    split (see the module docstring), all arrays by training index.

    Attributes:
        images: the base split's images (``images[positions[i]]`` is training sample i).
        positions: (N,) int64 position of each training sample in the base split.
        clean: (N,) int64 clean labels (diagnostics only).
        observed: (N,) int64 observed (possibly corrupted) labels.
        class_counts: observed samples per class (what count-dependent losses receive; none is 0).
        clean_class_counts: clean samples per class (diagnostics only).
        val_positions: base-split positions of the held-out validation part (None without ``val_fraction``).
        val_observed: its observed labels (None without ``val_fraction``).
    """

    images: Sequence[Any]
    positions: np.ndarray
    clean: np.ndarray
    observed: np.ndarray
    class_counts: tuple[int, ...]
    clean_class_counts: tuple[int, ...]
    val_positions: np.ndarray | None
    val_observed: np.ndarray | None

    @property
    def size(self) -> int:
        return len(self.positions)


class EpochLoaderFactory(Protocol):
    """Builds the training loader of the coming epoch from the datamodule's building blocks
    (``train_dataset``, ``loader``, the composed labels, ...); called by ``train_dataloader`` at every
    epoch start when the trainer reloads dataloaders every epoch."""

    def __call__(self, datamodule: LTNoiseDataModule) -> DataLoader: ...


class LTNoiseDataModule(L.LightningDataModule):
    """Base class of every lt-noise datamodule.

    Subclasses set the class facts (``num_classes``, ``image_shape``, ``mean``, ``std``) and implement
    :meth:`load_split`; datasets whose class count is only known from the files override
    :attr:`num_classes` as a property.

    Args:
        root: directory holding the dataset in its published layout (see each subclass).
        batch_size: training batch size per process (the global batch is ``batch_size * world_size``).
        eval_batch_size: evaluation batch size per process (default: ``batch_size``).
        num_workers: dataloader worker processes.
        imbalance: ``"none"``, ``"exp"`` (long-tailed) or ``"step"`` subsampling of the training split.
        imbalance_ratio: n_max / n_min of the subsampled training set (>= 1).
        minority_fraction: fraction of classes that are minority classes for ``imbalance="step"``.
        noise: one of :data:`lt_noise.data.noise.NOISE_KINDS`.
        noise_rate: corruption rate in [0, 1).
        noise_exact: flip exactly ``int(rate * n_c)`` samples per class (APL code) instead of per sample.
        flip_map: for asymmetric noise, a name of a flip map or a ``{source: target}`` dict (default:
            the dataset's own map).
        augment: training augmentation (see :mod:`lt_noise.data.transforms`); None = dataset default.
        autoaugment: AutoAugment policy name, or None.
        cutout: Cutout square side in pixels (0 = off).
        val_fraction: fraction of the corrupted training set held out for validation (0 = validate on
            the test set, the papers' protocol).
        seed: seed of subsampling, noise, validation split and shuffling (None = the global seed).
        download: download with torchvision where a downloader exists.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host memory for faster host-to-GPU copies.
        sampling: training sampling: ``"instance"`` (each sample once per epoch), ``"class_balanced"``
            or ``"square_root"`` (class-aware, with replacement, by observed label; see
            :data:`lt_noise.data.loaders.SAMPLINGS`), e.g. for decoupled classifier re-training.
        max_train_per_class: keep at most this many training samples of each class (seeded), before the
            imbalance profile, which then starts from this cap: a smaller, CPU-sized version of a
            benchmark (None = all).
        pipeline: ``"auto"`` (default): the batched in-memory path (:mod:`lt_noise.data.batched`) when the
            images are an in-memory uint8 array and the augmentation is one it implements
            (:data:`~lt_noise.data.batched.BATCHED_AUGMENTATIONS`, with AutoAugment and Cutout), else the
            per-sample path; ``"batched"`` requires the batched path (an error says why when it cannot);
            ``"per_sample"`` forces the per-sample path. The batched path uses no worker processes
            (``num_workers`` applies to the per-sample path only).
        predict_split: what ``predict`` runs on: ``"test"`` (default), ``"train"`` (the composed training
            set, un-augmented, with its observed labels) or ``"val"`` (see :attr:`predict_splits`).
    """

    num_classes: ClassVar[int] = 0
    image_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    mean: ClassVar[tuple[float, ...]] = (0.5, 0.5, 0.5)
    std: ClassVar[tuple[float, ...]] = (0.5, 0.5, 0.5)
    default_augment: ClassVar[str] = "crop_flip"
    default_flip_map: ClassVar[str | None] = None
    class_names: ClassVar[tuple[str, ...]] = ()
    # Evaluation uses the ImageNet resize/centre-crop when True (large natural-image benchmarks).
    eval_resize_crop: ClassVar[bool] = False
    # True when `load_split("val")` reads an official validation split (ImageNet-LT val, Clothing1M clean
    # val): with `val_fraction=0` it is then the validation set instead of the test set.
    has_val_split: ClassVar[bool] = False
    # The accepted `predict_split` values.
    predict_splits: ClassVar[tuple[str, ...]] = PREDICT_SPLITS

    def __init__(
        self,
        root: str = "data",
        *,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        imbalance: str = "none",
        imbalance_ratio: float = 1.0,
        minority_fraction: float = 0.5,
        noise: str = "none",
        noise_rate: float = 0.0,
        noise_exact: bool = False,
        flip_map: str | dict[int, int] | None = None,
        augment: str | None = None,
        autoaugment: str | None = None,
        cutout: int = 0,
        val_fraction: float = 0.0,
        seed: int | None = None,
        download: bool = False,
        drop_last: bool = False,
        pin_memory: bool = False,
        sampling: str = "instance",
        max_train_per_class: int | None = None,
        pipeline: str = "auto",
        predict_split: str | None = None,
    ) -> None:
        super().__init__()
        check_choice("imbalance", imbalance, IMBALANCE_KINDS)
        check_interval("imbalance_ratio", imbalance_ratio, 1.0, math.inf, low_closed=True)
        check_choice("noise", noise, noise_lib.NOISE_KINDS)
        check_interval("noise_rate", noise_rate, 0.0, 1.0, low_closed=True)
        if noise == "none" and noise_rate != 0.0:
            raise ValueError(f"Expected argument `noise_rate` 0 with noise 'none', but got {noise_rate} (set `noise`)")
        check_choice("augment", augment, (*AUGMENTATIONS, None))
        check_interval("val_fraction", val_fraction, 0.0, 1.0, low_closed=True)
        check_int("batch_size", batch_size, minimum=1)
        check_int("eval_batch_size", eval_batch_size, minimum=1, optional=True)
        check_int("num_workers", num_workers, minimum=0)
        check_int("max_train_per_class", max_train_per_class, minimum=1, optional=True)
        check_choice("sampling", sampling, SAMPLINGS)
        check_choice("pipeline", pipeline, PIPELINES)
        check_choice("predict_split", predict_split, (*self.predict_splits, None))
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.imbalance = imbalance
        self.imbalance_ratio = float(imbalance_ratio)
        self.minority_fraction = minority_fraction
        self.noise = noise
        self.noise_rate = float(noise_rate)
        self.noise_exact = noise_exact
        self.flip_map = flip_map
        self.augment = augment or self.default_augment
        self.autoaugment = autoaugment
        self.cutout = cutout
        self.val_fraction = val_fraction
        self.seed = global_seed(seed)
        self.download = download
        self.drop_last = drop_last
        self.pin_memory = pin_memory
        self.sampling = sampling
        self.max_train_per_class = max_train_per_class
        self.pipeline = pipeline
        # The in-memory images as (N, C, H, W) uint8 tensors, by split, for the batched path.
        self._image_batches: dict[str, torch.Tensor] = {}
        self.predict_split = predict_split or "test"
        self._sources: dict[str, tuple[Sequence[Any], np.ndarray]] = {}
        self._composed: ComposedTrainingSet | None = None
        self._test: Split | None = None
        self._val: Split | None = None
        self._epoch_loader: EpochLoaderFactory | None = None

    # ----------------------------------------------------------------------------------------------
    # What subclasses provide
    def load_split(self, split: str) -> Split:
        """Read ``split`` ("train", "test", or "val" if :attr:`has_val_split`) from ``self.root``."""
        raise NotImplementedError

    def observed_labels(self, clean: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Labels the learner sees for the kept training samples (synthetic corruption by default).

        ``positions`` index the base training split; subclasses with real (human) noisy labels, such
        as CIFAR-N, override this to return those labels.
        """
        if self.noise == "none" or self.noise_rate == 0.0:
            return clean.copy()
        flip_map = None
        if self.noise == "asymmetric":
            flip_map = self.flip_map if self.flip_map is not None else self.default_flip_map
        return noise_lib.apply_noise(
            clean,
            kind=self.noise,
            rate=self.noise_rate,
            num_classes=self.num_classes,
            seed=self.seed,
            flip_map=flip_map,
            exact=self.noise_exact,
        )

    # ----------------------------------------------------------------------------------------------
    # Facts linked into the model (available right after __init__: they load labels on first use)
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the network input."""
        return tuple(self.image_shape)  # type: ignore[return-value]

    @property
    def class_counts(self) -> list[int]:
        """Observed (after-noise) class counts of the training set, as count-dependent losses need."""
        return list(self._compose().class_counts)

    @property
    def clean_class_counts(self) -> list[int]:
        """Clean class counts of the training set (diagnostics only)."""
        return list(self._compose().clean_class_counts)

    @property
    def observed_targets(self) -> np.ndarray:
        """The observed label of every training sample, by training index."""
        return self._compose().observed

    @property
    def clean_targets(self) -> np.ndarray:
        """Diagnostics only: the clean label of every training sample, by training index."""
        return self._compose().clean

    @property
    def is_noisy(self) -> np.ndarray:
        """Diagnostics only: whether each training sample's observed label differs from the clean one."""
        composed = self._compose()
        return composed.observed != composed.clean

    @property
    def train_size(self) -> int:
        return self._compose().size

    # ----------------------------------------------------------------------------------------------
    # Composition
    def _subsample(self, labels: np.ndarray) -> np.ndarray:
        kept = np.arange(len(labels), dtype=np.int64)
        if self.max_train_per_class is not None:
            capped = np.minimum(np.bincount(labels, minlength=self.num_classes), self.max_train_per_class)
            kept = imbalance_lib.subsample_indices(labels, capped.tolist(), self.seed)
        if self.imbalance == "none" or self.imbalance_ratio == 1.0:
            return kept
        n_max = int(np.bincount(labels[kept], minlength=self.num_classes).max())
        counts = imbalance_lib.imbalance_counts(
            self.imbalance, n_max, self.num_classes, self.imbalance_ratio, minority_fraction=self.minority_fraction
        )
        return kept[imbalance_lib.subsample_indices(labels[kept], counts, self.seed)]

    def _hold_out(self, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stratified (by observed label) split of training positions into (train, val) parts."""
        rng = np.random.default_rng([self.seed, 1])  # its own stream: independent of noise draws
        val = []
        for c in range(self.num_classes):
            members = np.flatnonzero(observed == c)
            take = int(round(self.val_fraction * len(members)))
            val.append(rng.permutation(members)[:take])
        val_mask = np.zeros(len(observed), dtype=bool)
        val_mask[np.concatenate(val)] = True
        return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)

    def _compose(self) -> ComposedTrainingSet:
        """Subsample, corrupt and split the base training set, once (the result is cached)."""
        if self._composed is not None:
            return self._composed
        train = self.load_split("train")
        labels = np.asarray(train.labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"Expected training labels in [0, {self.num_classes}), but got values in "
                f"[{labels.min()}, {labels.max()}] from {self.root}"
            )
        positions = self._subsample(labels)
        clean = labels[positions]
        observed = np.asarray(self.observed_labels(clean, positions), dtype=np.int64)
        keep, val = self._hold_out(observed) if self.val_fraction > 0 else (np.arange(len(clean)), None)
        counts = np.bincount(observed[keep], minlength=self.num_classes)
        # No empty class (docs/conventions.md): count-dependent losses take a log or a power of each count.
        empty = [c for c, n in enumerate(counts) if n == 0]
        if empty:
            raise ValueError(
                f"Expected every class to keep at least one training sample, but classes {empty} are empty "
                f"after subsampling (imbalance={self.imbalance!r}, ratio={self.imbalance_ratio}) and noise"
            )
        self._composed = ComposedTrainingSet(
            images=train.images,
            positions=positions[keep],
            clean=clean[keep],
            observed=observed[keep],
            class_counts=tuple(counts.tolist()),
            clean_class_counts=tuple(np.bincount(clean[keep], minlength=self.num_classes).tolist()),
            val_positions=None if val is None else positions[val],
            val_observed=None if val is None else observed[val],
        )
        return self._composed

    def _test_split(self) -> Split:
        if self._test is None:
            self._test = self.load_split("test")
        return self._test

    def _val_split(self) -> Split | None:
        """The official validation split, when there is one and no part of the training set is held out."""
        if not self.has_val_split or self.val_fraction > 0:
            return None
        if self._val is None:
            self._val = self.load_split("val")
        return self._val

    # ----------------------------------------------------------------------------------------------
    # Transforms and datasets (building blocks that methods may use for extra loaders)
    @property
    def image_size(self) -> int:
        return self.input_shape[-1]

    def train_transform(self):
        return build_train_transform(
            augment=self.augment,
            image_size=self.image_size,
            mean=self.mean,
            std=self.std,
            autoaugment=self.autoaugment,
            cutout=self.cutout,
        )

    def eval_transform(self):
        return build_eval_transform(
            image_size=self.image_size, mean=self.mean, std=self.std, resize_crop=self.eval_resize_crop
        )

    def batch_transform(self, view: str) -> BatchTransform:
        """The batched path's pipeline of a view: ``"train"`` (the augmentation) or ``"eval"`` (normalise)."""
        check_choice("view", view, ("train", "eval"))
        if view == "eval":
            return BatchTransform(augment="none", image_size=self.image_size, mean=self.mean, std=self.std)
        return BatchTransform(augment=self.augment, image_size=self.image_size, mean=self.mean, std=self.std,
                              autoaugment=self.autoaugment, cutout=self.cutout)

    @property
    def batched(self) -> bool:
        """Whether the loaders take the batched in-memory path (see ``pipeline``)."""
        if self.pipeline == "per_sample":
            return False
        reason = self._batched_unavailable()
        if reason is not None and self.pipeline == "batched":
            raise ValueError(f"Expected data the batched path can serve with `pipeline: batched`, but {reason}; "
                             "use `pipeline: auto` or `per_sample`")
        return reason is None

    def _batched_unavailable(self) -> str | None:
        if self.augment not in BATCHED_AUGMENTATIONS:
            return f"augment {self.augment!r} resizes each image (the batched path implements {BATCHED_AUGMENTATIONS})"
        if self.eval_resize_crop:
            return "its evaluation resizes each image"
        images = self._compose().images
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim in (3, 4)):
            return "its images are not an in-memory uint8 array (they are decoded from files)"
        return None

    def _device(self) -> torch.device:
        """The training device (where the batched path keeps its images): the trainer's, else the CPU."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _dataset(self, split: str, images: Any, positions: np.ndarray, labels: np.ndarray, views: Sequence[str]):
        """``images[positions]`` with ``labels`` and one transform per view, on the path ``batched`` chooses."""
        known = ("train", "eval")
        if not views or any(v not in known for v in views):
            raise ValueError(f"Expected views from {known}, but got {tuple(views)}")
        if self.batched:
            if split not in self._image_batches:
                self._image_batches[split] = to_image_batch(images)
            transforms = tuple(self.batch_transform(v) for v in views)
            dataset = InMemoryDataset(self._image_batches[split], positions, labels,
                                      transforms[0] if len(transforms) == 1 else transforms, seed=self.seed)
            return dataset.to(self._device())
        makers = {"train": self.train_transform, "eval": self.eval_transform}
        transforms = tuple(makers[v]() for v in views)
        return IndexedDataset(images, positions, labels, transforms[0] if len(transforms) == 1 else transforms, seed=self.seed)

    def train_dataset(self, views: Sequence[str] = ("train",)) -> IndexedDataset | InMemoryDataset:
        """The training set with the given views per sample: ``"train"`` (augmented) or ``"eval"``; an
        :class:`InMemoryDataset` (one item = one batch) on the batched path."""
        composed = self._compose()
        return self._dataset("train", composed.images, composed.positions, composed.observed, views)

    def test_dataset(self) -> IndexedDataset | InMemoryDataset:
        test = self._test_split()
        labels = np.asarray(test.labels, dtype=np.int64)
        return self._dataset("test", test.images, np.arange(len(labels)), labels, ("eval",))

    def val_dataset(self) -> IndexedDataset | InMemoryDataset:
        composed = self._compose()
        if composed.val_positions is None:
            official = self._val_split()
            if official is None:
                return self.test_dataset()
            labels = np.asarray(official.labels, dtype=np.int64)
            return self._dataset("val", official.images, np.arange(len(labels)), labels, ("eval",))
        return self._dataset("train", composed.images, composed.val_positions, composed.val_observed, ("eval",))

    @property
    def training_set(self) -> ComposedTrainingSet:
        """The composed training set (positions in the base split, clean and observed labels, counts)."""
        return self._compose()

    def loader_workers(self, dataset: Any) -> int:
        """Worker processes for a loader of ``dataset``: none on the batched path (the data is in memory)."""
        return 0 if isinstance(dataset, InMemoryDataset) else self.num_workers

    def predict_dataset(self) -> IndexedDataset:
        """The samples ``predict`` runs on (``predict_split``), un-augmented: ``(x, label, index)`` with the
        given label (the observed one for ``"train"``; -1 where unknown) and the position in this set."""
        if self.predict_split == "train":
            return self.train_dataset(views=("eval",))
        if self.predict_split == "val":
            return self.val_dataset()
        return self.test_dataset()

    def _source(self, split: str) -> tuple[Sequence[Any], np.ndarray]:
        """(images, positions) of a split's samples, cached: ``"train"`` (by training index), ``"predict"``
        (what ``predict`` runs on), ``"test"`` or ``"val"``."""
        key = f"predict:{self.predict_split}" if split == "predict" else split  # predict_split may change
        if key not in self._sources:
            if split == "train":
                composed = self._compose()
                source = (composed.images, composed.positions)
            elif split in ("predict", "test", "val"):
                dataset = {"predict": self.predict_dataset, "test": self.test_dataset, "val": self.val_dataset}[split]()
                source = (dataset.images, dataset.positions)
            else:
                raise ValueError(f"Expected split in ('train', 'predict', 'test', 'val'), but got {split!r}")
            self._sources[key] = source
        return self._sources[key]

    def sample_path(self, index: int, split: str = "train") -> str | None:
        """The image file of sample ``index`` of ``split`` (a training index for ``"train"``), or None for
        datasets held in memory."""
        images, positions = self._source(split)
        path = getattr(images, "path", None)
        return None if path is None else str(path(int(positions[index])))

    def sample_image(self, index: int, split: str = "train") -> np.ndarray:
        """The decoded image of sample ``index`` of ``split``, as stored (not transformed): a uint8 array
        (H, W) for grey and (H, W, 3) for colour images."""
        images, positions = self._source(split)
        image = to_image_tensor(images[int(positions[index])]).permute(1, 2, 0).cpu().numpy()
        return image[..., 0] if image.shape[-1] == 1 else image

    def loader(self, dataset, *, train: bool, batch_size: int | None = None, sampler=None) -> DataLoader:
        """A loader with the project's samplers (or ``sampler``) and this datamodule's worker settings."""
        return make_loader(
            dataset,
            batch_size=batch_size or (self.batch_size if train else self.eval_batch_size),
            train=train,
            seed=self.seed,
            num_workers=self.loader_workers(dataset),
            drop_last=self.drop_last and train,
            pin_memory=self.pin_memory and not isinstance(dataset, InMemoryDataset),
            sampler=sampler,
        )

    # ----------------------------------------------------------------------------------------------
    # LightningDataModule hooks
    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate"):
            self._compose()
            self._val_split()
        if stage in (None, "fit", "validate", "test", "predict"):
            self._test_split()
        if stage == "predict" and self.predict_split in ("train", "val"):
            self._compose()
            self._val_split()

    def register_epoch_loader(self, factory: EpochLoaderFactory | None) -> None:
        """Have ``train_dataloader`` return ``factory(self)`` from now on (None: the default loader again).

        For a method with its own per-epoch training loaders (Dynamic Loss registers at ``setup("fit")``
        and unregisters at ``teardown("fit")``).
        """
        if factory is not None and not callable(factory):
            raise ValueError(f"Expected argument `factory` to be callable or None, but got {factory!r}")
        self._epoch_loader = factory

    def train_dataloader(self) -> DataLoader:
        if self._epoch_loader is not None:
            return self._epoch_loader(self)
        sampler = None
        if self.sampling != "instance":
            power = 0.0 if self.sampling == "class_balanced" else 0.5
            sampler = ClassAwareSampler(self.observed_targets, seed=self.seed, power=power)
        return self.loader(self.train_dataset(), train=True, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val_dataset(), train=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.test_dataset(), train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.loader(self.predict_dataset(), train=False)

    def summary(self) -> dict[str, Any]:
        """Sizes and realised noise of the composed training set (for logs and results files)."""
        composed = self._compose()
        noisy = self.is_noisy
        official = self._val_split()
        if composed.val_positions is not None:
            val_size = len(composed.val_positions)
        else:
            val_size = 0 if official is None else len(official.labels)
        return {
            "dataset": type(self).__name__,
            "train_size": int(composed.size),
            "val_size": int(val_size),
            "test_size": int(len(self._test_split().labels)),
            "class_counts": self.class_counts,
            "realized_noise_rate": float(noisy.mean()) if len(noisy) else 0.0,
        }
