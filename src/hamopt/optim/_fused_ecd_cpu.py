r"""Hand-written CPU kernels of the fused ECD steps (``fused=True`` of :class:`~hamopt.optim.ECDSep`
and :class:`~hamopt.optim.ECDq1` on the CPU).

Three multi-tensor kernels:

* :func:`sums`: per tensor the six sums ``‖p‖², ‖g‖², ⟨p, g⟩, ‖θ‖², ⟨p, θ⟩, ⟨g, θ⟩`` from ONE read
  of p, g (and θ, only when asked: weight decay). float32 tensors accumulate blocks of 256
  elements in float32 and add the blocks in float64; fixed chunks of 16,384 elements are added in
  chunk order, so the result does not depend on the thread count. Chunk j is read together with
  chunk j + ⌈chunks/2⌉: twice the read streams in flight, which one core needs to approach its
  read bandwidth (``bench/bench_fused_bandwidth.py``).
* :func:`update`: with per-tensor coefficients ``(a, b, w, h, α)``, one pass that reads θ, p, g
  and writes θ, p::

      q ← a p − b g − w θ      (the kick, weight decay folded in: w = b λ)
      θ ← θ + h q              (the drift)
      p ← q + α z              (the random part of the bounce; skipped when α = 0)

  ``z ~ N(0, 1)`` is drawn inside the loop from a counter-based generator (below), never stored.
  Without noise each range is walked as two halves together (as the sums).
* :func:`normal`: the same ``z`` written to a tensor, for tests and for anyone who wants to see
  the noise a step adds.

The generator (C++ source in :mod:`hamopt.optim._philox_cpu`). ``z`` of element ``i`` of the
tensor at position ``k`` (its index in the optimiser's parameter list) at step ``t`` is a pure
function of ``(seed, t, k, i)``:
Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the
generator of cuRAND and of torch's CUDA generator) with the 64-bit key ``seed`` and the 128-bit
counter ``(j mod 2³², ⌊j/2³²⌋, k, t mod 2³²)`` gives four 32-bit words ``r₀..r₃``; the Box-Muller
transform turns ``(r₀, r₁)`` and ``(r₂, r₃)`` into four normals (``u₁ = (⌊r/2⁸⌋ + 1)/2²⁴ ∈ (0, 1]``,
``u₂ = ⌊r'/2⁸⌋/2²⁴``, ``√(−2 ln u₁) cos φ`` and ``√(−2 ln u₁) sin φ`` with ``φ = 2πu₂ − π``). Elements go in
blocks of 64: call ``j = 16⌊i/64⌋ + (i mod 16)`` and its ``⌊(i mod 64)/16⌋``-th normal (cos of
the first pair, sin of the first, cos of the second, sin of the second), so that every loop runs
over contiguous lanes. The logarithm and the sine/cosine are float32 polynomial approximations
(absolute error below 1e-6) that the compiler vectorises; the Philox rounds run eight calls per
AVX2 vector, two vectors interleaved, where the CPU has AVX2 (the plain loop otherwise: the same
bits). The tails are cut at √(2·24 ln 2) ≈ 5.77 (probability 8e-9), as for any 24-bit uniform. Nothing is stored between
steps: a resumed run draws the same numbers from ``seed`` and the step counter alone, and the
numbers do not depend on the thread count or on which other tensors have gradients.

Why this generator: it must be counter-based (each block of elements drawn independently inside
a parallel loop, nothing stored, no state to save), and Philox4x32-10 is the standard such
generator that passes TestU01's BigCrush with a safety margin; cheaper integer hashes keyed by
the counter make streams of different keys overlap or lack published test results. Its cost is
compute, not memory: on one core it takes about as long as reading and writing the tensors (see
``docs/performance.md``).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from ._philox_cpu import PHILOX_BOX_MULLER_SOURCE

# Only the headers the kernels use (not torch/extension.h, which pulls in the whole C++ frontend):
# the build takes a fraction of the time.
_KERNELS_HEAD = r"""
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/zeros.h>
#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

using at::Tensor;
constexpr int64_t CHUNK = 16384;
constexpr int64_t BLOCK = 64;  // elements whose noise is drawn together (16 Philox calls)

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HAMOPT_CLONES __attribute__((target_clones("avx2", "default")))
#define HAMOPT_INLINE inline __attribute__((always_inline))
#else
#define HAMOPT_CLONES
#define HAMOPT_INLINE inline
#endif

