"""Tensor-list kernels: accuracy of the reductions and parity of the two bodies."""

import torch

from hamopt.optim import kernels


def test_squared_norm_is_accurate_for_large_float32_tensors():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2_359_296, generator=g).mul_(0.01).add_(0.003)  # a ResNet-18 conv weight's size
    reference = float(torch.dot(x.double(), x.double()))
    accurate = float(kernels.squared_norm64(x))
    assert abs(accurate - reference) / reference < 1e-7
    # a single float32 norm over the whole tensor is far less accurate: what the chunking fixes
    naive = float(torch.linalg.vector_norm(x)) ** 2
    assert abs(naive - reference) / reference > 10 * abs(accurate - reference) / reference


def test_squared_norm_of_channels_last_and_odd_sizes():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, 32, 3, 3, generator=g).to(memory_format=torch.channels_last)
    assert not w.is_contiguous()
    ref = float(torch.dot(w.double().reshape(-1), w.double().reshape(-1)))
    for layout in (w, w.contiguous()):
        assert abs(float(kernels.squared_norm64(layout)) - ref) / ref < 1e-6
    for n in (1, 4095, 4096, 4097, 10_001):
        v = torch.randn(n, generator=g, dtype=torch.float64)
        torch.testing.assert_close(kernels.squared_norm64(v), v.square().sum(), rtol=1e-13, atol=0)
    transposed = torch.randn(50, 300, generator=g).t()
    torch.testing.assert_close(kernels.squared_norm64(transposed), transposed.double().square().sum(), rtol=1e-6, atol=0)


def test_squared_norms_mix_small_and_large_tensors():
    g = torch.Generator().manual_seed(3)
    ts = [torch.randn(n, generator=g) for n in (10, 9_000, 3, 200_000)]
    got = kernels.squared_norms(ts, foreach=True)
    assert torch.equal(got, kernels.squared_norms(ts, foreach=False))
    ref = torch.stack([t.double().square().sum() for t in ts])
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=0)


def test_kinetic_energy_and_bodies_agree():
    g = torch.Generator().manual_seed(2)
    moms = [torch.randn(s, generator=g) for s in [(300, 200), (7,), (16, 3, 5, 5)]]
    masses = [0.5, 1.0, 0.125]
    expected = sum(0.5 * m * float(p.double().square().sum()) for p, m in zip(moms, masses))
    k_multi = kernels.kinetic_energy(moms, masses, foreach=True)
    k_single = kernels.kinetic_energy(moms, masses, foreach=False)
    assert torch.equal(k_multi, k_single)
    assert abs(float(k_multi) - expected) / expected < 1e-7


def test_batched_large_norms_cover_every_layout():
    g = torch.Generator().manual_seed(4)
    tensors = [
        torch.randn(64, 32, 3, 3, generator=g).to(memory_format=torch.channels_last),  # 18,432 elements
        torch.randn(10_007, generator=g),  # prime: no row length, per-tensor fallback
        torch.randn(300, 100, generator=g).t(),  # transposed, not contiguous
        torch.randn(128, 64, generator=g),
    ]
    got = kernels.squared_norms(tensors, foreach=True)
    ref = torch.stack([t.double().square().sum() for t in tensors])
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=0)
    assert torch.equal(got, kernels.squared_norms(tensors, foreach=False))
    assert kernels._row_length(10_007) is None and kernels._row_length(18_432) == 6_144


def test_scalar_kernels_agree_between_bodies_in_half_precision():
    g = torch.Generator().manual_seed(2)
    for dtype in (torch.float16, torch.bfloat16):
        xs = [torch.randn(n, generator=g).to(dtype) for n in (7, 300, 5000)]
        gs = [torch.randn(x.shape, generator=g).to(dtype) for x in xs]
        results = []
        for foreach in (True, False):
            a = [x.clone() for x in xs]
            kernels.kick(a, gs, decay=0.99912345, coeff=0.0123456789, foreach=foreach)
            kernels.scale(a, 1.000733, foreach=foreach)
            kernels.scale_each(a, [0.97, 1.0031, 0.50003], foreach=foreach)
            kernels.axpy(a, gs, -0.031, foreach=foreach)
            results.append(a)
        assert all(torch.equal(u, v) for u, v in zip(*results)), dtype
        # the multiply really is the float32 one, not one with the factor rounded to the dtype first
        x = xs[1].clone()
        kernels.scale([x], 0.99912345, foreach=True)
        assert torch.equal(x, xs[1].float().mul(0.99912345).to(dtype))
