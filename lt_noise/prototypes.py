"""Anchored class prototypes for Prototype-Anchored Learning (PAL; Zhou et al., ICML 2022).

Lemma 3.1 of the paper: for unit prototypes ``w_1..w_k`` and unit features in ``R^d`` with
``2 <= k <= d + 1``, the minimal sample margin is maximal exactly when ``w_i . w_j = -1/(k-1)`` for all
``i != j``, i.e. when the prototypes are the vertices of a regular simplex centred at the origin (the
best packing of ``k`` points on the sphere). PAL fixes the classifier to such prototypes (a buffer, never
a parameter) and trains the features to align with them.

Two ways to obtain them:

* :func:`simplex_prototypes` builds the simplex in closed form (``k <= d + 1``), optionally in a
  seeded, uniformly random orientation.
* :func:`optimized_prototypes` is the paper's numerical procedure (Section 3.3, Appendix B.2, Table 7):
  minimise the normalised softmax loss ``L_alpha`` (eq. 2 with ``alpha = 0``) over free features and
  prototypes in the balanced setting ``N = k, y_i = i``. It works for any ``k``: for ``k <= d + 1`` it
  reaches the simplex (Theorem 3.2); beyond that it approximates a best packing. Its ``nonnegative``
  variant is Table 7's ``use_relu``: the *features* pass through a ReLU before normalisation, so the
  prototypes are optimised for the non-negative features of a ReLU backbone.

:func:`generate_prototypes` chooses between them, :func:`save_prototypes` / :func:`load_prototypes` keep
them in a validated ``.pt`` file, and :func:`min_pairwise_angle` is the diagnostic of the paper's Fig. 5b
(minimum angle between prototypes), usable on learned classifier heads too.

Convention everywhere: prototypes are the rows of a ``(num_classes, dim)`` tensor, i.e. the layout of
``nn.Linear(dim, num_classes).weight``; logits are ``features @ prototypes.T``.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lt_noise.validation import (
    check_choice,
    check_flag,
    check_float_dtype,
    check_int,
    check_interval,
    check_positive,
    check_seed,
)

__all__ = [
    "METHODS",
    "PAPER_LR",
    "PAPER_MOMENTUM",
    "PAPER_SCALE",
    "PAPER_STEPS",
    "PAPER_T_MAX",
    "PAPER_WEIGHT_DECAY",
    "generate_prototypes",
    "load_prototypes",
    "min_pairwise_angle",
    "nonnegative_margins",
    "optimized_prototypes",
    "resolve_method",
    "save_prototypes",
    "simplex_prototypes",
]

# ---- The paper's numerical procedure (Appendix B.2 and Table 7); names follow the paper. ----
# "We train {z_i} and {w_i} by SGD ... for 100,000 epochs": one epoch is one full-batch step (N = k).
PAPER_STEPS = 100_000
# "initial learning rate 0.1"
PAPER_LR = 0.1
# "SGD optimizer with momentum 0.9"
PAPER_MOMENTUM = 0.9
# Table 7: SGD(..., weight_decay=1e-4)
PAPER_WEIGHT_DECAY = 1e-4
# Table 7: `scale = 5`, the s (inverse temperature) of L_alpha in eq. (2).
PAPER_SCALE = 5.0
# "cosine learning rate annealing with T_max = 20000" (eta_min = 0 in Table 7).
PAPER_T_MAX = 20_000

#: The values accepted by ``generate_prototypes(method=...)``.
METHODS = ("auto", "closed_form", "optimized")

# Largest |norm - 1| accepted for a row of a saved or loaded prototype tensor. Rows normalised in float32
# are within ~1e-7 of unit norm; 1e-4 also admits float16/bfloat16 round-trips yet rejects any tensor
# that was never normalised.
UNIT_NORM_TOLERANCE = 1e-4
# A numerically optimised set with k <= d + 1 (and no ReLU) whose largest pairwise cosine is further than
# this above the simplex optimum -1/(k-1) has not converged: warn. The paper's settings reach ~1e-6.
CONVERGENCE_TOLERANCE = 1e-3

_FILE_FORMAT = "lt_noise.prototypes"
_FILE_VERSION = 1


# ------------------------------------------------------------------------------------------ checks
def _check_closed_form_limit(num_classes: int, dim: int) -> None:
    if num_classes > dim + 1:
        raise ValueError(
            f"Expected `num_classes` <= dim + 1 = {dim + 1} for closed-form simplex prototypes, but got "
            f"num_classes={num_classes} (use method='optimized')"
        )


def _check_prototype_tensor(prototypes: Any, *, what: str) -> Tensor:
    if not isinstance(prototypes, Tensor):
        raise ValueError(f"Expected {what} to be a torch.Tensor, but got {type(prototypes).__name__}")
    if prototypes.ndim != 2 or prototypes.shape[0] < 2 or prototypes.shape[1] < 1:
        raise ValueError(
            f"Expected {what} of shape (num_classes >= 2, dim >= 1), but got shape {tuple(prototypes.shape)}"
        )
    if not prototypes.is_floating_point():
        raise ValueError(f"Expected {what} to have a floating-point dtype, but got {prototypes.dtype}")
    return prototypes


def _check_unit_rows(prototypes: Tensor, *, what: str) -> None:
    if not bool(torch.isfinite(prototypes).all()):
        raise ValueError(f"Expected {what} to be finite, but it contains NaN or inf")
    norms = prototypes.detach().double().norm(dim=1)
    worst = float((norms - 1.0).abs().max())
    if worst > UNIT_NORM_TOLERANCE:
        raise ValueError(
            f"Expected {what} to have unit-norm rows (|norm - 1| <= {UNIT_NORM_TOLERANCE}), but the worst row "
            f"is off by {worst:.3g}"
        )


# ------------------------------------------------------------------------------------ closed form
def _simplex_in_frame(frame: Tensor) -> Tensor:
    """The regular simplex with ``k = m + 1`` vertices spanned by the ``m`` orthonormal columns of ``frame``.

    ``frame`` is a float64 ``(d, m)`` matrix; returns the float64 ``(d, k)`` matrix ``sqrt(k/(k-1)) frame H``
    whose columns are the vertices. ``H`` (``(k-1, k)``) is the Helmert basis: row ``j = 1..k-1`` is
    ``(1, ..., 1, -j, 0, ..., 0) / sqrt(j (j + 1))`` with ``j`` ones. Its rows are orthonormal and
    orthogonal to the all-ones vector, so ``H^T H = I - 11^T / k`` and the vertices have Gram matrix
    ``k/(k-1) (I - 11^T/k)``: unit diagonal, ``-1/(k-1)`` elsewhere. Instead of a matrix product, vertex
    ``i`` (0-based) is ``sum_{j > i} q_j / sqrt(j (j+1)) - i q_i / sqrt(i (i+1))`` (``q_j`` the ``j``-th
    frame column), from one cumulative sum: O(k d). Columns, because QR returns the frame that way.
    """
    dim, rank = frame.shape
    num_classes = rank + 1
    j = torch.arange(1, num_classes, dtype=torch.float64)  # j = 1..k-1
    scaled = frame / torch.sqrt(j * (j + 1.0))  # column j: q_j / sqrt(j (j + 1))
    vertices = torch.empty(dim, num_classes, dtype=torch.float64)
    # Column t of the suffix sum: sum over j >= t + 1 = (sum over all j) - (sum over j <= t + 1) + term t.
    vertices[:, :rank] = scaled.sum(dim=1, keepdim=True) - scaled.cumsum(dim=1) + scaled
    vertices[:, rank] = 0.0  # the last vertex has no j > k - 1
    vertices[:, 1:] -= j * scaled  # vertex i >= 1: minus i q_i / sqrt(i (i + 1))
    vertices *= math.sqrt(num_classes / (num_classes - 1))
    return vertices


def _cholesky_qr(matrix: Tensor) -> Tensor | None:
    """Q of ``matrix = Q R`` (R upper triangular with positive diagonal) via the Cholesky factor of
    ``matrix^T matrix``; None if that Gram matrix is numerically singular. Two BLAS-3 calls, much faster than
    Householder QR on a busy multi-core CPU; it loses orthogonality like cond(matrix)^2 * eps."""
    factor, info = torch.linalg.cholesky_ex(matrix.T @ matrix, upper=True)
    if int(info) != 0:
        return None
    return torch.linalg.solve_triangular(factor, matrix, upper=True, left=False)


def _haar_frame(dim: int, rank: int, generator: torch.Generator) -> Tensor:
    """A float64 ``(dim, rank)`` matrix with orthonormal columns, uniformly (Haar) distributed.

    The first ``rank`` columns of a Haar-random ``dim x dim`` orthogonal matrix: the Q factor, normalised
    so that diag(R) > 0, of a Gaussian ``(dim, rank)`` matrix (Mezzadri, 2007). Only these columns act on
    a simplex spanning ``rank`` dimensions, so this costs O(dim rank^2) instead of the O(dim^3) of a full
    rotation. Q is computed by Cholesky QR; for ``rank <= dim / 2`` the Gaussian's condition number is
    below ~6 with overwhelming probability and one pass is exact to ~1e-14; above that a second pass
    (CholeskyQR2, Fukaya et al. 2014) restores orthogonality; if the Cholesky factorisation breaks down,
    Householder QR. All three give the same Q (the QR factorisation with positive diag(R) is unique).
    """
    gaussian = torch.randn(dim, rank, generator=generator, dtype=torch.float64)
    frame = _cholesky_qr(gaussian)
    if frame is not None and 2 * rank > dim:
        frame = _cholesky_qr(frame)
    if frame is None:
        frame, triangular = torch.linalg.qr(gaussian)
        signs = torch.sign(torch.diagonal(triangular))
        frame = frame * torch.where(signs == 0, torch.ones_like(signs), signs)
    return frame


def simplex_prototypes(
    num_classes: int, dim: int, seed: int | None = None, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Regular-simplex prototypes in closed form: unit rows with pairwise cosine exactly ``-1/(k-1)``.

    This is the optimum of Lemma 3.1 / Theorem 3.2 of the PAL paper (``w_i . w_j = -1/(k-1)``, ``i != j``),
    which exists for ``2 <= k <= d + 1``; the paper reaches it numerically (see
    :func:`optimized_prototypes`), here it is written down directly. Computed in float64 and cast.

    Args:
        num_classes: ``k >= 2``.
        dim: feature dimension ``d >= 1``, with ``k <= d + 1``.
        seed: ``None`` gives the canonical construction (the scaled transposed Helmert basis in the first
            ``k - 1`` coordinates, zeros elsewhere). An integer applies a seeded, uniformly random
            orthogonal transformation, so different seeds give different orientations with the same Gram
            matrix.
        dtype: floating-point dtype of the result.

    Returns:
        A CPU tensor of shape ``(num_classes, dim)`` whose rows are the prototypes.

    Raises:
        ValueError: if ``num_classes < 2``, ``dim < 1``, ``num_classes > dim + 1`` or ``seed`` is invalid.
    """
    check_int("num_classes", num_classes, minimum=2)
    check_int("dim", dim, minimum=1)
    _check_closed_form_limit(num_classes, dim)
    seed = check_seed(seed, optional=True)
    dtype = check_float_dtype(dtype)

    rank = num_classes - 1
    if seed is None:
        frame = torch.eye(dim, rank, dtype=torch.float64)  # the first k - 1 coordinate axes
    else:
        frame = _haar_frame(dim, rank, torch.Generator().manual_seed(seed))
    # One pass: transpose the (d, k) vertex columns into (k, d) rows while casting.
    return _simplex_in_frame(frame).T.to(dtype, memory_format=torch.contiguous_format)


