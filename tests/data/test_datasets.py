import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from lt_noise.data.datasets import IndexedDataset, sample_seed, to_image_tensor


def _dataset(transform):
    images = np.arange(8 * 6 * 6, dtype=np.uint8).reshape(8, 6, 6)
    return IndexedDataset(images, positions=np.array([7, 3, 5]), labels=np.array([2, 0, 1]), transform=transform, seed=11)


def test_returns_image_observed_label_and_training_index():
    dataset = _dataset(None)
    x, y, index = dataset[1]
    assert (x, y, index)[1:] == (0, 1)
    expected = np.arange(8 * 6 * 6, dtype=np.uint8).reshape(8, 6, 6)[3]
    torch.testing.assert_close(x, torch.from_numpy(expected).unsqueeze(0))
    assert len(dataset) == 3


def test_keyed_augmentation_is_a_function_of_seed_epoch_and_index():
    crop = v2.RandomCrop(6, padding=3)
    dataset = _dataset(crop)
    first = dataset[(2, 4)][0]
    torch.manual_seed(123)  # the caller's RNG state must not matter
    again = dataset[(2, 4)][0]
    torch.testing.assert_close(first, again)
    views = {tuple(dataset[(2, epoch)][0].flatten().tolist()) for epoch in range(12)}
    assert len(views) > 1, "different epochs must draw different augmentations"


def test_keyed_augmentation_leaves_the_global_rng_untouched():
    dataset = _dataset(v2.RandomHorizontalFlip())
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    dataset[(0, 1)]
    torch.testing.assert_close(torch.rand(3), expected)


def test_tuple_transform_gives_one_view_per_transform():
    dataset = _dataset((v2.Identity(), v2.RandomHorizontalFlip(p=1.0)))
    (weak, strong), _, _ = dataset[(0, 0)]
    torch.testing.assert_close(strong, weak.flip(-1))


def test_sample_seeds_differ_across_each_coordinate():
    base = sample_seed(0, 0, 0)
    assert len({base, sample_seed(1, 0, 0), sample_seed(0, 1, 0), sample_seed(0, 0, 1)}) == 4
    assert 0 <= base < 2**63


def test_to_image_tensor_layouts():
    hwc = np.zeros((4, 5, 3), dtype=np.uint8)
    hwc[1, 2, 0] = 9
    chw = to_image_tensor(hwc)
    assert chw.shape == (3, 4, 5) and chw[0, 1, 2] == 9
    assert to_image_tensor(np.zeros((4, 5), dtype=np.uint8)).shape == (1, 4, 5)
    with pytest.raises(ValueError, match="Expected an image of shape"):
        to_image_tensor(np.zeros((2, 2, 2, 2), dtype=np.uint8))


def test_mismatched_positions_and_labels_are_rejected():
    with pytest.raises(ValueError, match="equal length"):
        IndexedDataset(np.zeros((3, 2, 2), dtype=np.uint8), np.arange(3), np.arange(2))


def test_resize_crop_flip_gives_the_crop_size():
    from lt_noise.data.transforms import build_train_transform

    transform = build_train_transform(augment="resize_crop_flip", image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    out = transform(torch.zeros(3, 50, 70, dtype=torch.uint8))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_main_process_transforms_restore_the_thread_count():
    threads = torch.get_num_threads()
    _dataset(v2.RandomHorizontalFlip())[(0, 0)]
    assert torch.get_num_threads() == threads
