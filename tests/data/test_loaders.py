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
