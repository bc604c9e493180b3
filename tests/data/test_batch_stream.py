import pytest
import torch

from hamopt.data import BatchStream, Dataset, derive_seed, eval_batches, load_dataset


def image_dataset(n: int = 40, augment: bool = True) -> Dataset:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.arange(n) % 10
    return Dataset(
        name="fake",
        x_train=x,
        y_train=y,
        x_test=x[:8],
        y_test=y[:8],
        num_classes=10,
        input_shape=(3, 32, 32),
        source="test",
        augment=augment,
        pad_value=(-1.0, -2.0, -3.0),
    )


def test_batch_depends_only_on_seed_and_step():
    ds = image_dataset()
    forward = BatchStream(ds, batch_size=8, seed=7)
    backward = BatchStream(ds, batch_size=8, seed=7)
    steps = list(range(12))  # spans three epochs (5 steps each)
    first = {t: forward.batch(t) for t in steps}
    second = {t: backward.batch(t) for t in reversed(steps)}
    for t in steps:
        assert torch.equal(first[t][0], second[t][0]) and torch.equal(first[t][1], second[t][1])
    # asking again after other steps gives the same batch
    assert torch.equal(forward.batch(3)[0], first[3][0])


def test_global_rng_is_untouched():
    before = torch.random.get_rng_state()
    BatchStream(image_dataset(), batch_size=8, seed=0).batch(3)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_different_seeds_differ():
    ds = image_dataset()
    a = BatchStream(ds, batch_size=8, seed=0).batch(0)
    b = BatchStream(ds, batch_size=8, seed=1).batch(0)
    assert not torch.equal(a[0], b[0])


def test_epochs_are_permutations_and_differ():
    ds = image_dataset(n=43)
    s = BatchStream(ds, batch_size=8, seed=3, augment=False)
    assert s.steps_per_epoch == 5  # drop_last: 43 // 8
    epoch0 = torch.cat([s.indices(t) for t in range(5)])
    epoch1 = torch.cat([s.indices(t) for t in range(5, 10)])
    assert len(set(epoch0.tolist())) == 40 and len(set(epoch1.tolist())) == 40
    assert torch.equal(s.permutation(0)[:40], epoch0)
    assert sorted(s.permutation(1).tolist()) == list(range(43))
    assert not torch.equal(epoch0, epoch1)
    assert s.epoch_of(9) == 1 and s.epoch_of(10) == 2


def test_without_augmentation_batches_are_rows():
    ds = image_dataset()
    s = BatchStream(ds, batch_size=8, seed=5, augment=False)
    x, y = s.batch(6)
    idx = s.indices(6)
    assert torch.equal(x, ds.x_train[idx]) and torch.equal(y, ds.y_train[idx])


def test_augmentation_matches_manual_crop_and_flip():
    ds = image_dataset()
    seed, step, bs = 11, 4, 16
    s = BatchStream(ds, batch_size=bs, seed=seed)
    x, y = s.batch(step)
    idx = s.indices(step)
    g = torch.Generator().manual_seed(derive_seed(seed, 1, step))
    oy = torch.randint(0, 9, (bs,), generator=g)
    ox = torch.randint(0, 9, (bs,), generator=g)
    flip = torch.randint(0, 2, (bs,), generator=g)
    assert flip.any() and not flip.all() and (oy != 4).any() and (ox != 4).any()
    for b in range(bs):
        img = ds.x_train[idx[b]]
        padded = torch.tensor([-1.0, -2.0, -3.0]).view(3, 1, 1).repeat(1, 40, 40)
        padded[:, 4:36, 4:36] = img
        crop = padded[:, oy[b] : oy[b] + 32, ox[b] : ox[b] + 32]
        if flip[b]:
            crop = torch.flip(crop, dims=[2])
        assert torch.equal(x[b], crop), b
    assert torch.equal(y, ds.y_train[idx])
    # a crop shifted by d pixels shows d rows/columns of padding
    b = int(torch.nonzero(oy < 4)[0])
    assert torch.all(x[b, 0, : 4 - int(oy[b])] == -1.0)


def test_augmentation_defaults_follow_dataset():
    assert BatchStream(image_dataset(augment=True), batch_size=4, seed=0).augment is True
    assert BatchStream(image_dataset(augment=False), batch_size=4, seed=0).augment is False
    digits = load_dataset("digits", train_size=100, test_size=10)
    s = BatchStream(digits, batch_size=10, seed=0)
    assert s.augment is False and s.batch(0)[0].shape == (10, 1, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"batch_size": 0, "seed": 0}, "batch_size"),
        ({"batch_size": 41, "seed": 0}, "batch_size"),
        ({"batch_size": 4, "seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BatchStream(image_dataset(), **kwargs)


def test_bad_step_is_named():
    s = BatchStream(image_dataset(), batch_size=4, seed=0)
    with pytest.raises(ValueError, match="step"):
        s.batch(-1)
    with pytest.raises(TypeError, match="step"):
        s.batch(1.0)


def test_eval_batches_cover_split_in_order():
    ds = image_dataset()
    chunks = list(eval_batches(ds, split="train", batch_size=16))
    assert [len(y) for _, y in chunks] == [16, 16, 8]
    assert torch.equal(torch.cat([x for x, _ in chunks]), ds.x_train)
    with pytest.raises(ValueError, match="split"):
        list(eval_batches(ds, split="val"))


def test_describe_records_the_sampler():
    d = BatchStream(image_dataset(), batch_size=8, seed=2).describe()
    assert (
        d["seed"] == 2
        and d["batch_size"] == 8
        and d["steps_per_epoch"] == 5
        and d["augment"] is True
    )
