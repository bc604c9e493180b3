r"""Hand-written CPU kernels of the fused streaming step (``fused=True`` on the CPU).

Two multi-tensor kernels, each one call per step over every tensor:

* :func:`sums`: per tensor ``(‖p‖², ‖g‖², ⟨p, g⟩)`` from ONE read of p and g (or ``‖g‖²`` alone
  from one read of g). float32 tensors: partial sums over blocks of 256 elements in float32, added
  in float64 (as accurate as the eager path's chunked norms); float64 tensors: float64 throughout.
  Partial sums over fixed chunks of 16,384 elements are added in chunk order, so the result does
  not depend on the thread count. Chunk j is read together with chunk j + ⌈chunks/2⌉ (four read
  streams in flight instead of two): one core reads a lone pair of streams at about three
  quarters of the rate per stream that it reaches with four (``bench/bench_fused_bandwidth.py``).
* :func:`update`: ``p ← d p − c g; θ ← θ + h p`` (kick then drift, Leapfrog) or
  ``θ ← θ + h p; p ← d p − c g`` (drift then kick, Euler) with per-tensor ``(d, c, h)``: one pass
  that reads θ, p, g and writes θ, p (5 streams; ``torch.optim.AdamW(fused=True)`` moves 7), each
  range walked as two halves together for the same reason.

Inductor compiles the same step (:func:`hamopt.optim.tensor_step.streaming_program`) into one
loop nest per tensor, but it recomputes the step's scalar coefficients inside every inner loop
and compiles one C++ function per parameter set (minutes for ResNet-18); these kernels are
compiled once per machine (``torch.utils.cpp_extension``, about a minute, cached on disk; AVX2 and baseline x86-64
clones chosen at load time) and are
used for float32/float64 contiguous CPU tensors. Anything else takes the Inductor path.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

_SOURCE = r"""
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/zeros.h>
#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>
#include <algorithm>
#include <vector>

using at::Tensor;
constexpr int64_t CHUNK = 16384;
constexpr int64_t BLOCK = 256;

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HAMOPT_CLONES __attribute__((target_clones("avx2", "default")))
#define HAMOPT_INLINE inline __attribute__((always_inline))
#else
#define HAMOPT_CLONES
#define HAMOPT_INLINE inline
#endif

// one block [s, e) of one chunk: partial sums in T (float32 vector lanes for float32), added to o in float64
template <typename T>
static HAMOPT_INLINE void sums_block(const T* p, const T* g, int64_t s, int64_t e, double* o) {
  T a = 0, b = 0, c = 0;
  if (p != nullptr) {
#pragma omp simd reduction(+ : a, b, c)
    for (int64_t i = s; i < e; ++i) { const T x = p[i], y = g[i]; a += x * x; b += y * y; c += x * y; }
  } else {
#pragma omp simd reduction(+ : b)
    for (int64_t i = s; i < e; ++i) { const T y = g[i]; b += y * y; }
  }
  o[0] += a; o[1] += b; o[2] += c;
}

// the same sums of two full blocks, at x and at y, in one loop: twice the read streams in flight, which one core
// needs to approach its read bandwidth (a lone pair reads at about three quarters of the rate per stream)
template <typename T>
static HAMOPT_INLINE void sums_block_pair(const T* p, const T* g, int64_t x, int64_t y, double* ox, double* oy) {
  T a = 0, b = 0, c = 0, a2 = 0, b2 = 0, c2 = 0;
  if (p != nullptr) {
#pragma omp simd reduction(+ : a, b, c, a2, b2, c2)
    for (int64_t i = 0; i < BLOCK; ++i) {
      const T u = p[x + i], v = g[x + i], u2 = p[y + i], v2 = g[y + i];
      a += u * u; b += v * v; c += u * v; a2 += u2 * u2; b2 += v2 * v2; c2 += u2 * v2;
    }
  } else {
#pragma omp simd reduction(+ : b, b2)
    for (int64_t i = 0; i < BLOCK; ++i) { const T v = g[x + i], v2 = g[y + i]; b += v * v; b2 += v2 * v2; }
  }
  ox[0] += a; ox[1] += b; ox[2] += c; oy[0] += a2; oy[1] += b2; oy[2] += c2;
}

