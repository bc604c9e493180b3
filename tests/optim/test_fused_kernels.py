"""The hand-written CPU kernels of the fused Leapfrog/Euler step at their edges.

The sums kernel walks chunk j of a tensor together with chunk j + ⌈chunks/2⌉, and the update
kernel walks the two halves of each range together: every length around the chunk (16,384) and
half-range boundaries, odd chunk counts, a partial last chunk, and views that start at an odd
element offset (not 32-byte aligned) must give the plain formulas' numbers (the update bit for
bit: it is elementwise and built without contraction to fused multiply-adds).
"""

from __future__ import annotations

import pytest
import torch

from hamopt.optim import _fused_cpu

CHUNK = 16384
LENGTHS = [1, 15, 16, 31, 32, 33, 255, 257, 513, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 257,
           5 * CHUNK - 3]


def tensors(n, dtype, offset, seed):
    """θ, p, g of n elements; with ``offset`` each is a view starting ``offset`` elements into its storage."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n + offset, generator=g, dtype=dtype)[offset:] for _ in range(3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sums_match_float64_references_at_every_boundary(dtype):
    for k, n in enumerate(LENGTHS):
        _, p, g = tensors(n, dtype, offset=k % 3, seed=k)
        g = g + 0.25
        got = _fused_cpu.sums([p], [g], with_momenta=True)[:, 0]
        pd, gd = p.double(), g.double()
        want = torch.stack([pd.square().sum(), gd.square().sum(), (pd * gd).sum()])
        scale = torch.stack([want[0], want[1], (want[0] * want[1]).sqrt()])
        tol = 1e-6 if dtype == torch.float32 else 1e-13
        assert ((got - want).abs() <= tol * scale).all(), (n, got, want)
        only_g = _fused_cpu.sums([p], [g], with_momenta=False)[:, 0]
        assert only_g[0] == 0 and only_g[2] == 0 and only_g[1] == got[1], n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("drift_first", [False, True])
def test_update_is_the_elementwise_formula_bit_for_bit(dtype, drift_first):
    d, c, h = 0.875, 0.0625, 0.01
    triples = [tensors(n, dtype, offset=k % 3, seed=100 + k) for k, n in enumerate(LENGTHS)]
    want = []
    for th, p, g in triples:
        dd, cc, hh = (torch.tensor(v, dtype=dtype) for v in (d, c, h))
        if drift_first:
            want.append((th + hh * p, dd * p - cc * g))
        else:
            q = dd * p - cc * g
            want.append((th + hh * q, q))
    n = len(triples)
    coefs = torch.tensor([[d] * n, [c] * n, [h] * n], dtype=torch.float64)
    _fused_cpu.update([t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples], coefs,
                      drift_first=drift_first)
    for (th, p, _), (th_want, p_want), length in zip(triples, want, LENGTHS):
        assert torch.equal(th, th_want) and torch.equal(p, p_want), length


def test_sums_do_not_depend_on_the_thread_count():
    from hamopt.optim import _fused_ecd_cpu

    th, p, g = tensors(7 * CHUNK + 11, torch.float32, offset=1, seed=7)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append((_fused_cpu.sums([p], [g], with_momenta=True),
                            _fused_ecd_cpu.sums([th], [p], [g], with_params=True)))
    finally:
        torch.set_num_threads(before)
    (one, ecd_one), (two, ecd_two) = results
    assert torch.equal(one, two) and torch.equal(ecd_one, ecd_two)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ecd_sums_match_float64_references_at_every_boundary(dtype):
    from hamopt.optim import _fused_ecd_cpu

    for k, n in enumerate(LENGTHS):
        th, p, g = tensors(n, dtype, offset=k % 3, seed=200 + k)
        got = _fused_ecd_cpu.sums([th], [p], [g], with_params=True)[:, 0]
        t, x, y = th.double(), p.double(), g.double()
        want = torch.stack([x @ x, y @ y, x @ y, t @ t, x @ t, y @ t])
        sq = torch.stack([x @ x, y @ y, t @ t]).sqrt()
        scale = torch.stack([sq[0] ** 2, sq[1] ** 2, sq[0] * sq[1], sq[2] ** 2, sq[0] * sq[2], sq[1] * sq[2]])
        tol = 1e-6 if dtype == torch.float32 else 1e-13
        assert ((got - want).abs() <= tol * scale).all(), (n, got, want)
        without = _fused_ecd_cpu.sums([th], [p], [g], with_params=False)[:, 0]
        assert torch.equal(without[:3], got[:3]) and not without[3:].any(), n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("decay", [0.0, 0.001953125])
def test_ecd_noise_free_update_is_the_elementwise_formula_bit_for_bit(dtype, decay):
    from hamopt.optim import _fused_ecd_cpu

    a, b, h = 0.875, 0.0625, 0.01
    triples = [tensors(n, dtype, offset=k % 3, seed=300 + k) for k, n in enumerate(LENGTHS)]
    want = []
    for th, p, g in triples:
        aa, bb, ww, hh = (torch.tensor(v, dtype=dtype) for v in (a, b, decay, h))
        q = aa * p - bb * g - ww * th if decay else aa * p - bb * g
        want.append((th + hh * q, q))
    n = len(triples)
    coefs = torch.tensor([[a] * n, [b] * n, [decay] * n, [h] * n, [0.0] * n], dtype=torch.float64)
    _fused_ecd_cpu.update([t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples], coefs,
                          seed=0, step=0, indices=list(range(n)))
    for (th, p, _), (th_want, p_want), length in zip(triples, want, LENGTHS):
        assert torch.equal(th, th_want) and torch.equal(p, p_want), length