# ---------------------------------------------------------------------------------------- numerical
def _normalized_softmax_loss(features: Tensor, weights: Tensor, *, scale: float, nonnegative: bool) -> Tensor:
    """L_alpha of eq. (2) with alpha = 0 in the balanced setting of Table 7 (sample i has label i)."""
    if nonnegative:
        features = F.relu(features)
    logits = F.normalize(features, dim=1) @ F.normalize(weights, dim=1).T
    labels = torch.arange(features.shape[0], device=features.device)
    return F.cross_entropy(scale * logits, labels)


def _max_pairwise_cosine(prototypes: Tensor) -> float:
    unit = F.normalize(prototypes.detach().double(), dim=1)
    cosine = unit @ unit.T
    cosine.fill_diagonal_(-math.inf)
    return float(cosine.max())


def optimized_prototypes(
    num_classes: int,
    dim: int,
    steps: int = PAPER_STEPS,
    *,
    nonnegative: bool = False,
    seed: int | None = None,
    lr: float = PAPER_LR,
    momentum: float = PAPER_MOMENTUM,
    weight_decay: float = PAPER_WEIGHT_DECAY,
    scale: float = PAPER_SCALE,
    t_max: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The PAL paper's numerical prototype generation (Section 3.3, Appendix B.2, Table 7).

    Free features ``Z`` (``k x d``) and prototypes ``W`` (``k x d``) are initialised at random (Table 7:
    ``Z ~ N(0, 1)``, ``W`` by ``kaiming_normal_`` with its defaults, i.e. ``N(0, 2 / d)``) and the
    normalised softmax loss ``CE(scale * normalize(Z) @ normalize(W).T, arange(k))`` (eq. 2, ``alpha = 0``,
    one sample per class) is minimised by full-batch SGD with momentum and weight decay under cosine
    annealing (``eta_min = 0``), one step per "epoch". By Theorem 3.2 the optimum for ``k <= d + 1`` is the
    regular simplex; for larger ``k`` the procedure spreads the prototypes (e.g. a regular ``k``-gon for
    ``d = 2``). Runs in float32 as in the paper; the returned rows are normalised.

    ``nonnegative=True`` is Table 7's ``use_relu``: the ReLU is applied to the *features* ``Z`` before
    normalisation (not to the prototypes), so ``W`` is optimised for non-negative (post-ReLU) features.
    For ``k <= d`` the optimum then has orthonormal non-negative features and prototypes that still form a
    regular simplex, oriented so that the positive parts of different prototypes have disjoint supports;
    the prototypes themselves do have negative entries. Rows of ``Z`` that the ReLU kills for good stop
    learning (a warning says so); this happens mostly for small ``d``.

    Args:
        num_classes: ``k >= 2`` (any ``k``; no ``d + 1`` limit).
        dim: feature dimension ``d >= 2`` (on the 0-sphere, ``d = 1``, the gradient of a normalised
            vector vanishes and nothing can move; use :func:`simplex_prototypes` for ``k = 2, d = 1``).
        steps: number of full-batch SGD steps (paper: 100,000).
        nonnegative: apply the ReLU to the features (Table 7 ``use_relu``).
        seed: seeds the initialisation; ``None`` draws from torch's global RNG (so ``seed_everything``
            makes it reproducible).
        lr, momentum, weight_decay: SGD settings (paper: 0.1, 0.9, 1e-4).
        scale: the ``s`` of eq. (2) (paper: 5).
        t_max: period parameter of ``CosineAnnealingLR``. ``None`` means the paper's 20,000 when
            ``steps >= 20,000`` and ``steps`` otherwise, so that a shorter run still anneals to zero.
            (With the paper's 100,000 steps the schedule passes through zero twice and ends at zero.)
        device: where to optimise (and return); default CPU.
        dtype: floating-point dtype of the result.

    Returns:
        A tensor of shape ``(num_classes, dim)`` with unit rows, on ``device``.

    Note:
        The angular step on a normalised parameter is ``lr / ‖p‖²``, so with the paper's ``lr = 0.1`` and
        ``weight_decay = 1e-4`` small problems need ~10^4-10^5 steps; ``lr = 2`` with 3000 steps reaches
        the same optima for k <= 7, d <= 32 (the tests' setting), while ``lr >= 4`` becomes unstable on
        longer runs. Each step is a handful of tiny ops for small ``k, d``: on a busy multi-core CPU,
        ``torch.set_num_threads(1)`` around the call makes it many times faster.

    Warns:
        UserWarning: if ``k <= d + 1`` without ReLU and the result is not within ``CONVERGENCE_TOLERANCE``
        of the simplex optimum (increase ``steps``), or if ReLU features died.
    """
    check_int("num_classes", num_classes, minimum=2)
    check_int("dim", dim, minimum=1)
    if dim == 1:
        raise ValueError(
            "Expected argument `dim` >= 2 for optimized prototypes (on the 0-sphere the gradient of a normalised "
            "vector vanishes), but got 1; for num_classes=2, dim=1 use simplex_prototypes"
        )
    check_int("steps", steps, minimum=1)
    check_flag("nonnegative", nonnegative)
    seed = check_seed(seed, optional=True)
    lr = check_positive("lr", lr)
    momentum = check_interval("momentum", momentum, 0.0, 1.0, low_closed=True)
    weight_decay = check_interval("weight_decay", weight_decay, 0.0, math.inf, low_closed=True)
    scale = check_positive("scale", scale)
    if t_max is None:
        t_max = min(PAPER_T_MAX, steps)
    check_int("t_max", t_max, minimum=1)
    dtype = check_float_dtype(dtype)
    device = torch.device("cpu") if device is None else torch.device(device)

    generator = None if seed is None else torch.Generator().manual_seed(seed)
    # The caller may be inside no_grad / inference_mode (e.g. building a module); this is a training loop.
    with torch.inference_mode(False), torch.enable_grad():
        features = torch.randn(num_classes, dim, generator=generator).to(device).requires_grad_()
        # kaiming_normal_ defaults (mode="fan_in", nonlinearity="leaky_relu", a=0): std = sqrt(2 / fan_in),
        # and fan_in of a (k, d) weight is d.
        weights = (torch.randn(num_classes, dim, generator=generator) * math.sqrt(2.0 / dim)).to(device)
        weights.requires_grad_()
        optimizer = torch.optim.SGD([features, weights], lr=lr, momentum=momentum, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=0.0)
        for _ in range(steps):
            loss = _normalized_softmax_loss(features, weights, scale=scale, nonnegative=nonnegative)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

    prototypes = F.normalize(weights.detach(), dim=1)
    if nonnegative:
        dead = int((features.detach() <= 0).all(dim=1).sum())
        if dead:
            warnings.warn(
                f"{dead} of {num_classes} ReLU features are zero (dead) after optimisation, so the prototypes "
                f"are not optimal; try another `seed` or a larger `dim`",
                UserWarning,
                stacklevel=2,
            )
    elif num_classes <= dim + 1:
        optimum = -1.0 / (num_classes - 1)
        reached = _max_pairwise_cosine(prototypes)
        if reached - optimum > CONVERGENCE_TOLERANCE:
            warnings.warn(
                f"Optimised prototypes have largest pairwise cosine {reached:.6f}, but the optimum for "
                f"num_classes={num_classes} <= dim + 1 is -1/(k-1) = {optimum:.6f}: increase `steps` "
                f"(got {steps}) or use method='closed_form'",
                UserWarning,
                stacklevel=2,
            )
    return prototypes.to(dtype)


# ------------------------------------------------------------------------------------------ choice
def resolve_method(num_classes: int, dim: int, *, method: str = "auto", nonnegative: bool = False) -> str:
    """The concrete method (``"closed_form"`` or ``"optimized"``) that :func:`generate_prototypes` uses.

    ``"auto"`` picks the closed form when ``num_classes <= dim + 1`` and ``nonnegative`` is False, and the
    numerical procedure otherwise. An explicit ``"closed_form"`` is checked against its limits.
    """
    check_int("num_classes", num_classes, minimum=2)
    check_int("dim", dim, minimum=1)
    check_choice("method", method, METHODS)
    check_flag("nonnegative", nonnegative)
    if method == "auto":
        return "closed_form" if num_classes <= dim + 1 and not nonnegative else "optimized"
    if method == "closed_form":
        if nonnegative:
            raise ValueError(
                "Expected `nonnegative=False` for method='closed_form' (the ReLU-feature variant of Table 7 "
                "is numerical), but got nonnegative=True (use method='optimized')"
            )
        _check_closed_form_limit(num_classes, dim)
    return method


def generate_prototypes(
    num_classes: int,
    dim: int,
    *,
    method: str = "auto",
    nonnegative: bool = False,
    seed: int | None = None,
    steps: int = PAPER_STEPS,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Anchored prototypes for PAL: ``(num_classes, dim)`` unit rows.

    ``method="auto"`` uses :func:`simplex_prototypes` (exact, instantaneous) when ``num_classes <= dim + 1``
    and ``nonnegative`` is False, and the paper's numerical procedure :func:`optimized_prototypes` (with
    the paper's hyperparameters and ``steps``) otherwise; ``"closed_form"`` / ``"optimized"`` force one.
    ``seed`` orients the closed form or initialises the optimisation; ``steps`` only matters for the
    numerical procedure. The result is on the CPU.
    """
    resolved = resolve_method(num_classes, dim, method=method, nonnegative=nonnegative)
    check_int("steps", steps, minimum=1)
    if resolved == "closed_form":
        return simplex_prototypes(num_classes, dim, seed, dtype=dtype)
    return optimized_prototypes(num_classes, dim, steps, nonnegative=nonnegative, seed=seed, dtype=dtype)


# ------------------------------------------------------------------------------------- diagnostics
def min_pairwise_angle(prototypes: Tensor) -> float:
    """Smallest angle, in degrees, between any two rows of ``prototypes`` (the paper's Fig. 5b).

    Rows need not be normalised (learned classifier heads: ``nn.Linear.weight``, one row per class); the
    angle is ``arccos`` of the largest pairwise cosine, computed in float64. A regular simplex gives
    ``degrees(arccos(-1/(k-1)))``. Returns NaN if a row is zero (its angle to the others is undefined),
    so that a diagnostic on a zero-initialised head reports instead of failing.
    """
    prototypes = _check_prototype_tensor(prototypes, what="`prototypes`")
    rows = prototypes.detach().double()
    unit = rows / rows.norm(dim=1, keepdim=True)  # a zero row becomes NaN and propagates
    cosine = unit @ unit.T
    cosine.fill_diagonal_(-math.inf)
    largest = cosine.max().clamp(-1.0, 1.0)
    return math.degrees(float(torch.arccos(largest)))


def nonnegative_margins(prototypes: Tensor, *, steps: int = 2000, starts: int = 8, lr: float = 0.01, seed: int = 0) -> Tensor:
    """For each class y, the largest cosine margin ``min_{j != y} cos(z, w_y) - cos(z, w_j)`` that a
    non-negative feature ``z`` (the output of a ReLU) can reach: a ``(k,)`` float64 tensor.

    Lemma 3.1's optimum, ``1 + 1/(k-1)`` for the regular simplex, assumes features anywhere on the sphere;
    the features of a ReLU backbone (the plain CNNs' FC-BN-ReLU, ResNets' ReLU + pooling) lie in the
    non-negative orthant, where a simplex of mixed-sign vertices leaves less: the diagnostic of the
    ``nonnegative`` prototypes (Table 7's ``use_relu``). Computed by gradient ascent (Adam, ``steps``
    steps of learning rate ``lr``) on ``z = relu(v) / ||relu(v)||`` with a smooth maximum over the other
    classes, from ``starts`` starting points (``relu(w_y)``, the all-ones vector, and seeded random
    non-negative ones: the margin is not concave on the sphere), then read exactly at the best final
    ``z``: a lower bound of the true value, within ~2e-3 of a brute-force optimum in the tests. Rows of
    ``prototypes`` need not be normalised.
    """
    prototypes = _check_prototype_tensor(prototypes, what="`prototypes`")
    steps = check_int("steps", steps, minimum=1)
    starts = check_int("starts", starts, minimum=1)
    lr = check_positive("lr", lr)
    unit = F.normalize(prototypes.detach().double(), dim=1)
    k, d = unit.shape
    others = ~torch.eye(k, dtype=torch.bool)

    def margins(v: Tensor, sharpness: float | None) -> Tensor:  # v: (starts, k, d) -> (starts, k)
        z = F.normalize(v.relu() + 1e-12, dim=-1)
        cosine = z @ unit.T  # [s, y]: the feature of class y against every prototype
        rest = cosine.masked_fill(~others, -math.inf)
        largest = rest.amax(dim=-1) if sharpness is None else torch.logsumexp(sharpness * rest, dim=-1) / sharpness
        return cosine.diagonal(dim1=-2, dim2=-1) - largest

    generator = torch.Generator().manual_seed(check_seed(seed))
    initial = [unit.relu() + 1e-3, torch.ones(k, d, dtype=torch.float64)]
    initial += [torch.randn(k, d, generator=generator, dtype=torch.float64).abs() for _ in range(starts - 2)]
    with torch.enable_grad():
        v = torch.stack(initial[:starts]).requires_grad_(True)
        optimizer = torch.optim.Adam([v], lr=lr)
        for step in range(steps):
            sharpness = 10.0 + 990.0 * step / max(steps - 1, 1)  # from smooth to nearly the exact maximum
            loss = -margins(v, sharpness).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return margins(v, None).amax(dim=0)


# ------------------------------------------------------------------------------------------- files
def save_prototypes(path: str | os.PathLike[str], prototypes: Tensor, *, method: str = "unknown") -> None:
    """Save ``prototypes`` (``(k, d)`` unit rows) to a ``.pt`` file with a small header.

    The file holds ``{"format", "version", "num_classes", "dim", "method", "prototypes"}``; ``method`` is a
    free label recorded for provenance (e.g. the result of :func:`resolve_method`). The tensor is checked
    before anything is written, and the file is written to a temporary name and renamed, so a failure never
    leaves a truncated file behind.
    """
    prototypes = _check_prototype_tensor(prototypes, what="`prototypes`")
    _check_unit_rows(prototypes, what="`prototypes`")
    if not isinstance(method, str):
        raise ValueError(f"Expected argument `method` to be a str, but got {method!r}")
    path = Path(path)
    payload = {
        "format": _FILE_FORMAT,
        "version": _FILE_VERSION,
        "num_classes": int(prototypes.shape[0]),
        "dim": int(prototypes.shape[1]),
        "method": method,
        "prototypes": prototypes.detach().cpu().contiguous().clone(),
    }
    temporary = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def load_prototypes(
    path: str | os.PathLike[str], *, num_classes: int | None = None, dim: int | None = None
) -> Tensor:
    """Load prototypes written by :func:`save_prototypes` and validate them.

    Checks the header, that the tensor's shape matches it (and ``num_classes`` / ``dim`` when given), and
    that the rows are finite and unit-norm. Returns the ``(k, d)`` tensor on the CPU in its saved dtype.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a readable prototype file (corrupt, truncated, another kind of
            ``.pt``), or its contents fail the checks.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected a prototype file at {str(path)!r}, but there is no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types on damaged input (zip, pickle, EOF errors)
        raise ValueError(
            f"Could not read prototypes from {str(path)!r}: the file is corrupt, truncated or not a torch file "
            f"({type(error).__name__}: {error})"
        ) from error

    expected_keys = {"format", "version", "num_classes", "dim", "method", "prototypes"}
    if not isinstance(payload, dict) or payload.get("format") != _FILE_FORMAT:
        raise ValueError(
            f"Expected {str(path)!r} to be a prototype file written by lt_noise.prototypes.save_prototypes "
            f"(format {_FILE_FORMAT!r}), but it holds {type(payload).__name__}"
            + (f" with keys {sorted(map(str, payload))}" if isinstance(payload, dict) else "")
        )
    missing = expected_keys - set(payload)
    if missing:
        raise ValueError(
            f"Expected {str(path)!r} to contain the keys {sorted(expected_keys)}, but {sorted(missing)} are missing"
        )
    if payload["version"] != _FILE_VERSION:
        raise ValueError(
            f"Expected prototype file version {_FILE_VERSION} in {str(path)!r}, but got {payload['version']!r}"
        )
    what = f"the prototypes in {str(path)!r}"
    prototypes = _check_prototype_tensor(payload["prototypes"], what=what)
    header_shape = (payload["num_classes"], payload["dim"])
    if tuple(prototypes.shape) != header_shape:
        raise ValueError(
            f"Expected {what} to have the header's shape {header_shape}, but got {tuple(prototypes.shape)}"
        )
    if num_classes is not None and prototypes.shape[0] != num_classes:
        raise ValueError(f"Expected {what} to have num_classes={num_classes} rows, but got {prototypes.shape[0]}")
    if dim is not None and prototypes.shape[1] != dim:
        raise ValueError(f"Expected {what} to have dim={dim} columns, but got {prototypes.shape[1]}")
    _check_unit_rows(prototypes, what=what)
    return prototypes
