"""The batched in-memory path against independent references: the per-sample pipeline (bit for bit where
no randomness is involved), torchvision's per-image AutoAugment fed the same draws, and window searches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from lt_noise.data.batched import (
    BatchKeySampler,
    BatchTransform,
    InMemoryDataset,
    sample_keys,
    sample_uniforms,
    to_image_batch,
)
from lt_noise.data.datasets import sample_seed
from lt_noise.data.loaders import EpochSampler, EvalSampler
from lt_noise.data.transforms import Cutout, build_eval_transform

MEAN, STD = (0.2860, 0.3, 0.4), (0.3530, 0.2, 0.25)


def _images(n=16, channels=3, side=12, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=(n, channels, side, side), dtype=np.uint8))


def test_keys_are_the_per_sample_seeds():
    rng = np.random.default_rng(1)
    seeds, epochs, index = rng.integers(0, 2**40, 50), rng.integers(0, 500, 50), rng.integers(0, 10**6, 50)
    for s, e, i in zip(seeds.tolist(), epochs.tolist(), index.tolist()):
        assert int(sample_keys(s, np.array([e]), np.array([i]))[0]) == sample_seed(s, e, i)


def test_uniforms_are_uniform_and_independent_of_the_batch():
    keys = sample_keys(3, np.zeros(20000, dtype=np.int64), np.arange(20000))
    u = sample_uniforms(keys)
    assert u.shape == (20000, 10) and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03
    np.testing.assert_array_equal(sample_uniforms(keys[5:6]), u[5:6])


def test_normalisation_is_bit_identical_to_the_per_sample_pipeline():
    images = _images()
    batched = BatchTransform(augment="none", image_size=12, mean=MEAN, std=STD)(images)
    reference = build_eval_transform(image_size=12, mean=MEAN, std=STD)
    expected = torch.stack([reference(img) for img in images])
    assert batched.dtype == torch.float32 and torch.equal(batched, expected)


def test_crop_and_flip_take_a_window_of_the_padded_image_each_offset_equally_often():
    images, pad = _images(n=400, channels=1, side=8, seed=2), 1  # side 8 -> 1 px padding
    keys = sample_keys(0, np.zeros(400, dtype=np.int64), np.arange(400))
    transform = BatchTransform(augment="crop_flip", image_size=8, mean=(0.0,), std=(1 / 255,))
    out = transform(images, keys)  # (x/255 - 0) * 255: the pixel values again
    padded = torch.nn.functional.pad(images.float(), (pad, pad, pad, pad))
    found = np.zeros((2 * pad + 1, 2 * pad + 1, 2))
    for b in range(400):
        matches = [(dy, dx, f) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for f in (0, 1)
                   if torch.allclose(out[b], (lambda w: w.flip(2) if f else w)(padded[b, :, dy:dy + 8, dx:dx + 8]), atol=1e-3)]
        assert matches, f"sample {b}: output is no window of the padded image"
        found[matches[0]] += 1
    assert found.min() > 400 / 18 * 0.4  # all 9 offsets x 2 flips occur, roughly uniformly


def test_cutout_zeroes_the_square_of_the_per_sample_cutout():
    images = _images(n=32, side=10, seed=3)
    keys = sample_keys(5, np.full(32, 2), np.arange(32))
    transform = BatchTransform(augment="none", image_size=10, mean=MEAN, std=STD, cutout=5)
    out = transform(images, keys)
    plain = transform.normalize(images)
    draws = sample_uniforms(keys)
    for b in range(32):
        cy, cx = int(draws[b, 3] * 10), int(draws[b, 4] * 10)
        # The per-sample Cutout with its centre forced to (cy, cx): torch.randint is what it draws.
        calls = iter([cy, cx])
        original = torch.randint
        torch.randint = lambda *a, **k: torch.tensor(next(calls))
        try:
            expected = Cutout(5)(plain[b])
        finally:
            torch.randint = original
        assert torch.equal(out[b], expected)


def test_autoaugment_gives_each_image_torchvisions_transform_for_the_same_draws(monkeypatch):
    images = _images(n=64, side=16, seed=4)
    keys = sample_keys(11, np.full(64, 7), np.arange(64))
    transform = BatchTransform(augment="none", image_size=16, mean=(0.0,) * 3, std=(1 / 255,) * 3, autoaugment="cifar10")
    out = transform(images, keys)
    draws = sample_uniforms(keys)
    policies = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    for b in range(64):
        n = len(policies._policies)
        # torchvision's draws in its order: the sub-policy, then per operation "apply?" and, if it applies
        # with a signed magnitude, the sign; fed from this sample's slots.
        values = iter([draws[b, 6], draws[b, 7], draws[b, 8], draws[b, 9]])
        stage_slots = {}

        def fake_rand(*args, **kwargs):
            return torch.tensor(stage_slots["next"]())

        order = []
        policy = policies._policies[min(int(draws[b, 5] * n), n - 1)]
        for stage, (name, p, _) in enumerate(policy):
            apply_u, sign_u = draws[b, 6 + 2 * stage], draws[b, 7 + 2 * stage]
            order.append(apply_u)
            magnitudes, signed = policies._AUGMENTATION_SPACE[name]
            if apply_u <= p and signed and magnitudes(10, 16, 16) is not None:
                order.append(sign_u)
        stream = iter(order)
        stage_slots["next"] = lambda: next(stream)
        monkeypatch.setattr(torch, "randint", lambda *a, **k: torch.tensor(min(int(draws[b, 5] * n), n - 1)))
        monkeypatch.setattr(torch, "rand", fake_rand)
        expected = policies(images[b])
        monkeypatch.undo()
        assert torch.allclose(out[b], expected.float(), atol=1e-3), f"sample {b}, policy {policy}"
        del values


def test_the_same_key_gives_the_same_view_in_any_batch():
    images = _images(n=20, side=12, seed=5)
    transform = BatchTransform(augment="crop_flip", image_size=12, mean=MEAN, std=STD, autoaugment="cifar10", cutout=4)
    keys = sample_keys(1, np.full(20, 3), np.arange(20))
    whole = transform(images, keys)
    parts = torch.cat([transform(images[:7], keys[:7]), transform(images[7:], keys[7:])])
    assert torch.equal(whole, parts)
    other_epoch = transform(images, sample_keys(1, np.full(20, 4), np.arange(20)))
    assert not torch.equal(whole, other_epoch)


def test_dataset_gathers_views_and_labels_by_index():
    images = _images(n=10, side=12)
    positions, labels = np.array([9, 3, 5, 0]), np.array([1, 0, 2, 2])
    weak = BatchTransform(augment="none", image_size=12, mean=MEAN, std=STD)
    strong = BatchTransform(augment="crop_flip", image_size=12, mean=MEAN, std=STD)
    dataset = InMemoryDataset(images, positions, labels, (weak, strong), seed=4)
    (x_weak, x_strong), y, index = dataset[np.array([[2, 0], [0, 0]])]
    assert torch.equal(x_weak, weak(images[[5, 9]])) and torch.equal(y, torch.tensor([2, 1]))
    assert torch.equal(index, torch.tensor([2, 0])) and x_strong.shape == x_weak.shape
    with pytest.raises(ValueError, match="epoch"):
        dataset[np.array([2, 0])]  # the strong view needs the epoch
    evaluation = InMemoryDataset(images, positions, labels, weak)
    x, y, _ = evaluation[np.array([1, 3])]
    assert torch.equal(x, weak(images[[3, 0]]))


def test_batch_sampler_groups_the_epoch_samplers_keys_and_forwards_set_epoch():
    base = EpochSampler(range(10), seed=3, num_replicas=2, rank=1)
    sampler = BatchKeySampler(base, 2)
    sampler.set_epoch(4)
    batches = list(sampler)
    base.set_epoch(4)
    assert np.concatenate(batches).tolist() == [list(k) for k in base]
    assert len(batches) == len(sampler) == 3 and all(k[1] == 4 for b in batches for k in b)
    assert len(BatchKeySampler(EvalSampler(range(10)), 4, drop_last=True)) == 2


def test_in_memory_images_are_converted_once_to_nchw_uint8():
    grey = np.zeros((3, 5, 4), dtype=np.uint8)
    assert to_image_batch(grey).shape == (3, 1, 5, 4)
    assert to_image_batch(np.zeros((3, 5, 4, 3), dtype=np.uint8)).shape == (3, 3, 5, 4)
    with pytest.raises(ValueError, match="uint8"):
        to_image_batch(np.zeros((3, 5, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="batched path"):
        BatchTransform(augment="imagenet", image_size=8, mean=(0.5,), std=(0.5,))