// the sums of chunk cx into part[3 cx..], and of chunk cy (when cy >= 0) into part[3 cy..], walked together: each
// chunk's blocks are added in block order, so a chunk's sums do not depend on its partner (the block functions are
// inlined here, so that they are compiled for the clone's target)
template <typename T>
HAMOPT_CLONES static void sums_chunks(const T* p, const T* g, int64_t n, int64_t cx, int64_t cy, double* part) {
  double* ox = part + 3 * cx;
  const int64_t xs = cx * CHUNK, xe = std::min(n, xs + CHUNK);
  int64_t done = 0;
  if (cy >= 0) {
    double* oy = part + 3 * cy;
    const int64_t ys = cy * CHUNK, ye = std::min(n, ys + CHUNK);
    done = std::min(xe - xs, ye - ys) / BLOCK * BLOCK;
    for (int64_t o = 0; o < done; o += BLOCK) sums_block_pair(p, g, xs + o, ys + o, ox, oy);
    for (int64_t s = ys + done; s < ye; s += BLOCK) sums_block(p, g, s, std::min(ye, s + BLOCK), oy);
  }
  for (int64_t s = xs + done; s < xe; s += BLOCK) sums_block(p, g, s, std::min(xe, s + BLOCK), ox);
}

// chunk j is walked together with chunk j + half (the tensor's two halves at once); the chunks' sums are added in
// chunk order, so the result does not depend on the thread count
template <typename T>
static void sums_one(const T* p, const T* g, int64_t n, double* out) {
  const int64_t chunks = (n + CHUNK - 1) / CHUNK, half = (chunks + 1) / 2;
  std::vector<double> part(3 * std::max<int64_t>(chunks, 1), 0.0);
  at::parallel_for(0, half, 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) sums_chunks<T>(p, g, n, j, j + half < chunks ? j + half : -1, part.data());
  });
  double pp = 0.0, gg = 0.0, pg = 0.0;
  for (int64_t c = 0; c < chunks; ++c) { pp += part[3 * c]; gg += part[3 * c + 1]; pg += part[3 * c + 2]; }
  out[0] = pp; out[1] = gg; out[2] = pg;
}

Tensor sums(std::vector<Tensor> moms, std::vector<Tensor> grads, bool with_momenta) {
  const int64_t n = static_cast<int64_t>(grads.size());
  Tensor out = at::zeros({n, 3}, at::TensorOptions().dtype(at::kDouble));
  double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const Tensor& g = grads[i];
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "hamopt_sums", [&] {
      const scalar_t* pp = with_momenta ? moms[i].data_ptr<scalar_t>() : nullptr;
      sums_one<scalar_t>(pp, g.data_ptr<scalar_t>(), g.numel(), o + 3 * i);
    });
  }
  return out.t().contiguous();
}

// one line of each of the update's six streams, AHEAD elements on (once per block of 256): starts the hardware
// prefetcher on the next 4 KiB page before the loop gets there (it does not cross page boundaries by itself)
constexpr int64_t AHEAD = 2048;
template <typename T>
static HAMOPT_INLINE void hint_ahead(const T* th, const T* th2, const T* p, const T* p2, const T* g, const T* g2,
                                    int64_t i) {
  __builtin_prefetch(th + i + AHEAD, 1, 3); __builtin_prefetch(th2 + i + AHEAD, 1, 3);
  __builtin_prefetch(p + i + AHEAD, 1, 3); __builtin_prefetch(p2 + i + AHEAD, 1, 3);
  __builtin_prefetch(g + i + AHEAD, 0, 3); __builtin_prefetch(g2 + i + AHEAD, 0, 3);
}

