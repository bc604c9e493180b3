"""GPT model: shapes, presets, bias variants, symmetry of the attention, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hamopt.models.gpt import GPT, PRESETS, GPTConfig, build_gpt, gpt_config


def small(attention: str = "symmetric", **kw) -> GPT:
    cfg = dict(n_layer=2, n_head=2, width=16, context=12, vocab_size=32, attention=attention)
    cfg.update(kw)
    return build_gpt("tiny", seed=3, **cfg).double()


def tokens(b: int = 3, t: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 32, (b, t), generator=torch.Generator().manual_seed(seed))


def test_tiny_preset_is_under_one_million_parameters():
    m = build_gpt("tiny")
    assert m.num_parameters() < 1_000_000
    cfg = m.config
    assert (cfg.n_layer, cfg.n_head, cfg.width, cfg.context, cfg.vocab_size) == (
        4,
        4,
        128,
        128,
        256,
    )


def test_124m_preset_shape_and_parameter_count():
    cfg = PRESETS["124m"]
    assert (cfg.n_layer, cfg.n_head, cfg.width, cfg.context) == (12, 12, 768, 512)
    with torch.device("meta"):
        m = GPT(cfg)
    n = m.num_parameters()
    # GPT-2 small: 124M with a 1024 context; 512 positions fewer here.
    assert 123_000_000 < n < 125_000_000


def test_forward_shapes_and_loss_in_nats():
    m = small()
    x = tokens()
    logits, loss = m(x, x)
    assert logits.shape == (3, 12, 32)
    assert loss is not None and 0 < float(loss.detach()) < 2 * math.log(32)
    _, none = m(x)
    assert none is None


def test_same_seed_same_weights_and_biases():
    a, b = small("bq+bv"), small("bq+bv")
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    ba, bb = a.draw_biases(), b.draw_biases()
    assert torch.equal(ba.bq, bb.bq) and torch.equal(ba.bv, bb.bv)
    assert not torch.equal(a.draw_biases().bq, ba.bq)


def test_variants_draw_the_right_biases():
    assert small("symmetric").draw_biases().bq is None
    b = small("bq").draw_biases()
    assert b.bq.shape == (2, 8) and b.bv is None
    b = small("bq+bv").draw_biases()
    assert b.bq.shape == (2, 8) and b.bv.shape == (2, 8)


def test_bias_distribution_matches_the_published_defaults():
    m = small("bq+bv", width=32, n_head=2)  # d = 16
    g = torch.Generator().manual_seed(0)
    draws = [m.draw_biases(g) for _ in range(3000)]
    bq = torch.cat([d.bq for d in draws])
    bv = torch.cat([d.bv for d in draws])
    assert torch.allclose(bq.mean(0), torch.full((16,), 0.5, dtype=bq.dtype), atol=0.01)
    assert torch.allclose(bq.std(0), torch.linspace(0.05, 0.15, 16, dtype=bq.dtype), rtol=0.06)
    assert torch.allclose(bv.std(0), torch.full((16,), 0.05, dtype=bv.dtype), rtol=0.06)


def test_eval_mode_uses_the_means_and_train_mode_samples():
    m = small("bq+bv")
    x = tokens()
    m.eval()
    a, _ = m(x)
    b, _ = m(x, biases=m.mean_biases())
    assert torch.equal(a, b)
    m.train()
    c, _ = m(x)
    d, _ = m(x)
    assert not torch.equal(c, d)
    zero_std = small("bq+bv", bq_std=0.0, bv_std=0.0)
    e, _ = zero_std(x)  # training mode, zero std: the draw is the mean
    zero_std.eval()
    f, _ = zero_std(x)
    assert torch.allclose(e, f, atol=1e-12)


def manual_attention(attn, x, bq, bv):
    b, t, w = x.shape
    q, k, v = attn.qkv(x).split(w, dim=2)
    q, k, v = (z.view(b, t, attn.n_head, attn.head_dim).transpose(1, 2) for z in (q, k, v))
    if bq is not None:
        q = q + bq
    if bv is not None:
        v = v + bv
    s = q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim)
    s = s.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
    y = F.softmax(s, -1) @ v
    return attn.proj(y.transpose(1, 2).reshape(b, t, w))


@pytest.mark.parametrize("variant", ["symmetric", "bq", "bq+bv"])
def test_attention_matches_a_written_out_reference(variant):
    m = small(variant)
    attn = m.blocks[0].attn
    x = torch.randn(2, 7, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    biases = m.draw_biases()
    bq = None if biases.bq is None else biases.bq[0]
    bv = None if biases.bv is None else biases.bv[0]
    assert torch.allclose(attn(x, bq, bv), manual_attention(attn, x, bq, bv), atol=1e-12)


def rotate_head(m: GPT, layer: int, head: int, kind: str, R: torch.Tensor) -> None:
    attn = m.blocks[layer].attn
    w, d = attn.width, attn.head_dim
    with torch.no_grad():
        if kind == "qk":
            for off in (0, w):
                rows = slice(off + head * d, off + (head + 1) * d)
                attn.qkv.weight[rows] = R @ attn.qkv.weight[rows]
                attn.qkv.bias[rows] = R @ attn.qkv.bias[rows]
        else:
            rows = slice(2 * w + head * d, 2 * w + (head + 1) * d)
            attn.qkv.weight[rows] = R @ attn.qkv.weight[rows]
            attn.qkv.bias[rows] = R @ attn.qkv.bias[rows]
            cols = slice(head * d, (head + 1) * d)
            attn.proj.weight[:, cols] = attn.proj.weight[:, cols] @ R.T


@pytest.mark.parametrize(
    "kind,variant,invariant",
    [
        ("qk", "symmetric", True),
        ("vo", "symmetric", True),
        ("qk", "bq", False),
        ("vo", "bq", True),
        ("qk", "bq+bv", False),
        ("vo", "bq+bv", False),
    ],
)
def test_head_rotations_are_symmetries_only_without_fixed_biases(kind, variant, invariant):
    m = small(variant)
    with torch.no_grad():  # non-zero learned biases so that they must rotate too
        for p in m.parameters():
            p.add_(
                0.05
                * torch.randn(
                    p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(p.numel())
                )
            )
    m.eval()
    x = tokens()
    before, _ = m(x)
    R, _ = torch.linalg.qr(
        torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    )
    rotate_head(m, 1, 0, kind, R)
    after, _ = m(x)
    diff = float((after - before).abs().max().detach())
    if invariant:
        assert diff < 1e-12
    else:
        assert diff > 1e-6


def test_relu_and_prelu_options():
    for act in ("relu", "prelu"):
        m = small(activation=act)
        assert m.blocks[0].mlp.homogeneous
        _, loss = m(tokens(), tokens())
        assert torch.isfinite(loss)
    assert not small().blocks[0].mlp.homogeneous


@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(width=30, n_head=4), "width"),
        (dict(bq_std=-0.1), "bq_std"),
        (dict(bv_std=(0.05, -1.0)), "bv_std"),
        (dict(attention="bk"), "attention"),
        (dict(activation="tanh"), "activation"),
        (dict(n_layer=0), "n_layer"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_bad_config_names_the_field(kw, field):
    with pytest.raises((ValueError, TypeError), match=field):
        gpt_config("tiny", **kw)


def test_bad_preset_and_unknown_field():
    with pytest.raises(ValueError, match="preset"):
        gpt_config("huge")
    with pytest.raises(TypeError, match="colour"):
        gpt_config("tiny", colour=1)


def test_sequence_longer_than_context_is_refused():
    m = small()
    with pytest.raises(ValueError, match="context=12"):
        m(tokens(t=13))


def test_gpt_config_is_a_frozen_record():
    cfg = GPTConfig()
    with pytest.raises(AttributeError):
        cfg.width = 3  # type: ignore[misc]
    assert cfg.as_dict()["bq_std"] == (0.05, 0.15)
