r"""Which token classes each attention head amplifies along its query-bias direction.

In the ``bq`` and ``bq+bv`` attention variants (:mod:`hamopt.models.gpt`) every head's query
gets the unlearned bias ``bQ`` (mean ``mean_Q`` per head dimension, the same for all heads of a
layer). The bias adds ``bQ · k_j / √d`` to the attention logit of **every** query towards key
``j``: a key with a large component along the bias direction ``u = mean_Q / ‖mean_Q‖`` is
attended more by the whole sequence. Without biases the attention is invariant under
``W_Q,h → R W_Q,h, W_K,h → R W_K,h`` (R orthogonal), so no direction of a head's key space is
special; the bias singles out ``u``, and the question is whether training uses it: do the keys of
a semantically meaningful token class (digits, brackets, keywords, ...) point along ``u``?

For one head with keys ``k(x) = W_K,h x + b_K,h`` (``x`` = the block's LayerNorm output, eval
mode) over a set of tokens, and a token class ``c`` (a boolean mask), let ``Δ_c`` be the
difference between the class's mean key and the other tokens' mean key. Per (head, class):

* ``boost = ‖mean_Q‖ · (u·Δ_c) / √d``: the extra attention logit that the mean bias gives the
  class's keys over the other tokens' (from every query; natural-log units of attention weight);
* ``effect = (u·Δ_c) / std_x(u·k)``: the same difference standardised by the spread of the keys
  along ``u`` (a standardised mean difference);
* ``cos = u·Δ_c / ‖Δ_c‖``: how well the bias direction lines up with the direction that
  separates the class from the rest.

**Significance: a random-direction null.** Had training not used the bias, ``u`` would be no
different from a direction drawn uniformly on the unit sphere of ``R^d``. For such a direction
``r``, ``(1 + r·Δ̂)/2`` follows ``Beta((d−1)/2, (d−1)/2)``, so the one-sided p-value of the
observed alignment is exact: ``p = P(r·Δ̂ ≥ cos)`` (the limit of sampling infinitely many random
directions; a sampling check is in the tests), and ``z = √d · cos`` (mean 0, variance 1 under the
null). The **symmetric control** is the same statistic along the same ``u`` in a model trained
without biases (same seed, initialisation and batches): there ``u`` is not special, so its
p-values are those of a random direction. A (head, class) cell is *significant* when
``p ≤ α / m`` (Bonferroni over the ``m`` cells of one model, ``α = 0.05``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["ALPHA", "amplification", "bias_direction", "class_effects", "head_keys",
           "null_p_value"]

ALPHA = 0.05


def bias_direction(model: Any) -> Tensor:
    """The unit query-bias direction ``mean_Q / ‖mean_Q‖`` of a GPT (from its config, so a
    symmetric model gives the direction a biased one of the same shape would use)."""
    d = model.config.head_dim
    mean = torch.full((d,), float(model.config.bq_mean), dtype=torch.float64)
    norm = float(mean.norm())
    if norm == 0.0:
        raise ValueError("bq_mean is 0: the query bias has no mean direction to analyse")
    return mean / norm


@torch.no_grad()
def head_keys(model: Any, inputs: Sequence[Tensor]) -> list[Tensor]:
    """Per layer, the keys of every head: float64 ``(tokens, n_head, d)``, tokens in the order of
    the rows of ``inputs`` (each ``(batch, time)``), eval mode (biases at their means)."""
    was = model.training
    model.eval()
    layers = model.attention_modules()
    captured: list[list[Tensor]] = [[] for _ in layers]
    hooks = [
        attn.register_forward_pre_hook(lambda _m, args, i=i: captured[i].append(args[0].detach()))
        for i, attn in enumerate(layers)
    ]
    try:
        for x in inputs:
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    keys = []
    for attn, xs in zip(layers, captured, strict=True):
        w = attn.width
        weight = attn.qkv.weight[w:2 * w].double()
        bias = None if attn.qkv.bias is None else attn.qkv.bias[w:2 * w].double()
        x = torch.cat([z.reshape(-1, w) for z in xs]).double()
        k = x @ weight.T + (0.0 if bias is None else bias)
        keys.append(k.reshape(-1, attn.n_head, attn.head_dim))
    return keys


def class_effects(keys: Tensor, masks: np.ndarray, u: Tensor) -> dict[str, Tensor]:
    """Per class (columns of ``masks``, ``(tokens, classes)``), for keys ``(tokens, d)`` and a
    unit direction ``u``: ``delta`` (``Δ_c``, ``(classes, d)``), ``along`` (``u·Δ_c``),
    ``effect`` (standardised by ``std(u·k)``) and ``cos``; NaN for a class that holds no token
    or every token."""
    k = keys.double()
    m = torch.as_tensor(masks, dtype=torch.float64)
    n_in, n = m.sum(0), k.shape[0]
    mean_in = (m.T @ k) / n_in.clamp(min=1)[:, None]
    mean_out = (k.sum(0) - m.T @ k) / (n - n_in).clamp(min=1)[:, None]
    delta = mean_in - mean_out
    along = delta @ u
    spread = (k @ u).std()
    effect = along / spread if float(spread) > 0 else torch.full_like(along, math.nan)
    cos = along / delta.norm(dim=1).clamp(min=1e-300)
    empty = (n_in == 0) | (n_in == n)
    for t in (along, effect, cos):
        t[empty] = math.nan
    return {"delta": delta, "along": along, "effect": effect, "cos": cos}


def null_p_value(cos: float, d: int) -> float:
    """``P(r·Δ̂ ≥ cos)`` for ``r`` uniform on the unit sphere of ``R^d`` (``d ≥ 2``): the
    one-sided p-value of an alignment under the random-direction null."""
    from scipy.special import betainc

    if not math.isfinite(cos):
        return math.nan
    a = (d - 1) / 2  # Beta(a, a) is symmetric: P(X ≥ (1 + cos)/2) = I_{(1 − cos)/2}(a, a)
    return float(betainc(a, a, (1 - min(max(cos, -1.0), 1.0)) / 2))


def amplification(
    model: Any,
    inputs: Sequence[Tensor],
    classes: Mapping[str, np.ndarray],
    *,
    reference: Any = None,
) -> list[dict[str, Any]]:
    """One row per (layer, head, class): ``tokens`` (in the class), ``boost``, ``effect``,
    ``cos``, ``z``, ``p``, ``significant`` (Bonferroni over the model's cells) and, with a
    ``reference`` model (the symmetric control), the same with the suffix ``_reference``, along
    the same ``u``.

    ``classes`` maps a class name to a boolean mask over the tokens of ``inputs`` (row by row).
    """
    names = list(classes)
    masks = np.stack([np.asarray(classes[c], bool).reshape(-1) for c in names], axis=1)
    u = bias_direction(model)
    scale = abs(float(model.config.bq_mean))  # ‖mean_Q‖ / √d
    layers = head_keys(model, inputs)
    if layers[0].shape[0] != masks.shape[0]:
        raise ValueError(f"classes: masks cover {masks.shape[0]} tokens but the inputs hold "
                         f"{layers[0].shape[0]}")
    ref_layers = None if reference is None else head_keys(reference, inputs)
    limit = ALPHA / (len(layers) * layers[0].shape[1] * len(names))
    rows = []
    for layer, keys in enumerate(layers):
        for head in range(keys.shape[1]):
            s = class_effects(keys[:, head], masks, u)
            r = None if ref_layers is None else class_effects(ref_layers[layer][:, head], masks, u)
            for c, name in enumerate(names):
                row = {"layer": layer, "head": head, "class": name,
                       "tokens": int(masks[:, c].sum()), **_cell(s, c, scale, limit, "")}
                if r is not None:
                    row.update(_cell(r, c, scale, limit, "_reference"))
                rows.append(row)
    return rows


def _cell(s: dict[str, Tensor], c: int, scale: float, limit: float, suffix: str) -> dict[str, Any]:
    d = s["delta"].shape[1]
    cos = float(s["cos"][c])
    p = null_p_value(cos, d)
    out = {"boost": scale * float(s["along"][c]), "effect": float(s["effect"][c]), "cos": cos,
           "z": math.sqrt(d) * cos, "p": p, "significant": bool(p <= limit)}
    return {f"{k}{suffix}": v for k, v in out.items()}
