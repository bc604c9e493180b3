"""Head analysis: a bias direction planted to amplify one token class is found, with a p-value
that survives the Bonferroni correction, and a model without the plant shows nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hamopt.diagnostics.heads import amplification, bias_direction, class_effects, null_p_value
from hamopt.experiments.symbreak_metrics import TOKEN_CLASSES, token_classes
from hamopt.models.gpt import build_gpt

CONFIG = dict(n_layer=1, n_head=2, width=16, context=32, attention="bq+bv")


def code_text(n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    words = ["value", "total", "if", "return", "for", "item", "name", "in", "while", "x"]
    lines = []
    while sum(map(len, lines)) < n:
        w = rng.choice(words)
        lines.append(f"{w} = ({rng.integers(0, 10**4)}, '{rng.choice(words)}')  # n{rng.integers(99)}\n")
    return "".join(lines).encode()[:n]


def windows(data: bytes, context: int) -> list[torch.Tensor]:
    t = torch.tensor(list(data[: len(data) // context * context])).view(-1, context)
    return [t[i:i + 8] for i in range(0, t.shape[0], 8)]


def planted_model(planted: bool, seed: int = 0) -> torch.nn.Module:
    """Digits carry a large value in embedding coordinate 0; with ``planted`` head 0's key maps
    that coordinate onto the bias direction u (head 1 and the unplanted model: random keys)."""
    model = build_gpt("tiny", seed=seed, **CONFIG)
    with torch.no_grad():
        digits = list(b"0123456789")
        model.tok_emb.weight[:, 0] = -0.02
        model.tok_emb.weight[digits, 0] = 0.5
        if planted:
            u = bias_direction(model).float()
            d, w = model.config.head_dim, model.config.width
            keys = model.blocks[0].attn.qkv.weight[w:2 * w]
            keys[:d] = 0.02 * torch.randn(d, w, generator=torch.Generator().manual_seed(1))
            keys[:d, 0] += 3.0 * u
    return model.eval()


def classes_of(inputs: list[torch.Tensor]) -> dict[str, np.ndarray]:
    per_row = [token_classes(bytes(row.tolist())) for x in inputs for row in x]
    return {c: np.concatenate([r[c] for r in per_row]) for c in TOKEN_CLASSES}


def test_a_planted_class_is_recovered_and_the_control_is_silent():
    inputs = windows(code_text(32 * 48), 32)
    classes = classes_of(inputs)
    rows = amplification(planted_model(True), inputs, classes, reference=planted_model(False))
    head0 = [r for r in rows if r["head"] == 0]
    top = max(head0, key=lambda r: r["effect"])
    assert top["class"] == "digit"
    assert top["significant"] and top["p"] < 1e-6 and top["z"] > 2.5 and top["boost"] > 0
    assert top["cos"] > 0.9  # the bias direction is nearly the direction separating digits
    digit_ref = next(r for r in head0 if r["class"] == "digit")
    assert not digit_ref["significant_reference"] and digit_ref["p_reference"] > 1e-3
    # the unplanted head is silent about digits
    head1_digit = next(r for r in rows if r["head"] == 1 and r["class"] == "digit")
    assert not head1_digit["significant"]


def test_effects_along_a_direction_and_the_exact_null():
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(500, 4, generator=g, dtype=torch.float64)
    mask = np.zeros((500, 1), bool)
    mask[:100, 0] = True
    keys[:100, 2] += 1.0
    u = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    e = class_effects(keys, mask, u)
    s = keys[:, 2]
    assert float(e["along"][0]) == pytest.approx(float(s[:100].mean() - s[100:].mean()), rel=1e-12)
    assert float(e["effect"][0]) == pytest.approx(float(e["along"][0] / s.std()), rel=1e-12)
    # the exact p-value is the limit of sampling random directions
    d, cos = 16, 0.45
    r = torch.randn(200_000, d, generator=g, dtype=torch.float64)
    r = r / r.norm(dim=1, keepdim=True)
    sampled = float((r[:, 0] >= cos).double().mean())
    assert null_p_value(cos, d) == pytest.approx(sampled, abs=3e-3)
    assert null_p_value(0.0, d) == pytest.approx(0.5) and null_p_value(1.0, d) == 0.0


def test_mismatched_masks_are_refused():
    model = planted_model(False)
    inputs = windows(code_text(32 * 8), 32)
    with pytest.raises(ValueError, match="masks cover"):
        amplification(model, inputs, {"digit": np.zeros(5, bool)})


def test_token_classes_are_the_documented_ones():
    c = token_classes(b"if x1 == (2): return 'a'  # done\n")
    text = b"if x1 == (2): return 'a'  # done\n"
    at = {ch: text.index(ch) for ch in (b"i", b"x", b"1", b"(", b"'", b"#", b"\n", b"=")}
    assert c["keyword"][at[b"i"]] and not c["identifier"][at[b"i"]]
    assert c["identifier"][at[b"x"]] and c["identifier"][at[b"1"]] and c["digit"][at[b"1"]]
    assert c["bracket"][at[b"("]] and c["quote"][at[b"'"]] and c["comment"][at[b"#"]]
    assert c["newline"][at[b"\n"]] and c["punctuation"][at[b"="]] and not c["comment"][at[b"="]]
    assert set(c) == set(TOKEN_CLASSES)
