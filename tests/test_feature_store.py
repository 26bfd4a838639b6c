"""The feature cache on disk: memory-mapped rows, streamed appends, old files, and stage 2's epoch order."""

import numpy as np
import pytest

from core.train import features
from core.train.pipeline import cached_dataset, epoch_views, training_order


def _store(path, ids, values, cached=None):
    return features._merge(path, cached or {}, list(ids), [values])


@pytest.mark.unit
def test_a_store_is_read_memory_mapped_and_grows_by_streaming(tmp_path):
    path = tmp_path / "store.npz"
    first = np.random.default_rng(0).random((5, 3, 2)).astype(np.float16)
    cached = _store(path, "abcde", first)
    assert isinstance(cached["values"], features.StoredArray)
    assert np.array_equal(cached["values"], first)
    more = np.random.default_rng(1).random((3, 3, 2)).astype(np.float16)
    cached = _store(path, ["f", "a", "g"], more, cached)  # "a" is held already: not added twice
    assert cached["ids"].tolist() == list("abcdefg")
    assert np.array_equal(np.asarray(cached["values"])[:5], first)
    assert np.array_equal(cached["values"].read([5, 6]), more[[0, 2]])
    with np.load(path, allow_pickle=False) as data:  # still an ordinary .npz
        assert np.array_equal(data["values"], cached["values"])
    assert [p.name for p in tmp_path.iterdir()] == ["store.npz"]  # no temporary file left behind


@pytest.mark.unit
def test_stores_written_by_numpy_itself_still_read(tmp_path):
    values = np.arange(24, dtype=np.float32).reshape(4, 6)
    plain, packed = tmp_path / "plain.npz", tmp_path / "packed.npz"
    np.savez(plain, ids=np.array(list("wxyz")), values=values)
    np.savez_compressed(packed, ids=np.array(list("wxyz")), values=values)
    assert isinstance(features._load(plain)["values"], features.StoredArray)
    for path in (plain, packed):
        assert np.array_equal(features._load(path)["values"], values)


@pytest.mark.unit
def test_rows_held_before_the_store_grows_still_read_the_version_they_came_from(tmp_path):
    # Train and validation images of a view share a store: the train rows are held while val grows it.
    path = tmp_path / "s.npz"
    train = np.arange(60, dtype=np.float16).reshape(5, 3, 4)
    held = features.CachedRows(_store(path, "abcde", train)["values"], np.array([4, 0, 2]))
    _store(path, ["v" * 40 + str(i) for i in range(7)], np.full((7, 3, 4), -1, np.float16), features._load(path))
    assert np.array_equal(held.take([0, 1, 2]), train[[4, 0, 2]].astype(np.float32))
    assert np.array_equal(features._load(path)["values"].read([0, 7]), np.stack([train[0], np.full((3, 4), -1)]))


@pytest.mark.unit
def test_cached_rows_read_only_the_rows_asked_for_in_the_callers_order(tmp_path):
    values = np.arange(40, dtype=np.float16).reshape(10, 4)
    cached = _store(tmp_path / "s.npz", [str(i) for i in range(10)], values)
    rows = features.CachedRows(cached["values"], np.array([7, 2, 9, 2]))
    assert rows.shape == (4, 4) and len(rows) == 4
    taken = rows.take([2, 0])
    assert taken.dtype == np.float32 and np.array_equal(taken, values[[9, 7]].astype(np.float32))
    assert np.array_equal(np.asarray(rows), values[[7, 2, 9, 2]])


@pytest.mark.unit
def test_an_epoch_of_all_views_shows_each_pair_once_and_of_one_view_each_image_once():
    every = training_order(6, 3, seed=1, epoch=0, views="all")
    assert sorted(map(tuple, every.tolist())) == [(v, i) for v in range(3) for i in range(6)]
    one = training_order(50, 3, seed=1, epoch=0, views="one")
    assert sorted(one[:, 1].tolist()) == list(range(50))
    drawn = epoch_views(50, 3, seed=1, epoch=0)
    assert np.array_equal(one[np.argsort(one[:, 1]), 0], drawn)  # the views are epoch_views' draw
    assert set(drawn.tolist()) == {0, 1, 2}
    assert not np.array_equal(epoch_views(50, 3, 1, 1), drawn)  # another epoch, other views
    assert np.array_equal(training_order(50, 3, 1, 0, "one"), one)  # and the same seed and epoch, the same
    assert epoch_views(5, 1, 0, 3).tolist() == [0] * 5


@pytest.mark.integration
def test_cached_dataset_batches_gather_the_ordered_rows_of_each_view(tmp_path):
    view0 = np.arange(12, dtype=np.float16).reshape(6, 2)
    view1 = view0 + 100
    store = _store(tmp_path / "v1.npz", [str(i) for i in range(6)], view1)
    sources = [view0, features.CachedRows(store["values"], np.arange(6))]
    labels = np.array([0, 1, 0, 1, 0, 1])
    order = training_order(6, 2, seed=3, epoch=0, views="all")
    batches = list(cached_dataset(sources, labels, batch_size=5, order=order).as_numpy_iterator())
    assert [len(x) for x, _ in batches] == [5, 5, 2]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    expected = np.stack([(view0 if v == 0 else view1)[i] for v, i in order]).astype(np.float32)
    assert np.array_equal(x, expected) and np.array_equal(y, labels[order[:, 1]])


@pytest.mark.unit
def test_rows_lost_to_another_process_replacing_the_store_are_written_again(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    base = np.zeros((2, 3), np.float32)
    cached = _store(path, "ab", base)
    real_write, raced = features._write, []

    def racing_write(p, ids, old, new):  # right after our write, another process replaces the store with its own
        real_write(p, ids, old, new)
        if not raced:
            raced.append(True)
            real_write(p, np.asarray(list("abde")), base, np.full((2, 3), 7, np.float32))

    monkeypatch.setattr(features, "_write", racing_write)
    merged = features._merge(path, cached, ["c"], [np.full((1, 3), 5, np.float32)])
    assert merged["ids"].tolist() == list("abdec")
    assert np.asarray(merged["values"])[-1].tolist() == [5, 5, 5]
