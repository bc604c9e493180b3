"""The fused ECD steps (``fused=True``) and their counter-based bounce noise.

* ``nu = 0``: the fused step equals the eager one (float64 to 1e-12 relative, float32 to float32
  rounding) with two param groups, weight decay, ``deltaEn > 0`` and an LR scheduler.
* the noise is the documented generator (Philox4x32-10 + Box-Muller, checked against a NumPy
  re-implementation), is standard normal on a large draw, and independent across steps,
  tensors and neighbouring elements;
* ``nu > 0``: equal seeds give equal runs, other seeds other runs; a ``state_dict`` taken mid-run
  resumes bit for bit; the step adds exactly ``α z``; the invariant is kept as in the eager step.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps
from torch import nn

import hamopt
from hamopt.optim import _fused_ecd_cpu as FK

STEPS = 6
CLASSES = {"ecdsep": hamopt.ECDSep, "ecdq1": hamopt.ECDq1, "bbi": hamopt.BBI}
OPTIONS = {"ecdsep": dict(eta=2.0), "ecdq1": dict(eta=2.0, F0=0.0), "bbi": {}}
NOISY = ["ecdsep", "ecdq1"]  # the bounce noise drawn inside the fused pass


def problem(dtype, seed=0):
    """A tiny tanh MLP and its loss on a fixed batch (the batch does not depend on ``seed``)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 5, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (32,), generator=g)
    return model, (lambda: nn.functional.cross_entropy(model(x), y))


def closure_for(opt, loss_of):
    def closure():
        opt.zero_grad()
        loss = loss_of()
        loss.backward()
        return loss
    return closure


def make(name, model, *, fused, nu=0.0, seed=1, **options):
    ps = list(model.parameters())
    groups = [{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.1, "lr": 0.03}]
    if name == "bbi":
        return hamopt.BBI(groups, lr=0.05, seed=seed, fused=fused, **options)
    return CLASSES[name](groups, lr=0.05, nu=nu, seed=seed, fused=fused, **{**OPTIONS[name], **options})


def run(name, dtype, *, fused, steps=STEPS, nu=0.0, seed=1, schedule=True, **options):
    """``steps`` steps (with an LR scheduler changing lr at every step unless ``schedule`` is False);
    returns (parameters, momenta, stats per step, optimiser)."""
    model, loss_of = problem(dtype)
    opt = make(name, model, fused=fused, nu=nu, seed=seed, **options)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 + 0.2 * t) if schedule else None
    history = []
    for _ in range(steps):
        opt.step(closure_for(opt, loss_of))
        if sched is not None:
            sched.step()
        history.append(dict(opt.stats))
    moms = [opt.state[p][opt._buffer].clone() for p in model.parameters()]
    return [p.detach().clone() for p in model.parameters()], moms, history, opt


@pytest.mark.parametrize(("name", "options"), [("ecdsep", {"deltaEn": 0.5}), ("ecdsep", {"s": 0.5, "consEn": False}),
                                                ("ecdq1", {}), ("ecdq1", {"projection": "per_tensor"}),
                                                ("bbi", {"deltaEn": 0.2}),
                                                ("bbi", {"threshold0": 2, "threshold": 3, "n_fixed_bounces": 2,
                                                         "momentum_init": "per_tensor"})])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_equals_eager_without_noise(name, options, dtype):
    ref, got = run(name, dtype, fused=False, **options), run(name, dtype, fused=True, **options)
    rtol = 1e-12 if dtype == torch.float64 else 2e-6
    for a, b in zip(got[0] + got[1], ref[0] + ref[1]):
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * float(b.abs().max()))
    keys = ("loss", "potential", "P2", "invariant", "invariant_error", "rescale", "displacement_sq", "grad_norm",
            "energy", "counter0", "counter")
    for s, r in zip(got[2], ref[2]):
        assert not s["skipped"] and s["bounced"] == r["bounced"]
        assert name == "bbi" or not s["bounced"]
        for key in keys:
            if key in r:
                # the invariant's error is a difference of near-equal numbers: compared absolutely
                assert s[key] == pytest.approx(r[key], rel=rtol * 10, abs=rtol * 10 if key == "invariant_error" else 0)
    if "threshold0" in options:
        assert any(r["bounced"] for r in ref[2]), "BBI must bounce in this case"