// ------------------------------------------------------------------ sums
template <typename T, typename Acc>
static HAMOPT_INLINE void sums_block(const T* th, const T* p, const T* g, int64_t s, int64_t e, double* o) {
  Acc a = 0, b = 0, c = 0, d = 0, f = 0, h = 0;
  if (th != nullptr) {
#pragma omp simd reduction(+ : a, b, c, d, f, h)
    for (int64_t i = s; i < e; ++i) {
      const Acc x = p[i], y = g[i], t = th[i];
      a += x * x; b += y * y; c += x * y; d += t * t; f += x * t; h += y * t;
    }
  } else {
#pragma omp simd reduction(+ : a, b, c)
    for (int64_t i = s; i < e; ++i) { const Acc x = p[i], y = g[i]; a += x * x; b += y * y; c += x * y; }
  }
  o[0] += a; o[1] += b; o[2] += c; o[3] += d; o[4] += f; o[5] += h;
}

// the same sums of two full blocks of 256 elements, at x and at y, in one loop: twice the read streams in flight,
// which one core needs to reach its read bandwidth
template <typename T, typename Acc>
static HAMOPT_INLINE void sums_block_pair(const T* th, const T* p, const T* g, int64_t x, int64_t y, double* ox,
                                          double* oy) {
  Acc a = 0, b = 0, c = 0, d = 0, f = 0, h = 0, a2 = 0, b2 = 0, c2 = 0, d2 = 0, f2 = 0, h2 = 0;
  if (th != nullptr) {
#pragma omp simd reduction(+ : a, b, c, d, f, h, a2, b2, c2, d2, f2, h2)
    for (int64_t i = 0; i < 256; ++i) {
      const Acc u = p[x + i], v = g[x + i], t = th[x + i], u2 = p[y + i], v2 = g[y + i], t2 = th[y + i];
      a += u * u; b += v * v; c += u * v; d += t * t; f += u * t; h += v * t;
      a2 += u2 * u2; b2 += v2 * v2; c2 += u2 * v2; d2 += t2 * t2; f2 += u2 * t2; h2 += v2 * t2;
    }
  } else {
#pragma omp simd reduction(+ : a, b, c, a2, b2, c2)
    for (int64_t i = 0; i < 256; ++i) {
      const Acc u = p[x + i], v = g[x + i], u2 = p[y + i], v2 = g[y + i];
      a += u * u; b += v * v; c += u * v; a2 += u2 * u2; b2 += v2 * v2; c2 += u2 * v2;
    }
  }
  ox[0] += a; ox[1] += b; ox[2] += c; ox[3] += d; ox[4] += f; ox[5] += h;
  oy[0] += a2; oy[1] += b2; oy[2] += c2; oy[3] += d2; oy[4] += f2; oy[5] += h2;
}

// the sums of chunk cx into part[6 cx..] and of chunk cy (when cy >= 0) into part[6 cy..], walked together in blocks
// of 256 elements; each chunk's blocks are added in block order, so its sums do not depend on its partner
template <typename T>
HAMOPT_CLONES static void sums_chunks(const T* th, const T* p, const T* g, int64_t n, int64_t cx, int64_t cy,
                                     double* part) {
  double* ox = part + 6 * cx;
  const int64_t xs = cx * CHUNK, xe = std::min(n, xs + CHUNK);
  int64_t done = 0;
  if (cy >= 0) {
    double* oy = part + 6 * cy;
    const int64_t ys = cy * CHUNK, ye = std::min(n, ys + CHUNK);
    done = std::min(xe - xs, ye - ys) / 256 * 256;
    for (int64_t o = 0; o < done; o += 256) sums_block_pair<T, T>(th, p, g, xs + o, ys + o, ox, oy);
    for (int64_t s = ys + done; s < ye; s += 256) sums_block<T, T>(th, p, g, s, std::min(ye, s + 256), oy);
  }
  for (int64_t s = xs + done; s < xe; s += 256) sums_block<T, T>(th, p, g, s, std::min(xe, s + 256), ox);
}

// chunk j is read together with chunk j + half (the tensor's two halves at once); the chunks' sums are added in
// chunk order, so the result does not depend on the thread count
template <typename T>
static void sums_one(const T* th, const T* p, const T* g, int64_t n, double* out) {
  const int64_t chunks = (n + CHUNK - 1) / CHUNK, half = (chunks + 1) / 2;
  std::vector<double> part(6 * std::max<int64_t>(chunks, 1), 0.0);
  at::parallel_for(0, half, 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j)
      sums_chunks<T>(th, p, g, n, j, j + half < chunks ? j + half : -1, part.data());
  });
  for (int k = 0; k < 6; ++k) out[k] = 0.0;
  for (int64_t c = 0; c < chunks; ++c)
    for (int k = 0; k < 6; ++k) out[k] += part[6 * c + k];
}

