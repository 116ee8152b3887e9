"""Augmentation and evaluation pipelines (torchvision transforms v2 on CHW uint8 tensors).

Training pipelines, by name (``augment``):

- ``"none"``: no augmentation (the APL papers' MNIST setting).
- ``"flip"``: random horizontal flip.
- ``"crop_flip"``: random crop with zero padding (4 px on 32x32, the CIFAR convention of He et al. 2016)
  and a random horizontal flip: what every CIFAR experiment in the five papers uses.
- ``"crop"``: the random padded crop alone (for digits, where a flip changes the class).
- ``"imagenet"``: random resized crop to ``image_size``, flip and colour jitter (0.4, 0.4, 0.4), the
  standard ImageNet-LT / iNaturalist / WebVision training pipeline.
- ``"resize_crop_flip"``: resize the short side to 256/224 of ``image_size``, random crop, flip, no
  jitter: the Clothing1M and mini-WebVision setting of DivideMix (and ABSGD's Clothing1M runs).

Options on top: ``autoaugment`` (a torchvision AutoAugment policy name: ``"cifar10"``, ``"imagenet"``,
``"svhn"``) and ``cutout`` (side in pixels of the square of DeVries & Taylor 2017, applied after
normalisation as in their code). Evaluation pipelines only convert and normalise (``"imagenet"``:
resize to 256/224 of the crop size, then centre crop).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.transforms import v2

from lt_noise.validation import check_int, check_positive_int

__all__ = ["AUGMENTATIONS", "Cutout", "build_train_transform", "build_eval_transform"]

AUGMENTATIONS = ("none", "flip", "crop", "crop_flip", "imagenet", "resize_crop_flip")
AUTOAUGMENT_POLICIES = {
    "cifar10": v2.AutoAugmentPolicy.CIFAR10,
    "imagenet": v2.AutoAugmentPolicy.IMAGENET,
    "svhn": v2.AutoAugmentPolicy.SVHN,
}
# Zero padding of the random crop, in pixels per side, for 32x32 inputs (He et al. 2016); scaled with
# the image side for other sizes (28x28 -> 4 as well, rounding).
CROP_PADDING_32 = 4
# Colour jitter strength of the standard ImageNet-LT pipeline (Kang et al. 2020, OLTR code).
COLOR_JITTER = 0.4
# Eval resize / centre-crop ratio of the ImageNet convention (resize 256, crop 224).
RESIZE_RATIO = 256 / 224


class Cutout(nn.Module):
    """Zero one ``size`` x ``size`` square at a uniformly random centre (clipped at the border).

    DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks with Cutout": the
    centre may lie anywhere in the image, so the square can be partly outside it.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        check_positive_int("size", size)
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        cy = int(torch.randint(height, ()).item())
        cx = int(torch.randint(width, ()).item())
        half = self.size // 2
        y0, y1 = max(cy - half, 0), min(cy + half + self.size % 2, height)
        x0, x1 = max(cx - half, 0), min(cx + half + self.size % 2, width)
        image = image.clone()
        image[..., y0:y1, x0:x1] = 0
        return image


def _normalize(mean: Sequence[float], std: Sequence[float]) -> list[nn.Module]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def build_train_transform(
    *,
    augment: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    autoaugment: str | None = None,
    cutout: int = 0,
) -> v2.Compose:
    """The training pipeline: geometric augmentation, AutoAugment, normalisation, Cutout."""
    if augment not in AUGMENTATIONS:
        raise ValueError(f"Expected argument `augment` in {AUGMENTATIONS}, but got {augment!r}")
    if autoaugment is not None and autoaugment not in AUTOAUGMENT_POLICIES:
        raise ValueError(
            f"Expected argument `autoaugment` in {tuple(AUTOAUGMENT_POLICIES)} or None, but got {autoaugment!r}"
        )
    check_int("cutout", cutout, minimum=0)
    padding = max(1, round(CROP_PADDING_32 * image_size / 32))
    steps: list[nn.Module] = []
    if augment in ("crop", "crop_flip"):
        steps.append(v2.RandomCrop(image_size, padding=padding))
    if augment == "resize_crop_flip":
        steps += [v2.Resize(round(image_size * RESIZE_RATIO), antialias=True), v2.RandomCrop(image_size)]
    if augment == "imagenet":
        steps += [
            v2.RandomResizedCrop(image_size, antialias=True),
            v2.ColorJitter(COLOR_JITTER, COLOR_JITTER, COLOR_JITTER),
        ]
    if augment in ("flip", "crop_flip", "imagenet", "resize_crop_flip"):
        steps.append(v2.RandomHorizontalFlip())
    if autoaugment is not None:
        steps.append(v2.AutoAugment(AUTOAUGMENT_POLICIES[autoaugment]))
    steps += _normalize(mean, std)
    if cutout:
        steps.append(Cutout(cutout))
    return v2.Compose(steps)


def build_eval_transform(
    *, image_size: int, mean: Sequence[float], std: Sequence[float], resize_crop: bool = False
) -> v2.Compose:
    """The evaluation pipeline: normalisation (and the ImageNet resize/centre-crop if ``resize_crop``)."""
    steps: list[nn.Module] = []
    if resize_crop:
        steps += [v2.Resize(round(image_size * RESIZE_RATIO), antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(steps + _normalize(mean, std))