# ---------------------------------------------------------------------- the generator
def _mulhilo(a, m):
    prod = a.astype(np.uint64) * np.uint64(m)
    return (prod >> np.uint64(32)).astype(np.uint32), (prod & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def philox4x32_10(counters, key):
    """NumPy Philox4x32-10 of ``counters`` (4, n) uint32 with the 64-bit ``key``."""
    c0, c1, c2, c3 = (c.copy() for c in counters)
    k0, k1 = np.uint32(key & 0xFFFFFFFF), np.uint32(key >> 32)
    for _ in range(10):
        hi0, lo0 = _mulhilo(c0, 0xD2511F53)
        hi1, lo1 = _mulhilo(c2, 0xCD9E8D57)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = np.uint32((int(k0) + 0x9E3779B9) & 0xFFFFFFFF), np.uint32((int(k1) + 0xBB67AE85) & 0xFFFFFFFF)
    return c0, c1, c2, c3


def reference_normals(numel, *, seed, step, index):
    """The documented noise in float64: call j = 16⌊i/64⌋ + (i mod 16), normal ⌊(i mod 64)/16⌋."""
    i = np.arange(numel, dtype=np.uint64)
    j = (i // np.uint64(64)) * np.uint64(16) + i % np.uint64(16)
    word = ((i % np.uint64(64)) // np.uint64(16)).astype(np.int64)
    counters = [(j & np.uint64(0xFFFFFFFF)).astype(np.uint32), (j >> np.uint64(32)).astype(np.uint32),
                np.full(numel, index, np.uint32), np.full(numel, step, np.uint32)]
    r = philox4x32_10(counters, seed)
    first, second = np.where(word < 2, r[0], r[2]), np.where(word < 2, r[1], r[3])
    u1 = ((first >> np.uint32(8)).astype(np.float64) + 1.0) / 2.0**24
    u2 = (second >> np.uint32(8)).astype(np.float64) / 2.0**24
    radius, angle = np.sqrt(-2.0 * np.log(u1)), 2.0 * np.pi * u2 - np.pi
    return np.where(word % 2 == 0, radius * np.cos(angle), radius * np.sin(angle))


@pytest.mark.parametrize(("seed", "step", "index"), [(0, 0, 0), (2**62 - 1, 2**32 + 7, 61), (12345, 9, 3)])
def test_noise_is_philox_box_muller(seed, step, index):
    n = 3 * 64 + 17  # a partial last block
    got = FK.normal(n, seed=seed, step=step, index=index)
    assert torch.equal(got, FK.normal(n, seed=seed, step=step, index=index, portable=True))
    ref = reference_normals(n, seed=seed, step=step % 2**32, index=index)
    np.testing.assert_allclose(got.double().numpy(), ref, rtol=0, atol=5e-6)


def test_philox_matches_the_published_known_answer():
    """Random123's known-answer vector for Philox4x32-10 (counter and key all ones bits)."""
    ones = np.full(1, 0xFFFFFFFF, np.uint32)
    out = philox4x32_10([ones] * 4, 0xFFFFFFFFFFFFFFFF)
    assert [int(x[0]) for x in out] == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


def test_noise_is_standard_normal_and_independent():
    n = 1 << 21
    z = FK.normal(n, seed=7, step=3, index=2).double().numpy()
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2.0 / n)
    assert abs(sps.skew(z)) < 5 * math.sqrt(6.0 / n)
    assert abs(sps.kurtosis(z)) < 5 * math.sqrt(24.0 / n)
    assert sps.kstest(z, "norm").pvalue > 1e-4
    tail = np.mean(np.abs(z) > 3.0)  # 0.0027 for N(0, 1)
    assert abs(tail - 0.0026998) < 5 * math.sqrt(0.0027 / n)
    others = {"next step": FK.normal(n, seed=7, step=4, index=2), "next tensor": FK.normal(n, seed=7, step=3, index=3),
              "other seed": FK.normal(n, seed=8, step=3, index=2)}
    for what, w in others.items():
        assert abs(np.corrcoef(z, w.double().numpy())[0, 1]) < 5 / math.sqrt(n), what
    for lag in (1, 16, 64):  # neighbours, the words of one Philox call, the next block
        assert abs(np.corrcoef(z[:-lag], z[lag:])[0, 1]) < 5 / math.sqrt(n), lag
        assert abs(np.corrcoef(z[:-lag] ** 2, z[lag:] ** 2)[0, 1]) < 5 / math.sqrt(n), lag


# ---------------------------------------------------------------------- nu > 0
@pytest.mark.parametrize("name", NOISY)
def test_noisy_fused_runs_are_reproducible_and_resume_bit_for_bit(name):
    nu = 0.01 if name == "ecdsep" else 0.1
    a, b = run(name, torch.float32, fused=True, nu=nu), run(name, torch.float32, fused=True, nu=nu)
    other = run(name, torch.float32, fused=True, nu=nu, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))
    assert not all(torch.equal(x, y) for x, y in zip(a[0], other[0]))
    assert all(s["bounced"] for s in a[2])

    # resume from a state_dict taken after 3 steps (through a deep copy, as torch.save would)
    ref = run(name, torch.float32, fused=True, nu=nu, schedule=False)
    model, loss_of = problem(torch.float32)
    opt = make(name, model, fused=True, nu=nu)
    for _ in range(3):
        opt.step(closure_for(opt, loss_of))
    saved, saved_model = copy.deepcopy(opt.state_dict()), copy.deepcopy(model.state_dict())
    model2, loss_of2 = problem(torch.float32, seed=5)
    model2.load_state_dict(saved_model)
    opt2 = make(name, model2, fused=True, nu=nu, seed=99)
    opt2.load_state_dict(saved)
    for _ in range(STEPS - 3):
        opt2.step(closure_for(opt2, loss_of2))
    assert all(torch.equal(x, y.detach()) for x, y in zip(ref[0], model2.parameters()))
    assert all(torch.equal(x, opt2.state[y][opt2._buffer]) for x, y in zip(ref[1], model2.parameters()))


@pytest.mark.parametrize("name", NOISY)
def test_a_step_adds_alpha_times_the_documented_noise(name):
    nu = 0.01 if name == "ecdsep" else 0.1
    model, loss_of = problem(torch.float64)
    twin_model, twin_loss_of = problem(torch.float64)
    quiet = make(name, model, fused=True, nu=0.0)
    noisy = make(name, twin_model, fused=True, nu=nu)
    quiet.step(closure_for(quiet, loss_of))
    noisy.step(closure_for(noisy, twin_loss_of))
    for p, q in zip(model.parameters(), twin_model.parameters()):
        assert torch.equal(p, q)  # the noise enters the momentum only
    p2 = noisy.stats["P2"]
    d = sum(p.numel() for p in model.parameters())
    alpha = nu * math.sqrt(p2) / (math.sqrt(d) if name == "ecdq1" else 1.0)
    for k, (p, q) in enumerate(zip(model.parameters(), twin_model.parameters())):
        added = noisy.state[q][noisy._buffer] - quiet.state[p][quiet._buffer]
        z = FK.normal(p.numel(), seed=1, step=0, index=k).double().view_as(p)
        torch.testing.assert_close(added, alpha * z, rtol=1e-9, atol=1e-15)
    noisy.finalize_bounce()  # the norm is kept: ‖p‖² is P2 again
    norm_sq = sum(float(noisy.state[q][noisy._buffer].double().square().sum()) for q in twin_model.parameters())
    assert norm_sq == pytest.approx(p2, rel=1e-12)


@pytest.mark.parametrize("name", NOISY)
def test_noisy_fused_step_keeps_the_invariant_like_eager(name):
    nu = 0.01 if name == "ecdsep" else 0.1
    got = run(name, torch.float64, fused=True, nu=nu, steps=8)
    ref = run(name, torch.float64, fused=False, nu=nu, steps=8)
    for s, r in zip(got[2], ref[2]):
        assert s["invariant_error"] <= max(1e-12, 10 * r["invariant_error"])
    assert got[2][-1]["loss"] == pytest.approx(ref[2][-1]["loss"], rel=0.05)  # small noise: similar paths


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize("name", list(CLASSES))
def test_bad_fused_values_and_unsupported_tensors_are_refused(name):
    w = nn.Parameter(torch.ones(4, 3))
    with pytest.raises(TypeError, match="fused must be True or False"):
        CLASSES[name]([w], lr=0.1, fused="yes", **OPTIONS[name])
    opt = CLASSES[name]([w], lr=0.1, fused=True, seed=0, **OPTIONS[name])
    w.grad = torch.ones(3, 4).t()  # non-contiguous gradient
    before = w.detach().clone()
    with pytest.raises(ValueError, match="fused=True needs contiguous"):
        opt.step(lambda: torch.tensor(1.0))
    assert torch.equal(w, before) and opt._buffer not in opt.state[w]


@pytest.mark.parametrize("name", list(CLASSES))
def test_nonfinite_gradient_changes_nothing(name):
    model, loss_of = problem(torch.float64)
    opt = make(name, model, fused=True, nu=0.01)

    def closure(bad=False):
        opt.zero_grad()
        loss = loss_of()
        loss.backward()
        if bad:
            next(model.parameters()).grad[0, 0] = math.nan
        return loss

    opt.step(closure)
    before = [p.detach().clone() for p in model.parameters()] + [opt.state[p][opt._buffer].clone()
                                                                  for p in model.parameters()]
    with pytest.raises(FloatingPointError):
        opt.step(lambda: closure(bad=True))
    after = [p.detach() for p in model.parameters()] + [opt.state[p][opt._buffer] for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(after, before))
