"""Heads: features (B, D) -> logits (B, K).

- ``linear``: an affine layer (the standard softmax classifier).
- ``cosine``: cosine similarity between L2-normalised features and L2-normalised class weights, times a
  fixed ``scale`` (the "NormedLinear" of LDAM-DRW uses scale 1 and lets the LDAM loss apply s = 30).
- ``anchored``: fixed (anchored) class prototypes, PAL (:class:`AnchoredHead`).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from lt_noise.models.registry import register_head
from lt_noise.prototypes import METHODS, PAPER_STEPS, generate_prototypes, load_prototypes
from lt_noise.validation import check_choice, check_flag, check_positive

__all__ = ["AnchoredHead", "CosineHead", "LinearHead"]

# Keeps the L2 normalisation finite for an all-zero feature vector (e.g. after a ReLU).
NORM_EPS = 1e-12


@register_head("linear")
class LinearHead(nn.Linear):
    def __init__(self, feature_dim: int, num_classes: int, bias: bool = True) -> None:
        super().__init__(feature_dim, num_classes, bias=bias)


@register_head("cosine")
class CosineHead(nn.Module):
    def __init__(self, feature_dim: int, num_classes: int, scale: float = 1.0) -> None:
        super().__init__()
        check_positive("scale", scale)
        self.weight = nn.Parameter(torch.empty(num_classes, feature_dim))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.scale = scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = F.normalize(features, dim=1, eps=NORM_EPS)
        weight = F.normalize(self.weight, dim=1, eps=NORM_EPS)
        return self.scale * features @ weight.t()


@register_head("anchored")
class AnchoredHead(nn.Module):
    """Anchored class prototypes: prototype-anchored learning (PAL; Zhou et al., ICML 2022, papers/000).

    ``logits = scale * f(z) @ W.T`` with ``W`` the ``(num_classes, feature_dim)`` prototypes, unit rows
    with pairwise cosine ``-1/(k-1)`` (Lemma 3.1), and ``f(z) = z`` (PAL: unnormalised features, the
    setting of Theorem 4.2 and eq. 1 with fixed ``w_j``) or ``f(z) = z / ||z||`` (``normalize=True``:
    FNPAL, Section 4.2; with ``scale = s`` this is the ``s w_j^T z`` of eq. 2 with unit ``z`` and ``w_j``).

    The prototypes are a registered buffer (``prototypes``): saved in checkpoints, moved by ``.to()``,
    never a parameter, so no optimizer ever sees them and no gradient reaches them. There is no bias.

    Args:
        feature_dim: ``d``, the backbone's feature dimension.
        num_classes: ``k``.
        normalize: L2-normalise the features before the product (FNPAL).
        scale: ``s > 0``, multiplies the logits (1 for PAL).
        method: how to generate the prototypes (:func:`lt_noise.prototypes.generate_prototypes`):
            ``"auto"`` (closed-form simplex when ``k <= d + 1``, the paper's numerical procedure
            otherwise), ``"closed_form"`` (a ValueError for ``k > d + 1``) or ``"optimized"``.
        nonnegative: the numerical procedure's ReLU-on-features variant (Table 7 ``use_relu``).
        seed: orientation of the closed form / initialisation of the numerical procedure (``None``: the
            canonical closed form; the global RNG for the numerical one).
        steps: steps of the numerical procedure (paper: 100,000).
        prototypes_path: load the prototypes from this file (written by
            :func:`lt_noise.prototypes.save_prototypes`) instead of generating them; its shape must be
            ``(num_classes, feature_dim)``. ``method``, ``seed``, ``steps`` and ``nonnegative`` are then unused.
    """

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        *,
        normalize: bool = False,
        scale: float = 1.0,
        method: str = "auto",
        nonnegative: bool = False,
        seed: int | None = 0,
        steps: int = PAPER_STEPS,
        prototypes_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        check_flag("normalize", normalize)
        check_positive("scale", scale)
        check_choice("method", method, METHODS)
        if prototypes_path is not None:
            prototypes = load_prototypes(prototypes_path, num_classes=num_classes, dim=feature_dim)
            self.source = f"file {os.fspath(prototypes_path)}"
        else:
            prototypes = generate_prototypes(
                num_classes, feature_dim, method=method, nonnegative=nonnegative, seed=seed, steps=steps
            )
            self.source = f"method={method!r}, seed={seed}"
        self.register_buffer("prototypes", prototypes.to(torch.get_default_dtype()).contiguous())
        self.normalize = normalize
        self.scale = float(scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            features = F.normalize(features, dim=1, eps=NORM_EPS)
        prototypes = self.prototypes if self.prototypes.dtype == features.dtype else self.prototypes.to(features.dtype)
        logits = F.linear(features, prototypes)
        return logits * self.scale if self.scale != 1.0 else logits

    def extra_repr(self) -> str:
        k, d = self.prototypes.shape
        return f"num_classes={k}, feature_dim={d}, normalize={self.normalize}, scale={self.scale:g}, {self.source}"
