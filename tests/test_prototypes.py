"""Tests of lt_noise.prototypes against independent references.

References: the Gram matrix of a regular simplex written from Lemma 3.1 (unit diagonal, -1/(k-1)
elsewhere) and checked with a plain Python double loop; for the numerical procedure, Theorem 3.2 (the
simplex is its optimum for k <= d + 1), the known best packings beyond that (regular k-gon on the circle,
octahedron) and, for the ReLU-feature variant, the structure its optimum must have; Householder QR for the
random frame; a brute-force loop for the minimum angle.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from lt_noise import prototypes as P
from lt_noise.prototypes import (
    generate_prototypes,
    load_prototypes,
    min_pairwise_angle,
    nonnegative_margins,
    optimized_prototypes,
    resolve_method,
    save_prototypes,
    simplex_prototypes,
)

# Closed-form tolerance asked of float32 output (pairwise cosines and norms).
CLOSED_FORM_ATOL = 1e-6
# How close a short optimisation run (tuned lr/steps, fixed seeds) must get to a known optimum's cosine.
OPTIMUM_ATOL = 1e-3

# Short but converging settings for the numerical procedure. The paper's lr = 0.1 needs ~10^4-10^5 steps
# on these small problems (the effective step on a normalised parameter is lr / ‖p‖², and ‖Z‖ starts at
# sqrt(d)); lr = 2 reaches the optimum (to ~1e-6) in 3000 steps for every case below and seeds 0-7, also
# at 4000 steps (not yet at 2000). Much larger lr (>= 4) turns unstable on longer runs.
FAST_LR = 2.0
FAST_STEPS = 3000


@pytest.fixture(autouse=True)
def single_thread():
    # Every problem here is tiny: intra-op threads cannot help, and on a busy machine their barriers cost
    # milliseconds per op (a 1000-step run goes from ~0.4 s to ~10 s). Restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def simplex_gram_deviation_loop(prototypes: torch.Tensor) -> float:
    """max over (i, j) of |w_i . w_j - G_ij| with G the simplex Gram matrix, by a plain double loop."""
    rows = prototypes.double().numpy()
    k = rows.shape[0]
    worst = 0.0
    for i in range(k):
        for j in range(k):
            target = 1.0 if i == j else -1.0 / (k - 1)
            dot = float(sum(float(a) * float(b) for a, b in zip(rows[i], rows[j])))
            worst = max(worst, abs(dot - target))
    return worst


def max_cosine(prototypes: torch.Tensor) -> float:
    rows = prototypes.double()
    rows = rows / rows.norm(dim=1, keepdim=True)
    gram = rows @ rows.T
    gram.fill_diagonal_(-math.inf)
    return float(gram.max())


# -------------------------------------------------------------------------------- closed form
SHAPES = [(2, 1), (2, 2), (2, 7), (3, 2), (3, 3), (4, 3), (5, 4), (5, 16), (10, 9), (10, 64), (17, 40), (33, 32)]


@pytest.mark.parametrize("seed", [None, 0, 7])
@pytest.mark.parametrize(("num_classes", "dim"), SHAPES)
def test_simplex_unit_rows_and_cosine(num_classes, dim, seed):
    prototypes = simplex_prototypes(num_classes, dim, seed)
    assert prototypes.shape == (num_classes, dim)
    assert prototypes.dtype == torch.float32
    assert simplex_gram_deviation_loop(prototypes) < CLOSED_FORM_ATOL


@pytest.mark.parametrize(("num_classes", "dim", "seed"), [(4, 3, None), (100, 99, 1), (60, 200, 2)])
def test_simplex_float64_is_exact_and_centred(num_classes, dim, seed):
    prototypes = simplex_prototypes(num_classes, dim, seed, dtype=torch.float64)
    assert prototypes.dtype == torch.float64
    target = np.full((num_classes, num_classes), -1.0 / (num_classes - 1))
    np.fill_diagonal(target, 1.0)
    np.testing.assert_allclose(prototypes.numpy() @ prototypes.numpy().T, target, rtol=0, atol=1e-12)
    # Sum w_i = 0 (NSL is symmetric only then, Proposition 4.3) and the vertices span k - 1 dimensions.
    np.testing.assert_allclose(prototypes.numpy().sum(axis=0), 0.0, atol=1e-12)
    assert np.linalg.matrix_rank(prototypes.numpy(), tol=1e-9) == num_classes - 1


def test_simplex_small_cases_by_hand():
    np.testing.assert_allclose(simplex_prototypes(2, 1).numpy(), [[1.0], [-1.0]], atol=1e-7)
    triangle = simplex_prototypes(3, 2).double().numpy()
    angles = np.sort(np.degrees(np.arctan2(triangle[:, 1], triangle[:, 0])) % 360.0)
    np.testing.assert_allclose(np.diff(angles), [120.0, 120.0], atol=1e-5)


def test_simplex_canonical_lives_in_first_coordinates():
    prototypes = simplex_prototypes(5, 12)
    assert torch.equal(prototypes[:, 4:], torch.zeros(5, 8))
    assert torch.equal(simplex_prototypes(5, 12), prototypes)


def test_simplex_seed_is_deterministic_and_orients():
    first, again, other = (simplex_prototypes(6, 10, seed) for seed in (3, 3, 4))
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 0.1
    # A random orientation leaves the first k - 1 coordinates.
    assert first[:, 5:].abs().max() > 0.1
    # Same geometry: identical Gram matrices.
    first64, other64 = first.double().numpy(), other.double().numpy()
    np.testing.assert_allclose(first64 @ first64.T, other64 @ other64.T, rtol=0, atol=1e-6)


def test_simplex_seed_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    simplex_prototypes(8, 16, seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(("dim", "rank"), [(10, 3), (10, 5), (10, 8), (64, 64), (300, 299)])
def test_haar_frame_matches_householder_qr(dim, rank):
    # Both one- and two-pass Cholesky QR must give the Q of the QR factorisation with diag(R) > 0.
    frame = P._haar_frame(dim, rank, torch.Generator().manual_seed(11))
    gaussian = torch.randn(dim, rank, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))
    np.testing.assert_allclose(frame.numpy(), q.numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(frame.numpy().T @ frame.numpy(), np.eye(rank), rtol=0, atol=1e-12)


def test_cholesky_qr_reports_singular_input():
    singular = torch.ones(6, 3, dtype=torch.float64)
    assert P._cholesky_qr(singular) is None


@pytest.mark.parametrize(("num_classes", "dim"), [(5, 3), (3, 1), (1001, 999)])
def test_simplex_beyond_limit_raises(num_classes, dim):
    message = rf"`num_classes` <= dim \+ 1 = {dim + 1} .* got num_classes={num_classes} \(use method='optimized'\)"
    with pytest.raises(ValueError, match=message):
        simplex_prototypes(num_classes, dim)
    with pytest.raises(ValueError, match=message):
        generate_prototypes(num_classes, dim, method="closed_form")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1, "dim": 4}, "`num_classes` to be an integer >= 2, but got 1"),
        ({"num_classes": 3.0, "dim": 4}, "`num_classes`"),
        ({"num_classes": True, "dim": 4}, "`num_classes`"),
        ({"num_classes": 3, "dim": 0}, "`dim` to be an integer >= 1, but got 0"),
        ({"num_classes": 3, "dim": 4, "seed": -1}, "`seed`"),
        ({"num_classes": 3, "dim": 4, "seed": 1.5}, "`seed`"),
        ({"num_classes": 3, "dim": 4, "dtype": torch.int64}, "`dtype`"),
    ],
)
def test_simplex_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simplex_prototypes(**kwargs)


# ---------------------------------------------------------------------------------- numerical
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "`steps` to be an integer >= 1, but got 0"),
        ({"dim": 1}, "`dim` >= 2 for optimized prototypes .* but got 1"),
        ({"dim": 0}, "`dim` to be an integer >= 1, but got 0"),
        ({"num_classes": 1}, "`num_classes`"),
        ({"lr": 0.0}, "`lr`"),
        ({"lr": math.inf}, "`lr`"),
        ({"momentum": 1.0}, r"`momentum` in \[0, 1\)"),
        ({"weight_decay": -1e-4}, "`weight_decay`"),
        ({"scale": -5.0}, "`scale`"),
        ({"t_max": 0}, "`t_max`"),
        ({"nonnegative": 1}, "`nonnegative`"),
        ({"seed": "0"}, "`seed`"),
    ],
)
def test_optimized_invalid_arguments(kwargs, match):
    arguments = {"num_classes": 4, "dim": 3, "steps": 5} | kwargs
    with pytest.raises(ValueError, match=match):
        optimized_prototypes(**arguments)


def test_optimized_is_deterministic_per_seed_and_unit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 20 steps do not converge; not the point here
        first, again, other = (optimized_prototypes(5, 4, 20, seed=seed) for seed in (1, 1, 2))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert first.shape == (5, 4) and first.dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        double = optimized_prototypes(5, 4, 20, seed=1, device="cpu", dtype=torch.float64)
    assert double.dtype == torch.float64 and torch.equal(double.float(), first)
    np.testing.assert_allclose(np.linalg.norm(first.double().numpy(), axis=1), 1.0, rtol=0, atol=1e-6)


def test_optimized_warns_when_not_converged():
    with pytest.warns(UserWarning, match="increase `steps`"):
        optimized_prototypes(4, 3, 3, seed=0)


def test_optimized_runs_under_no_grad_and_inference_mode():
    with torch.no_grad():
        a = optimized_prototypes(5, 2, 10, seed=3)
    with torch.inference_mode():
        b = optimized_prototypes(5, 2, 10, seed=3)
    assert torch.equal(a, b)


@pytest.mark.parametrize(("num_classes", "dim", "seed"), [(4, 3, 0), (5, 10, 0)])
def test_optimized_reaches_simplex_when_possible(num_classes, dim, seed):
    # Theorem 3.2: for k <= d + 1 the optimum of L_alpha is the regular simplex (k = d + 1: tetrahedron).
    prototypes = optimized_prototypes(num_classes, dim, FAST_STEPS, seed=seed, lr=FAST_LR)
    assert simplex_gram_deviation_loop(prototypes) < OPTIMUM_ATOL


@pytest.mark.parametrize(("num_classes", "seed"), [(5, 0)])
def test_optimized_regular_polygon_on_circle(num_classes, seed):
    # Best packing of k > 3 points on S^1: consecutive angles 2*pi/k, max cosine cos(2*pi/k).
    prototypes = optimized_prototypes(num_classes, 2, FAST_STEPS, seed=seed, lr=FAST_LR).double().numpy()
    angles = np.sort(np.arctan2(prototypes[:, 1], prototypes[:, 0]))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
    np.testing.assert_allclose(gaps, 2 * np.pi / num_classes, atol=1e-3)
    expected = math.cos(2 * math.pi / num_classes)
    assert max_cosine(torch.from_numpy(prototypes)) == pytest.approx(expected, abs=OPTIMUM_ATOL)


def test_optimized_octahedron():
    # Best packing of 6 points on S^2: the octahedron, max cosine 0; each vertex has one antipode.
    prototypes = optimized_prototypes(6, 3, FAST_STEPS, seed=0, lr=FAST_LR).double()
    gram = (prototypes @ prototypes.T).numpy()
    off_diagonal = gram[~np.eye(6, dtype=bool)].reshape(6, 5)
    assert off_diagonal.max() == pytest.approx(0.0, abs=OPTIMUM_ATOL)
    np.testing.assert_allclose(np.sort(off_diagonal, axis=1), np.tile([-1, 0, 0, 0, 0], (6, 1)), atol=OPTIMUM_ATOL)


def test_optimized_nonnegative_features():
    # Table 7 use_relu: the features are non-negative, so for k <= d they end orthonormal with disjoint
    # supports, and the prototypes are the simplex w_i ∝ z_i - mean(z): still pairwise cosine -1/(k-1),
    # and the positive part of w_i is ∝ z_i, so positive parts of different prototypes do not overlap.
    num_classes, dim = 4, 32
    prototypes = optimized_prototypes(num_classes, dim, FAST_STEPS, nonnegative=True, seed=0, lr=FAST_LR).double()
    assert simplex_gram_deviation_loop(prototypes) < OPTIMUM_ATOL
    positive = prototypes.clamp(min=0)
    positive = positive / positive.norm(dim=1, keepdim=True)
    overlap = positive @ positive.T
    overlap.fill_diagonal_(0.0)
    assert overlap.max() < OPTIMUM_ATOL
    # A simplex in a generic orientation has no such structure: the check can tell the variants apart.
    plain = simplex_prototypes(num_classes, dim, seed=0).double().clamp(min=0)
    plain = plain / plain.norm(dim=1, keepdim=True)
    plain_overlap = plain @ plain.T
    plain_overlap.fill_diagonal_(0.0)
    assert plain_overlap.max() > 0.1


# ---------------------------------------------------------------------------------- dispatch
def test_generate_auto_uses_closed_form_within_limit():
    assert resolve_method(4, 3) == "closed_form"
    assert torch.equal(generate_prototypes(4, 3), simplex_prototypes(4, 3))
    assert torch.equal(generate_prototypes(10, 20, seed=4), simplex_prototypes(10, 20, 4))
    assert torch.equal(generate_prototypes(4, 3, method="closed_form", seed=1), simplex_prototypes(4, 3, 1))


def test_generate_auto_uses_optimized_beyond_limit_or_nonnegative():
    assert resolve_method(5, 2) == "optimized"
    assert resolve_method(3, 8, nonnegative=True) == "optimized"
    assert resolve_method(3, 8, method="optimized") == "optimized"
    assert torch.equal(generate_prototypes(5, 2, seed=2, steps=15), optimized_prototypes(5, 2, 15, seed=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = generate_prototypes(3, 8, nonnegative=True, seed=2, steps=15)
        expected = optimized_prototypes(3, 8, 15, nonnegative=True, seed=2)
        forced = generate_prototypes(3, 8, method="optimized", seed=2, steps=15)
        forced_expected = optimized_prototypes(3, 8, 15, seed=2)
    assert torch.equal(got, expected)
    assert torch.equal(forced, forced_expected)
    assert not torch.equal(got, forced)  # the ReLU changes the result


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "simplex"}, "`method` in"),
        ({"method": "closed_form", "nonnegative": True}, "nonnegative=False` for method='closed_form'"),
        ({"steps": 0}, "`steps`"),
        ({"nonnegative": "yes"}, "`nonnegative`"),
    ],
)
def test_generate_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_prototypes(3, 4, **kwargs)


# ------------------------------------------------------------------------------- diagnostics
def min_angle_loop(rows: np.ndarray) -> float:
    best = math.inf
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            cos = float(np.dot(rows[i], rows[j]) / (np.linalg.norm(rows[i]) * np.linalg.norm(rows[j])))
            best = min(best, math.degrees(math.acos(max(-1.0, min(1.0, cos)))))
    return best


@pytest.mark.parametrize(("num_classes", "dim", "seed"), [(2, 3, 0), (10, 16, 1), (40, 8, 2)])
def test_min_pairwise_angle_against_loop(num_classes, dim, seed):
    rows = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rows = rows * torch.rand(num_classes, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 5
    assert min_pairwise_angle(rows) == pytest.approx(min_angle_loop(rows.numpy()), abs=1e-9)
    assert min_pairwise_angle(rows.float()) == pytest.approx(min_angle_loop(rows.numpy()), abs=1e-3)


@pytest.mark.parametrize(("num_classes", "dim"), [(2, 1), (4, 3), (100, 128)])
def test_min_pairwise_angle_of_simplex(num_classes, dim):
    expected = math.degrees(math.acos(-1.0 / (num_classes - 1)))
    assert min_pairwise_angle(simplex_prototypes(num_classes, dim, seed=0)) == pytest.approx(expected, abs=1e-3)


def test_min_pairwise_angle_edge_cases():
    collapsed = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    assert min_pairwise_angle(collapsed) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(min_pairwise_angle(torch.tensor([[1.0, 0.0], [0.0, 0.0]])))
    with pytest.raises(ValueError, match=r"shape \(num_classes >= 2, dim >= 1\)"):
        min_pairwise_angle(torch.ones(3))
    with pytest.raises(ValueError, match=r"shape"):
        min_pairwise_angle(torch.ones(1, 3))
    with pytest.raises(ValueError, match="floating-point"):
        min_pairwise_angle(torch.ones(3, 3, dtype=torch.int64))


# ------------------------------------------------------------------------------------- files
def test_save_load_round_trip(tmp_path):
    prototypes = simplex_prototypes(7, 9, seed=3)
    path = tmp_path / "prototypes.pt"
    save_prototypes(path, prototypes, method="closed_form")
    loaded = load_prototypes(path, num_classes=7, dim=9)
    assert torch.equal(loaded, prototypes)
    raw = torch.load(path, weights_only=True)
    assert (raw["num_classes"], raw["dim"], raw["method"]) == (7, 9, "closed_form")
    assert not (tmp_path / "prototypes.pt.tmp").exists()
    double = simplex_prototypes(3, 2, dtype=torch.float64)
    save_prototypes(tmp_path / "double.pt", double)
    assert torch.equal(load_prototypes(str(tmp_path / "double.pt")), double)


def test_load_rejects_corrupt_and_foreign_files(tmp_path):
    good = tmp_path / "good.pt"
    save_prototypes(good, simplex_prototypes(4, 3))
    data = good.read_bytes()

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    for path in (truncated, garbage):
        with pytest.raises(ValueError, match="corrupt, truncated or not a torch file"):
            load_prototypes(path)

    foreign = tmp_path / "foreign.pt"
    torch.save(simplex_prototypes(4, 3), foreign)
    with pytest.raises(ValueError, match="written by lt_noise.prototypes.save_prototypes"):
        load_prototypes(foreign)

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_prototypes(tmp_path / "missing.pt")


def _write_raw(path, **overrides):
    payload = {"format": "lt_noise.prototypes", "version": 1, "num_classes": 4, "dim": 3, "method": "x"}
    payload["prototypes"] = simplex_prototypes(4, 3)
    payload.update(overrides)
    torch.save(payload, path)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"num_classes": 5}, r"header's shape \(5, 3\)"),
        ({"prototypes": 2 * simplex_prototypes(4, 3)}, "unit-norm rows"),
        ({"prototypes": torch.full((4, 3), math.nan)}, "finite"),
        ({"prototypes": torch.ones(4, 3, dtype=torch.int64)}, "floating-point"),
        ({"version": 99}, "version 1"),
    ],
)
def test_load_validates_contents(tmp_path, overrides, match):
    path = tmp_path / "bad.pt"
    _write_raw(path, **overrides)
    with pytest.raises(ValueError, match=match):
        load_prototypes(path)


def test_load_rejects_incomplete_or_unlabelled_dicts(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"format": "lt_noise.prototypes", "version": 1, "prototypes": simplex_prototypes(4, 3)}, path)
    with pytest.raises(ValueError, match=r"\['dim', 'method', 'num_classes'\] are missing"):
        load_prototypes(path)
    torch.save({"prototypes": simplex_prototypes(4, 3)}, path)
    with pytest.raises(ValueError, match=r"holds dict with keys \['prototypes'\]"):
        load_prototypes(path)


def test_load_checks_expected_shape(tmp_path):
    path = tmp_path / "p.pt"
    save_prototypes(path, simplex_prototypes(4, 3))
    with pytest.raises(ValueError, match="num_classes=10 rows, but got 4"):
        load_prototypes(path, num_classes=10)
    with pytest.raises(ValueError, match="dim=8 columns, but got 3"):
        load_prototypes(path, dim=8)


def test_save_rejects_bad_prototypes_and_writes_nothing(tmp_path):
    path = tmp_path / "p.pt"
    with pytest.raises(ValueError, match="unit-norm rows"):
        save_prototypes(path, torch.ones(4, 3))
    with pytest.raises(ValueError, match="shape"):
        save_prototypes(path, torch.ones(3))
    with pytest.raises(ValueError, match="torch.Tensor"):
        save_prototypes(path, np.ones((4, 3)))
    assert list(tmp_path.iterdir()) == []


def _brute_force_margins_2d(prototypes, points=200_001):
    """Every unit non-negative z = (cos t, sin t), t in [0, pi/2]: the exact margins up to the grid."""
    t = torch.linspace(0, math.pi / 2, points, dtype=torch.float64)
    z = torch.stack([t.cos(), t.sin()], dim=1)
    cosine = z @ torch.nn.functional.normalize(prototypes.double(), dim=1).T  # (points, k)
    k = prototypes.shape[0]
    best = []
    for y in range(k):
        rest = torch.cat([cosine[:, :y], cosine[:, y + 1 :]], dim=1).max(dim=1).values
        best.append(float((cosine[:, y] - rest).max()))
    return torch.tensor(best, dtype=torch.float64)


def test_nonnegative_margins_of_known_cases():
    # The standard basis is non-negative already: z = e_y reaches margin 1, and nothing reaches more.
    torch.testing.assert_close(nonnegative_margins(torch.eye(4, 6)), torch.ones(4, dtype=torch.float64), atol=1e-3, rtol=0)
    # One dimension: the only unit non-negative feature is +1, so w = +1 wins by 2 and w = -1 loses by 2.
    torch.testing.assert_close(nonnegative_margins(torch.tensor([[1.0], [-1.0]])), torch.tensor([2.0, -2.0], dtype=torch.float64))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nonnegative_margins_reach_the_brute_force_optimum_in_two_dimensions(seed):
    prototypes = torch.randn(3, 2, generator=torch.Generator().manual_seed(seed))
    expected = _brute_force_margins_2d(prototypes)
    got = nonnegative_margins(prototypes)
    assert (got <= expected + 1e-9).all()  # a lower bound, read exactly at a feasible z
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=0)


def test_the_simplex_leaves_less_margin_to_relu_features_than_the_relu_prototypes():
    simplex = generate_prototypes(10, 16, seed=0)
    relu = generate_prototypes(10, 16, nonnegative=True, seed=0, steps=3000)
    assert nonnegative_margins(simplex).max() < 1 + 1 / 9 - 0.1  # Lemma 3.1's optimum is out of reach
    assert nonnegative_margins(relu).min() > nonnegative_margins(simplex).mean()
