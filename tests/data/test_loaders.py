import torch

from lt_noise.data.loaders import EpochSampler, EvalSampler, make_loader


def _indices(sampler):
    return [index for index, _ in sampler]


def test_epoch_sampler_is_a_seeded_permutation_per_epoch():
    sampler = EpochSampler(range(50), seed=3, num_replicas=1, rank=0)
    sampler.set_epoch(0)
    epoch0 = _indices(sampler)
    sampler.set_epoch(1)
    epoch1 = _indices(sampler)
    assert sorted(epoch0) == list(range(50)) and sorted(epoch1) == list(range(50))
    assert epoch0 != epoch1
    again = EpochSampler(range(50), seed=3, num_replicas=1, rank=0)
    again.set_epoch(1)
    assert _indices(again) == epoch1
    # independent reference: torch's generator seeded with seed + epoch
    generator = torch.Generator().manual_seed(3 + 1)
    assert epoch1 == torch.randperm(50, generator=generator).tolist()


def test_epoch_sampler_yields_the_epoch_with_each_index():
    sampler = EpochSampler(range(5), seed=0, num_replicas=1, rank=0)
    sampler.set_epoch(7)
    assert {epoch for _, epoch in sampler} == {7}


def test_two_rank_global_batches_equal_the_one_rank_batches_of_double_size():
    n, batch = 40, 4
    single = EpochSampler(range(n), seed=9, num_replicas=1, rank=0)
    ranks = [EpochSampler(range(n), seed=9, num_replicas=2, rank=r) for r in range(2)]
    for s in (single, *ranks):
        s.set_epoch(2)
    order = _indices(single)
    shards = [_indices(r) for r in ranks]
    for k in range(n // (2 * batch)):
        global_batch = shards[0][k * batch : (k + 1) * batch] + shards[1][k * batch : (k + 1) * batch]
        assert sorted(global_batch) == sorted(order[k * 2 * batch : (k + 1) * 2 * batch])


def test_eval_sampler_counts_every_sample_exactly_once_without_padding():
    n = 11
    shards = [list(EvalSampler(range(n), num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(n))
    assert [len(EvalSampler(range(n), num_replicas=3, rank=r)) for r in range(3)] == [4, 4, 3]


def test_make_loader_rejects_a_non_positive_batch_size():
    import pytest

    with pytest.raises(ValueError, match="batch_size"):
        make_loader(list(range(3)), batch_size=0, train=True)


def test_class_balanced_sampling_draws_classes_uniformly_and_replays_per_epoch():
    from lt_noise.data.loaders import ClassAwareSampler

    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    sampler = ClassAwareSampler(labels, seed=4, power=0.0, num_replicas=1, rank=0)
    sampler.set_epoch(3)
    drawn = torch.tensor([index for index, _ in sampler])
    assert len(drawn) == 1000
    shares = torch.bincount(labels[drawn], minlength=3).double() / 1000
    torch.testing.assert_close(shares, torch.full((3,), 1 / 3, dtype=torch.double), atol=0.05, rtol=0)
    again = ClassAwareSampler(labels, seed=4, power=0.0, num_replicas=1, rank=0)
    again.set_epoch(3)
    assert [i for i, _ in again] == drawn.tolist()
    square_root = ClassAwareSampler(labels, seed=4, power=0.5, num_replicas=1, rank=0)
    shares = torch.bincount(labels[[i for i, _ in square_root]], minlength=3).double() / 1000
    expected = torch.tensor([30.0, 90**0.5, 10**0.5], dtype=torch.double)
    torch.testing.assert_close(shares, expected / expected.sum(), atol=0.05, rtol=0)


def test_class_aware_shards_interleave_the_single_process_draws():
    from lt_noise.data.loaders import ClassAwareSampler

    labels = torch.arange(30) % 3
    single = [i for i, _ in ClassAwareSampler(labels, seed=1, num_replicas=1, rank=0)]
    shards = [[i for i, _ in ClassAwareSampler(labels, seed=1, num_replicas=2, rank=r)] for r in range(2)]
    assert shards[0] == single[0::2] and shards[1] == single[1::2]