// [b, e) as two halves walked together (the second half starts a multiple of 16 elements after the first, so both
// have the same alignment): six read streams in flight instead of three, as for the sums
template <typename T>
HAMOPT_CLONES static void update_range(T* th, T* p, const T* g, int64_t b, int64_t e, T d, T c, T h,
                                       bool drift_first) {
  const int64_t half = (e - b) / 32 * 16, mid = b + half, rest = b + 2 * half;
  T *th2 = th + half, *p2 = p + half;
  const T* g2 = g + half;
  for (int64_t s = b; s < mid; s += BLOCK) {
    const int64_t t = std::min(mid, s + BLOCK);
    if (s + AHEAD < mid) hint_ahead<T>(th, th2, p, p2, g, g2, s);
    if (drift_first) {
#pragma omp simd
      for (int64_t i = s; i < t; ++i) {
        const T q = p[i], q2 = p2[i];
        th[i] = th[i] + h * q;
        th2[i] = th2[i] + h * q2;
        p[i] = d * q - c * g[i];
        p2[i] = d * q2 - c * g2[i];
      }
    } else {
#pragma omp simd
      for (int64_t i = s; i < t; ++i) {
        const T q = d * p[i] - c * g[i], q2 = d * p2[i] - c * g2[i];
        p[i] = q;
        p2[i] = q2;
        th[i] = th[i] + h * q;
        th2[i] = th2[i] + h * q2;
      }
    }
  }
  if (drift_first) {
#pragma omp simd
    for (int64_t i = rest; i < e; ++i) {
      const T q = p[i];
      th[i] = th[i] + h * q;
      p[i] = d * q - c * g[i];
    }
  } else {
#pragma omp simd
    for (int64_t i = rest; i < e; ++i) {
      const T q = d * p[i] - c * g[i];
      p[i] = q;
      th[i] = th[i] + h * q;
    }
  }
}

template <typename T>
static void update_one(T* th, T* p, const T* g, int64_t n, T d, T c, T h, bool drift_first) {
  at::parallel_for(0, n, CHUNK, [&](int64_t b, int64_t e) { update_range<T>(th, p, g, b, e, d, c, h, drift_first); });
}

void update(std::vector<Tensor> params, std::vector<Tensor> moms, std::vector<Tensor> grads, Tensor coefs,
            bool drift_first) {
  Tensor cf = coefs.to(at::kDouble).contiguous();
  const int64_t n = static_cast<int64_t>(params.size());
  const double* k = cf.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    AT_DISPATCH_FLOATING_TYPES(params[i].scalar_type(), "hamopt_update", [&] {
      update_one<scalar_t>(params[i].data_ptr<scalar_t>(), moms[i].data_ptr<scalar_t>(),
                           grads[i].data_ptr<scalar_t>(), params[i].numel(), static_cast<scalar_t>(k[i]),
                           static_cast<scalar_t>(k[n + i]), static_cast<scalar_t>(k[2 * n + i]), drift_first);
    });
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sums", &sums, "per-tensor (|p|^2, |g|^2, <p,g>) in float64");
  m.def("update", &update, "fused kick/drift update");
}
"""


@functools.lru_cache(maxsize=1)
def _module() -> Any:
    from torch.utils.cpp_extension import load_inline

    return load_inline(name="hamopt_fused_cpu_v6", cpp_sources=[_SOURCE], verbose=False,
                       extra_cflags=["-O3", "-fopenmp-simd", "-ffp-contract=off"])


def supported(tensor_lists: list[list[Tensor]]) -> bool:
    """True when every tensor is a contiguous float32/float64 CPU tensor and each triple
    (θ_i, p_i, g_i) shares a dtype."""
    for triple in zip(*tensor_lists):
        dtype = triple[0].dtype
        for t in triple:
            if t.device.type != "cpu" or t.dtype != dtype or dtype not in (torch.float32, torch.float64) \
                    or not t.is_contiguous():
                return False
    return True


def sums(moms: list[Tensor], grads: list[Tensor], *, with_momenta: bool) -> Tensor:
    """``(3, n)`` float64: ``‖p_i‖², ‖g_i‖², ⟨p_i, g_i⟩`` (momentum rows 0 unless ``with_momenta``)."""
    return _module().sums(moms, grads, with_momenta)


def update(params: list[Tensor], moms: list[Tensor], grads: list[Tensor], coefs: Tensor, *, drift_first: bool) -> None:
    """θ and p in place with the per-tensor ``coefs`` ``(3, n)`` (rows d, c, h)."""
    if params:
        _module().update(params, moms, grads, coefs, drift_first)
