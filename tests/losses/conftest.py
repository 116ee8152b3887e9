"""Shared inputs for the loss tests: balanced, long-tailed (ratio 100) and noisy batches, plus helpers.

Every case holds float64 logits (tests cast where they need float32), int64 targets and the class
counts a count-aware loss would be built with. ``numeric_grad`` (central differences, plain NumPy)
is independent of the code under test; ``autograd`` runs a loss module and returns NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch


@dataclass(frozen=True)
class Case:
    name: str
    logits: torch.Tensor  # (B, C) float64
    target: torch.Tensor  # (B,) int64
    class_counts: list[int]

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    def soft_target(self, seed: int = 0) -> torch.Tensor:
        """A random probability vector per row (Dirichlet), float64."""
        rng = np.random.default_rng(seed)
        return torch.from_numpy(rng.dirichlet(np.full(self.num_classes, 0.5), size=self.logits.shape[0]))


def _long_tailed_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    # n_i = floor(n_max * ratio^(-i/(C-1))) (LDAM-DRW / DESIGN.md convention)
    return [int(np.floor(n_max * ratio ** (-i / (num_classes - 1)))) for i in range(num_classes)]


def _balanced() -> Case:
    rng = np.random.default_rng(0)
    num_classes, batch = 10, 32
    logits = rng.normal(0.0, 2.0, size=(batch, num_classes))
    target = rng.integers(0, num_classes, size=batch)
    return Case("balanced", torch.from_numpy(logits), torch.from_numpy(target), [500] * num_classes)


def _long_tailed() -> Case:
    rng = np.random.default_rng(1)
    num_classes, batch = 100, 48
    counts = _long_tailed_counts(500, num_classes, 100.0)
    prior = np.asarray(counts, dtype=float) / sum(counts)
    target = rng.choice(num_classes, size=batch, p=prior)
    # a head-biased classifier: logits shifted by the log prior, plus noise
    logits = rng.normal(0.0, 1.5, size=(batch, num_classes)) + np.log(prior)
    return Case("longtail100", torch.from_numpy(logits), torch.from_numpy(target), counts)


def _noisy() -> Case:
    rng = np.random.default_rng(2)
    num_classes, batch, rate = 10, 40, 0.4
    clean = rng.integers(0, num_classes, size=batch)
    # symmetric noise: flip to a different class with probability `rate`
    flip = rng.random(batch) < rate
    offset = rng.integers(1, num_classes, size=batch)
    observed = np.where(flip, (clean + offset) % num_classes, clean)
    # a model that has learnt the clean labels: noisy samples get small p_y, clean ones large
    logits = rng.normal(0.0, 1.0, size=(batch, num_classes)) + 4.0 * np.eye(num_classes)[clean]
    return Case("noisy", torch.from_numpy(logits), torch.from_numpy(observed), [400] * num_classes)


CASES = {case.name: case for case in (_balanced(), _long_tailed(), _noisy())}


@pytest.fixture(params=sorted(CASES), ids=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@pytest.fixture
def small_case() -> Case:
    """A tiny batch for gradcheck (float64)."""
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(0.0, 1.5, size=(4, 5)))
    return Case("small", logits, torch.tensor([0, 3, 4, 1]), [50, 30, 20, 10, 5])


def numeric_grad(fn: Callable[[np.ndarray], np.ndarray], logits: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """Central differences of the per-sample losses ``fn(logits)`` (B,) w.r.t. each logit: (B, C).

    Rows are independent, so perturbing column j of every row at once gives d L_i / d s_ij.
    """
    grad = np.empty_like(logits)
    for j in range(logits.shape[1]):
        up, down = logits.copy(), logits.copy()
        up[:, j] += step
        down[:, j] -= step
        grad[:, j] = (fn(up) - fn(down)) / (2 * step)
    return grad


@pytest.fixture(name="numeric_grad")
def numeric_grad_fixture() -> Callable[..., np.ndarray]:
    return numeric_grad


@pytest.fixture(name="autograd")
def autograd_fixture() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """(values, d sum(values) / d logits) of a loss module on float64 logits, as NumPy."""

    def run(loss: torch.nn.Module, logits: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        x = logits.detach().clone().double().requires_grad_(True)
        values = loss(x, target)
        values.sum().backward()
        return values.detach().numpy(), x.grad.numpy()

    return run
