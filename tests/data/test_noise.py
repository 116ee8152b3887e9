"""Tests of lt_noise.data.noise against references written from the papers' and codebases' descriptions.

Statistical checks use a fixed seed and a 5-sigma binomial band: wide enough never to flake, narrow
enough that each plausible mistake (drawing the true class in symmetric noise, excluding it in uniform
or class-frequency noise, flipping unmapped classes) moves the statistic far outside it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lt_noise.data import noise

SIGMAS = 5.0  # width of the binomial acceptance band
RATE = 0.4  # a noise rate of the papers' tables
LT_COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT, ratio 100 (LDAM-DRW)


def _shuffled(counts, seed=123):
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


@pytest.fixture
def balanced():
    return _shuffled([2000] * 10)


@pytest.fixture
def long_tailed():
    return _shuffled(LT_COUNTS)


def assert_binomial(successes, trials, p, what=""):
    """``successes`` is a plausible Binomial(trials, p) draw (within SIGMAS standard deviations)."""
    sd = math.sqrt(trials * p * (1 - p))
    assert abs(successes - trials * p) <= SIGMAS * sd + 1, (
        f"{what}: {successes} of {trials}, expected {trials * p:.1f} +- {SIGMAS * sd:.1f}"
    )


def assert_transition(clean, noisy, expected, what):
    """Each empirical P(noisy = j | clean = i) is within the binomial band of ``expected[i, j]``."""
    for i in range(expected.shape[0]):
        row = noisy[clean == i]
        for j in range(expected.shape[1]):
            assert_binomial(int(np.count_nonzero(row == j)), len(row), expected[i, j], f"{what} {i}->{j}")


# --------------------------------------------------------------------------------------------------
# symmetric
@pytest.mark.parametrize("fixture", ["balanced", "long_tailed"])
def test_symmetric_realized_rate_and_targets(fixture, request):
    clean = request.getfixturevalue(fixture)
    num_classes = 10
    noisy = noise.symmetric_noise(clean, num_classes, RATE, seed=0)
    # Reference transition matrix (APL / PAL): 1 - rate on the diagonal, rate / (C - 1) elsewhere.
    expected = np.full((num_classes, num_classes), RATE / (num_classes - 1))
    np.fill_diagonal(expected, 1 - RATE)
    assert_transition(clean, noisy, expected, "symmetric")
    assert_binomial(int(np.count_nonzero(noisy != clean)), len(clean), RATE, "overall flip rate")


def test_symmetric_two_classes_always_flips_to_the_other():
    clean = _shuffled([3000, 3000])
    noisy = noise.symmetric_noise(clean, 2, 0.3, seed=1)
    changed = noisy != clean
    assert np.array_equal(noisy[changed], 1 - clean[changed])
    assert_binomial(int(changed.sum()), len(clean), 0.3, "flip rate")


def _apl_symmetric_reference(clean, num_classes, rate, seed):
    """APL's symmetric procedure as a slow loop: per class pick int(rate * n_c) samples without
    replacement (legacy global-style RandomState), then give each a uniform choice among the other
    classes, in the order picked."""
    state = np.random.RandomState(seed)
    noisy = clean.astype(np.int64).copy()
    picked = []
    for c in range(num_classes):
        members = np.where(clean == c)[0]
        picked.extend(state.choice(members, int(rate * len(members)), replace=False).tolist())
    for i in picked:
        others = [k for k in range(num_classes) if k != clean[i]]
        noisy[i] = state.choice(others)
    return noisy


@pytest.mark.parametrize("fixture", ["balanced", "long_tailed"])
@pytest.mark.parametrize("rate", [0.2, 0.4, 0.8])
def test_symmetric_exact_counts_and_apl_draws(fixture, rate, request):
    clean = request.getfixturevalue(fixture)
    noisy = noise.symmetric_noise(clean, 10, rate, seed=7, exact=True)
    for c in range(10):
        members = clean == c
        assert np.count_nonzero(noisy[members] != c) == int(rate * members.sum())
    assert np.array_equal(noisy, _apl_symmetric_reference(clean, 10, rate, seed=7))


# --------------------------------------------------------------------------------------------------
# uniform
@pytest.mark.parametrize("fixture", ["balanced", "long_tailed"])
def test_uniform_realized_rate_and_targets(fixture, request):
    clean = request.getfixturevalue(fixture)
    num_classes = 10
    noisy = noise.uniform_noise(clean, num_classes, RATE, seed=0)
    # Reference (DivideMix / Dynamic Loss uniform_mix_C): rate / C everywhere plus 1 - rate on the diagonal.
    expected = np.full((num_classes, num_classes), RATE / num_classes) + (1 - RATE) * np.eye(num_classes)
    assert_transition(clean, noisy, expected, "uniform")
    realized = RATE * (num_classes - 1) / num_classes
    assert_binomial(int(np.count_nonzero(noisy != clean)), len(clean), realized, "realized flip rate")


# --------------------------------------------------------------------------------------------------
# asymmetric
def _balanced_for(flip_map_name):
    num_classes = 100 if flip_map_name.startswith("cifar100") else 10
    return _shuffled([3000 if num_classes == 10 else 300] * num_classes), num_classes


EXPECTED_MAPS = {
    # Written from the papers' text: PAL appendix "Noise generation" / APL.
    "mnist": {7: 1, 2: 7, 5: 6, 6: 5, 3: 8},
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # GCE (Zhang & Sabuncu 2018): boot->sneaker, sneaker->sandal, pullover->shirt, coat<->dress.
    "fashion_mnist": {9: 7, 7: 5, 2: 6, 4: 3, 3: 4},
}


def test_named_flip_maps():
    assert {name: dict(m) for name, m in noise.FLIP_MAPS.items()} == EXPECTED_MAPS
    for name, expected in EXPECTED_MAPS.items():
        assert noise.resolve_flip_map(name) == expected
    assert noise.resolve_flip_map("cifar100_superclass") == noise.cifar100_superclass_flip_map()
    assert noise.resolve_flip_map("cifar100_block") == noise.cifar100_block_flip_map()


@pytest.mark.parametrize("name", noise.FLIP_MAP_NAMES)
def test_asymmetric_changes_only_mapped_classes_to_their_target(name):
    clean, num_classes = _balanced_for(name)
    flip_map = noise.resolve_flip_map(name)
    noisy = noise.asymmetric_noise(clean, name, RATE, seed=3, num_classes=num_classes)
    changed = noisy != clean
    sources = np.isin(clean, list(flip_map))
    assert not changed[~sources].any()
    assert np.array_equal(noisy[changed], [flip_map[c] for c in clean[changed]])
    for source in flip_map:
        members = clean == source
        assert_binomial(int(changed[members].sum()), int(members.sum()), RATE, f"{name} {source}")


@pytest.mark.parametrize("name", noise.FLIP_MAP_NAMES)
def test_asymmetric_exact_counts(name):
    clean, num_classes = _balanced_for(name)
    clean = clean[: len(clean) - 7]  # uneven class sizes
    flip_map = noise.resolve_flip_map(name)
    noisy = noise.asymmetric_noise(clean, name, 0.3, seed=3, exact=True, num_classes=num_classes)
    changed = noisy != clean
    assert not changed[~np.isin(clean, list(flip_map))].any()
    assert np.array_equal(noisy[changed], [flip_map[c] for c in clean[changed]])
    for source in flip_map:
        members = clean == source
        assert changed[members].sum() == int(0.3 * members.sum())


def test_asymmetric_exact_follows_apl_draw_order_on_clean_labels(long_tailed):
    """Reference: RandomState(seed); for each source in map order, choice(clean members, int(rate*n))."""
    state = np.random.RandomState(11)
    expected = long_tailed.copy()
    for source, target in {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}.items():
        members = np.where(long_tailed == source)[0]
        expected[state.choice(members, int(RATE * len(members)), replace=False)] = target
    assert np.array_equal(noise.asymmetric_noise(long_tailed, "cifar10", RATE, 11, exact=True), expected)


def test_asymmetric_chains_do_not_compound():
    clean = _shuffled([4000] * 10)
    noisy = noise.asymmetric_noise(clean, "mnist", 0.9, seed=0)  # 2 -> 7 and 7 -> 1
    assert set(np.unique(noisy[clean == 2]).tolist()) == {2, 7}
    assert set(np.unique(noisy[clean == 7]).tolist()) == {7, 1}


def test_asymmetric_accepts_a_plain_dict(balanced):
    noisy = noise.asymmetric_noise(balanced, {0: 1}, 0.5, seed=0)
    changed = noisy != balanced
    assert set(balanced[changed].tolist()) == {0} and set(noisy[changed].tolist()) == {1}


# --------------------------------------------------------------------------------------------------
# CIFAR-100 groupings, checked against class *names* (an independent statement of the grouping)
CIFAR100_FINE_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray "
    "road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar "
    "sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle "
    "wardrobe whale willow_tree wolf woman worm"
).split()

# https://www.cs.toronto.edu/~kriz/cifar.html
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}


def _superclass_of_fine_index():
    assert CIFAR100_FINE_NAMES == sorted(CIFAR100_FINE_NAMES) and len(CIFAR100_FINE_NAMES) == 100
    coarse_index = {name: i for i, name in enumerate(sorted(CIFAR100_SUPERCLASSES))}
    of_name = {fine: coarse_index[coarse] for coarse, fines in CIFAR100_SUPERCLASSES.items() for fine in fines.split()}
    return [of_name[name] for name in CIFAR100_FINE_NAMES]


def _cycles(flip_map):
    seen, cycles = set(), []
    for start in flip_map:
        if start in seen:
            continue
        cycle, node = [], start
        while node not in seen:
            seen.add(node)
            cycle.append(node)
            node = flip_map[node]
        cycles.append(cycle)
    return cycles


def test_cifar100_coarse_table_matches_class_names():
    assert list(noise.CIFAR100_COARSE_LABELS) == _superclass_of_fine_index()


def test_cifar100_superclass_flip_map():
    coarse = _superclass_of_fine_index()
    flip_map = noise.cifar100_superclass_flip_map()
    assert sorted(flip_map) == list(range(100))
    assert all(coarse[s] == coarse[t] and s != t for s, t in flip_map.items())
    cycles = _cycles(flip_map)
    assert len(cycles) == 20 and all(len(cycle) == 5 for cycle in cycles)
    for group in range(20):  # "the next" class of the superclass, in increasing index, wrapping around
        members = [i for i in range(100) if coarse[i] == group]
        assert [flip_map[m] for m in members] == members[1:] + members[:1]


def test_cifar100_block_flip_map():
    flip_map = noise.cifar100_block_flip_map()
    assert sorted(flip_map) == list(range(100))
    assert all(s // 5 == t // 5 and s != t for s, t in flip_map.items())
    cycles = _cycles(flip_map)
    assert len(cycles) == 20 and all(len(cycle) == 5 for cycle in cycles)
    assert [flip_map[i] for i in range(10)] == [1, 2, 3, 4, 0, 6, 7, 8, 9, 5]
    assert flip_map != noise.cifar100_superclass_flip_map()


# --------------------------------------------------------------------------------------------------
# class frequency (Dynamic Loss CIFAR-N-LT)
def test_class_frequency_transition_matches_the_paper(long_tailed):
    num_classes = 10
    noisy = noise.class_frequency_noise(long_tailed, num_classes, RATE, seed=0)
    prior = np.asarray(LT_COUNTS) / sum(LT_COUNTS)
    # "changed to class j with probability rate * N_j / N"; j may be the true class (authors' code).
    expected = (1 - RATE) * np.eye(num_classes) + RATE * prior[None, :]
    assert_transition(long_tailed, noisy, expected, "class_frequency")
    for j in range(num_classes):  # pooled over every other true class: P(noisy = j | clean != j)
        others = long_tailed != j
        assert_binomial(int(np.count_nonzero(noisy[others] == j)), int(others.sum()), RATE * prior[j], f"-> {j}")


def test_class_frequency_uses_the_counts_of_its_input():
    clean = _shuffled([9000, 1000])
    noisy = noise.class_frequency_noise(clean, 3, 0.5, seed=2)  # class 2 is absent: never a target
    assert not np.any(noisy == 2)
    assert_binomial(int(np.count_nonzero(noisy[clean == 1] == 0)), 1000, 0.5 * 0.9, "1 -> 0")


# --------------------------------------------------------------------------------------------------
# shared properties
CALLS = {
    "symmetric": lambda y, s: noise.symmetric_noise(y, 10, RATE, s),
    "symmetric_exact": lambda y, s: noise.symmetric_noise(y, 10, RATE, s, exact=True),
    "uniform": lambda y, s: noise.uniform_noise(y, 10, RATE, s),
    "asymmetric": lambda y, s: noise.asymmetric_noise(y, "cifar10", RATE, s),
    "asymmetric_exact": lambda y, s: noise.asymmetric_noise(y, "cifar10", RATE, s, exact=True),
    "class_frequency": lambda y, s: noise.class_frequency_noise(y, 10, RATE, s),
}


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("name", CALLS)
def test_seeded_and_pure(name, dtype, long_tailed):
    call = CALLS[name]
    clean = long_tailed.astype(dtype)
    before = clean.copy()
    clean.flags.writeable = False  # any in-place write would raise
    first = call(clean, 5)
    assert np.array_equal(clean, before)
    assert first.dtype == np.int64 and first.shape == clean.shape
    assert not np.shares_memory(first, clean)
    assert np.array_equal(first, call(clean, 5))
    assert not np.array_equal(first, call(clean, 6))


@pytest.mark.parametrize("name", CALLS)
def test_zero_rate_is_a_copy(name, balanced):
    kind = name.removesuffix("_exact")
    result = noise.apply_noise(
        balanced, kind=kind, rate=0.0, num_classes=10, seed=0, flip_map="cifar10", exact=name.endswith("_exact")
    )
    assert np.array_equal(result, balanced) and not np.shares_memory(result, balanced)


def test_apply_noise_dispatches(long_tailed):
    kw = {"rate": RATE, "num_classes": 10, "seed": 4}
    assert np.array_equal(
        noise.apply_noise(long_tailed, kind="symmetric", exact=True, **kw),
        noise.symmetric_noise(long_tailed, 10, RATE, 4, exact=True),
    )
    assert np.array_equal(
        noise.apply_noise(long_tailed, kind="uniform", **kw), noise.uniform_noise(long_tailed, 10, RATE, 4)
    )
    assert np.array_equal(
        noise.apply_noise(long_tailed, kind="class_frequency", **kw),
        noise.class_frequency_noise(long_tailed, 10, RATE, 4),
    )
    assert np.array_equal(
        noise.apply_noise(long_tailed, kind="asymmetric", flip_map={3: 5, 5: 3}, **kw),
        noise.asymmetric_noise(long_tailed, {3: 5, 5: 3}, RATE, 4),
    )
    # A dataset's default map may be passed with any kind; only 'asymmetric' uses it.
    assert np.array_equal(
        noise.apply_noise(long_tailed, kind="symmetric", flip_map="cifar10", **kw),
        noise.symmetric_noise(long_tailed, 10, RATE, 4),
    )
    none = noise.apply_noise(long_tailed.astype(np.int16), kind="none", rate=0.0, num_classes=10, seed=0)
    assert none.dtype == np.int64 and np.array_equal(none, long_tailed)


def test_empty_labels():
    empty = np.array([], dtype=np.int64)
    for name, call in CALLS.items():
        assert call(empty, 0).shape == (0,), name


# --------------------------------------------------------------------------------------------------
# errors: every one a ValueError naming the argument and the value
Y = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])

ERRORS = [
    (lambda: noise.symmetric_noise(Y, 10, 1.2, 0), r"Expected argument `rate` in \[0, 1\), but got 1.2"),
    (lambda: noise.symmetric_noise(Y, 10, 1.0, 0), r"`rate` in \[0, 1\), but got 1.0"),
    (lambda: noise.uniform_noise(Y, 10, -0.1, 0), r"`rate` in \[0, 1\), but got -0.1"),
    (lambda: noise.class_frequency_noise(Y, 10, float("nan"), 0), r"`rate` in \[0, 1\), but got nan"),
    (lambda: noise.symmetric_noise(Y, 10, np.float64(1.5), 0), r"`rate` in \[0, 1\), but got 1.5"),
    (lambda: noise.symmetric_noise(Y, 10, "0.2", 0), r"`rate` in \[0, 1\), but got '0.2'"),
    (lambda: noise.symmetric_noise(Y, 1, 0.2, 0), r"`num_classes` to be an integer >= 2, but got 1"),
    (lambda: noise.uniform_noise(Y, 10.0, 0.2, 0), r"`num_classes` to be an integer >= 2, but got 10.0"),
    (lambda: noise.symmetric_noise(Y, 10, 0.2, -1), r"`seed` to be an integer in \[0, 2\*\*32\), but got -1"),
    (lambda: noise.symmetric_noise(Y, 10, 0.2, 2**32), r"`seed` .* but got 4294967296"),
    (lambda: noise.uniform_noise(Y, 10, 0.2, 1.5), r"`seed` .* but got 1.5"),
    (lambda: noise.symmetric_noise(Y.reshape(2, 5), 10, 0.2, 0), r"`labels` to be a 1-D array .* shape \(2, 5\)"),
    (lambda: noise.symmetric_noise(Y.astype(float), 10, 0.2, 0), r"`labels` to have an integer dtype, but got float64"),
    (lambda: noise.symmetric_noise(Y, 9, 0.2, 0),
     r"`labels` to hold class indices in \[0, 9\), but got values in \[0, 9\]"),
    (lambda: noise.uniform_noise(Y - 1, 10, 0.2, 0), r"`labels` .* but got values in \[-1, 8\]"),
    (lambda: noise.asymmetric_noise(Y - 1, {0: 1}, 0.2, 0), r"`labels` to hold non-negative class indices"),
    (lambda: noise.asymmetric_noise(Y, {0: 12}, 0.2, 0, num_classes=10), r"unknown flip-map class 12"),
    (lambda: noise.asymmetric_noise(Y, {-1: 2}, 0.2, 0), r"`flip_map` .* unknown flip-map class -1"),
    (lambda: noise.asymmetric_noise(Y, "cifar100_block", 0.2, 0, num_classes=10), r"unknown flip-map class 10"),
    (lambda: noise.asymmetric_noise(Y, {3: 3}, 0.2, 0),
     r"`flip_map` to map every class to a different class, but got 3: 3"),
    (lambda: noise.asymmetric_noise(Y, {}, 0.2, 0), r"`flip_map` to map at least one class"),
    (lambda: noise.asymmetric_noise(Y, {0.5: 1}, 0.2, 0), r"`flip_map` to map integer classes"),
    (lambda: noise.asymmetric_noise(Y, [(0, 1)], 0.2, 0), r"`flip_map` to be a dict"),
    (lambda: noise.asymmetric_noise(Y, "cifar", 0.2, 0), r"`flip_map` to be a dict or one of .* but got 'cifar'"),
    (lambda: noise.asymmetric_noise(Y, "mnist", 1.2, 0), r"`rate` in \[0, 1\), but got 1.2"),
    (lambda: noise.apply_noise(Y, kind="sym", rate=0.2, num_classes=10, seed=0), r"`kind` in .* but got 'sym'"),
    (lambda: noise.apply_noise(Y, kind="none", rate=0.2, num_classes=10, seed=0),
     r"`rate` to be 0 when kind='none', but got 0.2"),
    (lambda: noise.apply_noise(Y, kind="uniform", rate=0.2, num_classes=10, seed=0, exact=True),
     r"`exact` to be False for kind='uniform'"),
    (lambda: noise.apply_noise(Y, kind="asymmetric", rate=0.2, num_classes=10, seed=0),
     r"`flip_map` .* for kind='asymmetric', but got None"),
    (lambda: noise.apply_noise(Y, kind="symmetric", rate=0.2, num_classes=10, seed=0, flip_map={1: 99}),
     r"unknown flip-map class 99"),
    (lambda: noise.apply_noise(Y, kind="symmetric", rate=0.2, num_classes=1, seed=0),
     r"`num_classes` to be an integer >= 2, but got 1"),
    (lambda: noise.apply_noise(Y, kind="none", rate=0.0, num_classes=10, seed=-3), r"`seed` .* but got -3"),
]


@pytest.mark.parametrize(("call", "match"), ERRORS)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
