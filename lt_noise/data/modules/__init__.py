"""One LightningDataModule per benchmark family, all sharing :class:`LTNoiseDataModule`."""

from lt_noise.data.modules.base import DatasetNotFoundError, LTNoiseDataModule, Split
from lt_noise.data.modules.cifar import CIFAR10DataModule, CIFAR100DataModule
from lt_noise.data.modules.mnist import FashionMNISTDataModule, MNISTDataModule
from lt_noise.data.modules.synthetic import SyntheticDataModule
from lt_noise.data.modules.animal10n import Animal10NDataModule
from lt_noise.data.modules.clothing1m import Clothing1MDataModule
from lt_noise.data.modules.image_list import ImageListDataModule
from lt_noise.data.modules.imagenet_lt import ImageNetLTDataModule, PlacesLTDataModule
from lt_noise.data.modules.inaturalist import INaturalist2018DataModule
from lt_noise.data.modules.webvision import MiniWebVisionDataModule

__all__ = [
    "Animal10NDataModule",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "Clothing1MDataModule",
    "DatasetNotFoundError",
    "FashionMNISTDataModule",
    "INaturalist2018DataModule",
    "ImageListDataModule",
    "ImageNetLTDataModule",
    "LTNoiseDataModule",
    "MNISTDataModule",
    "MiniWebVisionDataModule",
    "PlacesLTDataModule",
    "Split",
    "SyntheticDataModule",
]