Tensor sums(std::vector<Tensor> params, std::vector<Tensor> moms, std::vector<Tensor> grads, bool with_params) {
  const int64_t n = static_cast<int64_t>(grads.size());
  Tensor out = at::zeros({n, 6}, at::TensorOptions().dtype(at::kDouble));
  double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    AT_DISPATCH_FLOATING_TYPES(grads[i].scalar_type(), "hamopt_ecd_sums", [&] {
      const scalar_t* th = with_params ? params[i].data_ptr<scalar_t>() : nullptr;
      sums_one<scalar_t>(th, moms[i].data_ptr<scalar_t>(), grads[i].data_ptr<scalar_t>(), grads[i].numel(), o + 6 * i);
    });
  }
  return out.t().contiguous();
}
"""

_KERNELS_UPDATE = r"""// ------------------------------------------------------------------ update
template <typename T>
HAMOPT_CLONES static void update_block(T* th, T* p, const T* g, int64_t s, int64_t e, T a, T b, T w, T h,
                                       const float* z, T alpha) {
  if (z != nullptr) {
#pragma omp simd
    for (int64_t i = s; i < e; ++i) {
      const T q = a * p[i] - b * g[i] - w * th[i];
      th[i] = th[i] + h * q;
      p[i] = q + alpha * static_cast<T>(z[i - s]);
    }
  } else if (w != T(0)) {
#pragma omp simd
    for (int64_t i = s; i < e; ++i) {
      const T q = a * p[i] - b * g[i] - w * th[i];
      th[i] = th[i] + h * q;
      p[i] = q;
    }
  } else {
#pragma omp simd
    for (int64_t i = s; i < e; ++i) {
      const T q = a * p[i] - b * g[i];
      p[i] = q;
      th[i] = th[i] + h * q;
    }
  }
}

// the noise-free update of [b, e) as two halves walked together (the second half starts a multiple of 16
// elements after the first, so both have the same alignment): six read streams in flight instead of three
template <typename T>
HAMOPT_CLONES static void update_halves(T* th, T* p, const T* g, int64_t b, int64_t e, T a, T bb, T w, T h) {
  const int64_t half = (e - b) / 32 * 16, rest = b + 2 * half;
  T *th2 = th + half, *p2 = p + half;
  const T* g2 = g + half;
  if (w != T(0)) {
#pragma omp simd
    for (int64_t i = b; i < b + half; ++i) {
      const T q = a * p[i] - bb * g[i] - w * th[i], q2 = a * p2[i] - bb * g2[i] - w * th2[i];
      th[i] = th[i] + h * q;
      th2[i] = th2[i] + h * q2;
      p[i] = q;
      p2[i] = q2;
    }
  } else {
#pragma omp simd
    for (int64_t i = b; i < b + half; ++i) {
      const T q = a * p[i] - bb * g[i], q2 = a * p2[i] - bb * g2[i];
      p[i] = q;
      p2[i] = q2;
      th[i] = th[i] + h * q;
      th2[i] = th2[i] + h * q2;
    }
  }
  update_block<T>(th, p, g, rest, e, a, bb, w, h, nullptr, T(0));
}

template <typename T>
static void update_one(T* th, T* p, const T* g, int64_t n, const double* k, int64_t stride, uint64_t seed,
                       uint32_t step, uint32_t index) {
  const T a = static_cast<T>(k[0]), b = static_cast<T>(k[stride]), w = static_cast<T>(k[2 * stride]),
          h = static_cast<T>(k[3 * stride]), alpha = static_cast<T>(k[4 * stride]);
  const bool noise = k[4 * stride] != 0.0;
  const int64_t blocks = (n + BLOCK - 1) / BLOCK;
  at::parallel_for(0, blocks, CHUNK / BLOCK, [&](int64_t lo, int64_t hi) {
    if (!noise) {
      update_halves<T>(th, p, g, lo * BLOCK, std::min(n, hi * BLOCK), a, b, w, h);
      return;
    }
    alignas(64) float z[BLOCK];
    for (int64_t blk = lo; blk < hi; ++blk) {
      const int64_t s = blk * BLOCK, e = std::min(n, s + BLOCK);
      block_normals(seed, step, index, static_cast<uint64_t>(s / 4), z, false);
      update_block<T>(th, p, g, s, e, a, b, w, h, z, alpha);
    }
  });
}

