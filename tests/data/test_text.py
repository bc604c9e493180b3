"""Byte-level corpus, deterministic text batches, uint16 token shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hamopt.data.text import (
    SHARD_MAGIC,
    STDLIB_MODULES,
    TextBatches,
    TokenShardBatches,
    load_text_corpus,
    read_token_shard,
    validation_batches,
    write_token_shard,
)


@pytest.fixture(scope="module")
def corpus():
    return load_text_corpus("stdlib")


def test_stdlib_corpus_is_fixed_and_split_90_10(corpus):
    again = load_text_corpus("stdlib")
    assert corpus.sha256 == again.sha256 and len(corpus.sha256) == 64
    assert torch.equal(corpus.train, again.train) and torch.equal(corpus.val, again.val)
    assert len(corpus.files) == len(STDLIB_MODULES)
    assert corpus.size > 1_000_000
    assert abs(corpus.val.numel() / corpus.size - 0.1) < 1e-3
    assert corpus.train.dtype == torch.uint8 and corpus.vocab_size == 256
    manifest = corpus.manifest()
    assert manifest["sha256"] == corpus.sha256 and manifest["token"] == "byte"


def test_user_files_corpus_and_its_split(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"world")
    (tmp_path / "a.txt").write_bytes(b"hello")
    c = load_text_corpus("files", path=tmp_path, val_fraction=0.2)
    assert bytes(torch.cat([c.train, c.val]).tolist()) == b"hello\nworld"
    assert c.files == (str(tmp_path / "a.txt"), str(tmp_path / "b.txt"))


def test_batches_are_a_pure_function_of_seed_and_step(corpus):
    a = TextBatches(corpus.train, context=16, batch_size=4, seed=7)
    b = TextBatches(corpus.train, context=16, batch_size=4, seed=7)
    x3, y3 = a.batch(3)
    a.batch(0)
    assert torch.equal(x3, b.batch(3)[0])
    assert torch.equal(x3[:, 1:], y3[:, :-1])
    assert x3.dtype == torch.int64 and x3.shape == (4, 16)
    assert not torch.equal(
        x3, TextBatches(corpus.train, context=16, batch_size=4, seed=8).batch(3)[0]
    )


def test_validation_windows_are_fixed_and_disjoint(corpus):
    batches = validation_batches(corpus.val, context=32, batch_size=5, max_windows=12)
    assert [x.shape[0] for x, _ in batches] == [5, 5, 2]
    x = torch.cat([b[0] for b in batches])
    assert torch.equal(x.reshape(-1), corpus.val[: 12 * 32].long())


def test_context_longer_than_the_corpus_allows_names_context(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"x" * 100)
    c = load_text_corpus("files", path=tmp_path)
    with pytest.raises(ValueError, match="context=90"):
        TextBatches(c.train, context=90, batch_size=2)
    with pytest.raises(ValueError, match="context=10"):
        validation_batches(c.val, context=10, batch_size=2)


@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(name="web"), "name"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(modules=()), "modules"),
        (dict(modules=("no_such_module_x",)), "modules"),
    ],
)
def test_bad_corpus_arguments(kw, name):
    with pytest.raises((ValueError, FileNotFoundError), match=name):
        load_text_corpus(**kw)


def test_shard_round_trip_and_header(tmp_path):
    toks = np.arange(1000, dtype=np.int64) % 50257
    path = write_token_shard(tmp_path / "s.bin", toks)
    raw = path.read_bytes()
    header = np.frombuffer(raw[:1024], dtype="<i4")
    assert header[0] == SHARD_MAGIC and header[1] == 1 and header[2] == 1000
    assert len(raw) == 1024 + 2000
    assert np.array_equal(read_token_shard(path), toks)


def test_raw_headerless_shard_is_read(tmp_path):
    p = tmp_path / "train.bin"
    np.arange(50, dtype="<u2").tofile(p)
    assert np.array_equal(read_token_shard(p), np.arange(50))


def test_corrupt_shard_is_refused(tmp_path):
    p = write_token_shard(tmp_path / "s.bin", np.arange(10))
    p.write_bytes(p.read_bytes()[:-2])
    with pytest.raises(ValueError, match="header says 10 tokens"):
        read_token_shard(p)
    with pytest.raises(ValueError, match="uint16"):
        write_token_shard(tmp_path / "t.bin", [70000])


def test_shard_batches_stay_inside_one_shard(tmp_path):
    write_token_shard(tmp_path / "a.bin", np.full(40, 1))
    write_token_shard(tmp_path / "b.bin", np.full(40, 2))
    stream = TokenShardBatches(
        sorted(tmp_path.glob("*.bin")), context=8, batch_size=64, vocab_size=3, seed=1
    )
    x, y = stream.batch(0)
    assert x.shape == (64, 8)
    rows = torch.cat([x, y[:, -1:]], 1)
    assert all(len(set(r.tolist())) == 1 for r in rows)
    assert set(rows[:, 0].tolist()) == {1, 2}
    assert torch.equal(x, stream.batch(0)[0])
    val = stream.validation(max_windows=3)
    assert torch.equal(val[0][0], torch.ones(3, 8, dtype=torch.int64))


def test_shard_batches_check_vocab_and_context(tmp_path):
    write_token_shard(tmp_path / "a.bin", np.arange(20))
    with pytest.raises(ValueError, match="vocab_size=10"):
        TokenShardBatches([tmp_path / "a.bin"], context=4, batch_size=64, vocab_size=10).batch(0)
    with pytest.raises(ValueError, match="context=30"):
        TokenShardBatches([tmp_path / "a.bin"], context=30, batch_size=2, vocab_size=100)
