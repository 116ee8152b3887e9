"""One LightningDataModule per benchmark family, all sharing :class:`LTNoiseDataModule`."""

from lt_noise.data.modules.base import DatasetNotFoundError, LTNoiseDataModule, Split
from lt_noise.data.modules.cifar import CIFAR10DataModule, CIFAR100DataModule
from lt_noise.data.modules.mnist import FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DatasetNotFoundError",
    "FashionMNISTDataModule",
    "LTNoiseDataModule",
    "MNISTDataModule",
    "Split",
]