void update(std::vector<Tensor> params, std::vector<Tensor> moms, std::vector<Tensor> grads, Tensor coefs,
            int64_t seed, int64_t step, std::vector<int64_t> indices) {
  Tensor cf = coefs.to(at::kDouble).contiguous();
  const int64_t n = static_cast<int64_t>(params.size());
  const double* k = cf.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    AT_DISPATCH_FLOATING_TYPES(params[i].scalar_type(), "hamopt_ecd_update", [&] {
      update_one<scalar_t>(params[i].data_ptr<scalar_t>(), moms[i].data_ptr<scalar_t>(),
                           grads[i].data_ptr<scalar_t>(), params[i].numel(), k + i, n,
                           static_cast<uint64_t>(seed), static_cast<uint32_t>(step),
                           static_cast<uint32_t>(indices[i]));
    });
  }
}

void normal(Tensor out, int64_t seed, int64_t step, int64_t index, bool portable) {
  float* o = out.data_ptr<float>();
  const int64_t n = out.numel(), blocks = (n + BLOCK - 1) / BLOCK;
  at::parallel_for(0, blocks, CHUNK / BLOCK, [&](int64_t lo, int64_t hi) {
    alignas(64) float z[BLOCK];
    for (int64_t blk = lo; blk < hi; ++blk) {
      const int64_t s = blk * BLOCK, e = std::min(n, s + BLOCK);
      block_normals(static_cast<uint64_t>(seed), static_cast<uint32_t>(step), static_cast<uint32_t>(index),
                    static_cast<uint64_t>(s / 4), z, portable);
      for (int64_t i = s; i < e; ++i) o[i] = z[i - s];
    }
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sums", &sums, "per-tensor (|p|^2, |g|^2, <p,g>, |theta|^2, <p,theta>, <g,theta>) in float64");
  m.def("update", &update, "fused kick, drift and bounce noise");
  m.def("normal", &normal, "the bounce noise of one tensor");
}
"""

# the generator (hamopt.optim._philox_cpu) sits between the sums and the update, which calls it
_SOURCE = _KERNELS_HEAD + PHILOX_BOX_MULLER_SOURCE + _KERNELS_UPDATE


@functools.lru_cache(maxsize=1)
def _module() -> Any:
    from torch.utils.cpp_extension import load_inline

    return load_inline(name="hamopt_fused_ecd_cpu_v6", cpp_sources=[_SOURCE], verbose=False,
                       extra_cflags=["-O3", "-fopenmp-simd", "-ffp-contract=off", "-fno-math-errno"])


def unsupported_reason(triples: list[tuple[Tensor, Tensor, Tensor]]) -> str | None:
    """None when every ``(θ, p, g)`` is a contiguous float32/float64 CPU tensor of one dtype;
    otherwise what is wrong, for the error message."""
    for k, triple in enumerate(triples):
        dtype = triple[0].dtype
        for t in triple:
            if t.device.type != "cpu":
                return f"tensor {k} is on {t.device} (the fused ECD kernels run on the CPU)"
            if t.dtype != dtype or dtype not in (torch.float32, torch.float64):
                return f"tensor {k} has dtype {t.dtype} (float32 or float64, gradient of the same dtype)"
            if not t.is_contiguous():
                return f"tensor {k} (or its gradient) is not contiguous"
    return None


def sums(params: list[Tensor], moms: list[Tensor], grads: list[Tensor], *, with_params: bool) -> Tensor:
    """``(6, n)`` float64: per tensor ``‖p‖², ‖g‖², ⟨p, g⟩, ‖θ‖², ⟨p, θ⟩, ⟨g, θ⟩`` (the last three 0
    unless ``with_params``)."""
    return _module().sums(params, moms, grads, with_params)


def update(params: list[Tensor], moms: list[Tensor], grads: list[Tensor], coefs: Tensor, *, seed: int, step: int,
           indices: list[int]) -> None:
    """θ and p in place with the per-tensor ``coefs`` ``(5, n)`` (rows a, b, w, h, α; see the module
    docstring); the noise of tensor i is keyed by ``(seed, step, indices[i])``."""
    if params:
        _module().update(params, moms, grads, coefs, seed, step % 2**32, indices)


def normal(numel: int, *, seed: int, step: int, index: int, portable: bool = False) -> Tensor:
    """The ``z`` that :func:`update` adds to a tensor of ``numel`` elements at position ``index``
    at step ``step`` (float32, flat). ``portable=True`` draws the Philox words with the plain C++
    loop instead of the AVX2 one (for tests: both give the same bits)."""
    out = torch.empty(numel, dtype=torch.float32)
    _module().normal(out, seed, step % 2**32, index, portable)
    return out
