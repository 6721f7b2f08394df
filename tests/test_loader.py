"""imgclf.data.loader: the in-memory BatchLoader and its tensor augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgclf.data.loader import Augment, BatchLoader, random_cutout, random_flip, random_translate


def _indexed(n: int, size: int = 6, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Images whose every pixel holds the image's index, so a batch tells which samples it holds."""
    images = np.repeat(np.arange(n, dtype=np.uint8), channels * size * size).reshape(n, channels, size, size)
    return images, np.arange(n) % 3


def _epoch(loader: BatchLoader) -> list[np.ndarray]:
    return [x[:, 0, 0, 0].numpy().copy() for x, _ in loader]


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (9, 3), (1, 4), (50, 7)])
def test_every_sample_once_per_epoch(n, batch_size):
    images, labels = _indexed(n)
    loader = BatchLoader(images, labels, batch_size, shuffle=True, seed=1)
    batches = list(loader)
    assert len(batches) == len(loader) == -(-n // batch_size)
    seen = np.concatenate([x[:, 0, 0, 0].numpy() for x, _ in batches])
    assert sorted(seen.tolist()) == list(range(n))
    for x, y in batches:  # labels travel with their images
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        np.testing.assert_array_equal(y.numpy(), labels[x[:, 0, 0, 0].numpy()])


def test_drop_last():
    images, labels = _indexed(10)
    loader = BatchLoader(images, labels, 3, shuffle=True, drop_last=True)
    batches = list(loader)
    assert len(batches) == len(loader) == 3 and all(len(y) == 3 for _, y in batches)


def test_no_shuffle_keeps_order():
    images, labels = _indexed(7)
    assert np.concatenate(_epoch(BatchLoader(images, labels, 3))).tolist() == list(range(7))


def test_same_seed_and_epoch_same_batches_other_epoch_other_order():
    images, labels = _indexed(40)
    aug = Augment(flip=True, translate=1, cutout=2)
    a = BatchLoader(images, labels, 8, shuffle=True, augment=aug, seed=3)
    b = BatchLoader(images, labels, 8, shuffle=True, augment=aug, seed=3)
    first_a, first_b = [x.clone() for x, _ in a], [x.clone() for x, _ in b]
    assert all(torch.equal(x, y) for x, y in zip(first_a, first_b, strict=True))  # pixels too, not only order
    second = _epoch(a)  # iterating again moves to the next epoch
    assert not np.array_equal(np.concatenate(second), np.concatenate([x[:, 0, 0, 0].numpy() for x in first_a]))
    resumed = BatchLoader(images, labels, 8, shuffle=True, augment=aug, seed=3)
    resumed.set_epoch(1)  # a run resumed at epoch 1 sees what an uninterrupted one saw
    assert all(np.array_equal(x, y) for x, y in zip(second, _epoch(resumed), strict=True))
    c = BatchLoader(images, labels, 8, shuffle=True, seed=4)
    assert not np.array_equal(np.concatenate(_epoch(c)), np.concatenate([x[:, 0, 0, 0].numpy() for x in first_a]))


def test_translate_keeps_shape_and_takes_values_from_the_image():
    constant = np.full((8, 3, 10, 12), 77, np.uint8)
    loader = BatchLoader(constant, np.zeros(8), 4, shuffle=True, augment=Augment(translate=3))
    for x, _ in loader:
        assert x.shape == (4, 3, 10, 12) and x.dtype == torch.uint8
        assert (x == 77).all()  # reflect padding: no zeros or foreign values come in


def test_translate_shifts_within_bounds():
    gen = torch.Generator().manual_seed(0)
    ramp = torch.arange(10, dtype=torch.int64).repeat(10, 1)[None, None].repeat(64, 1, 1, 1)  # value = column
    padded = torch.nn.functional.pad(ramp.float(), (2, 2, 2, 2), mode="reflect").long()
    out = random_translate(padded, (10, 10), 2, gen)
    assert out.shape == ramp.shape
    interior = out[..., 4:6, 4:6] - ramp[..., 4:6, 4:6]  # away from the border: a pure shift
    shifts = interior[:, 0, 0, 0]
    assert shifts.abs().max() <= 2 and len(set(shifts.tolist())) > 1
    assert (interior == shifts[:, None, None, None]).all()


def test_flip_flips_about_half():
    images = np.zeros((400, 1, 4, 4), np.uint8)
    images[..., 0] = 255  # a white left column: flipped images have it on the right
    loader = BatchLoader(images, np.zeros(400), 100, shuffle=True, augment=Augment(flip=True), seed=0)
    flipped = unchanged = 0
    for x, _ in loader:
        right = (x[:, 0, :, -1] == 255).all(dim=1)
        left = (x[:, 0, :, 0] == 255).all(dim=1)
        assert (right ^ left).all()  # every image is either the original or its mirror
        flipped += int(right.sum())
        unchanged += int(left.sum())
    assert flipped + unchanged == 400 and 150 < flipped < 250


def test_random_flip_matches_torch_flip():
    gen = torch.Generator().manual_seed(1)
    x = torch.arange(2 * 3 * 3, dtype=torch.uint8).view(2, 1, 3, 3).repeat(10, 1, 1, 1)
    out = random_flip(x, gen)
    for a, b in zip(out, x, strict=True):
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))


def test_cutout_fills_squares_with_the_fill_value():
    images = np.full((50, 3, 12, 12), 200, np.uint8)
    fill = np.array([10.0, 20.0, 30.0])
    loader = BatchLoader(images, np.zeros(50), 50, augment=Augment(cutout=4), fill=fill)
    x = next(iter(loader))[0]
    cut = (x != 200).any(dim=1)  # (N, H, W) pixels that were cut
    assert torch.equal(x.permute(0, 2, 3, 1)[cut], torch.tensor([10, 20, 30], dtype=torch.uint8).expand(int(cut.sum()),
                                                                                                       3))
    for mask in cut:
        area = int(mask.sum())
        assert 1 <= area <= 16  # a 4x4 square, clipped at the border
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        assert area == len(rows) * len(cols)  # a rectangle (a square unless clipped)
        assert len(rows) <= 4 and len(cols) <= 4
    assert (cut.sum(dim=(1, 2)) == 16).float().mean() > 0.3  # most squares lie inside the image


def test_random_cutout_direct():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(5, 2, 8, 8, dtype=torch.uint8)
    out = random_cutout(x, 3, torch.tensor([7, 9]), gen)
    assert set(out[:, 0].unique().tolist()) == {0, 7} and set(out[:, 1].unique().tolist()) == {0, 9}


@pytest.mark.parametrize(("n", "batch_size"), [(10, 2), (11, 3), (7, 4)])
def test_two_ranks_cover_every_index_with_equal_lengths(n, batch_size):
    images, labels = _indexed(n)
    ranks = [BatchLoader(images, labels, batch_size, shuffle=True, seed=5, rank=r, world_size=2) for r in (0, 1)]
    per_rank = [np.concatenate(_epoch(loader)) for loader in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == -(-n // 2)
    assert len(ranks[0]) == len(ranks[1])
    covered = set(per_rank[0].tolist()) | set(per_rank[1].tolist())
    assert covered == set(range(n))
    if n % 2 == 0:
        assert not set(per_rank[0].tolist()) & set(per_rank[1].tolist())  # a true partition when it divides
