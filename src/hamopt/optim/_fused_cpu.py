r"""Hand-written CPU kernels of the fused streaming step (``fused=True`` on the CPU).

Two multi-tensor kernels, each one call per step over every tensor:

* :func:`sums`: per tensor ``(‖p‖², ‖g‖², ⟨p, g⟩)`` from ONE read of p and g (or ``‖g‖²`` alone
  from one read of g). float32 tensors: partial sums over blocks of 256 elements in float32, added
  in float64 (as accurate as the eager path's chunked norms); float64 tensors: float64 throughout.
  Partial sums over fixed chunks of 16,384 elements are added in chunk order, so the result does
  not depend on the thread count.
* :func:`update`: ``p ← d p − c g; θ ← θ + h p`` (kick then drift, Leapfrog) or
  ``θ ← θ + h p; p ← d p − c g`` (drift then kick, Euler) with per-tensor ``(d, c, h)``: one pass
  that reads θ, p, g and writes θ, p (5 streams; ``torch.optim.AdamW(fused=True)`` moves 7).

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
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <vector>

using torch::Tensor;
constexpr int64_t CHUNK = 16384;

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HAMOPT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HAMOPT_CLONES
#endif

// float32: partial sums over blocks of 256 elements in float32 (vector lanes), added in float64
HAMOPT_CLONES static void sums_range_f(const float* p, const float* g, int64_t lo, int64_t hi, double* out) {
  double pp = 0.0, gg = 0.0, pg = 0.0;
  for (int64_t s = lo; s < hi; s += 256) {
    const int64_t e = std::min(hi, s + 256);
    float a = 0.f, b = 0.f, c = 0.f;
    if (p != nullptr) {
#pragma omp simd reduction(+ : a, b, c)
      for (int64_t i = s; i < e; ++i) { const float x = p[i], y = g[i]; a += x * x; b += y * y; c += x * y; }
    } else {
#pragma omp simd reduction(+ : b)
      for (int64_t i = s; i < e; ++i) { const float y = g[i]; b += y * y; }
    }
    pp += a; gg += b; pg += c;
  }
  out[0] = pp; out[1] = gg; out[2] = pg;
}

HAMOPT_CLONES static void sums_range_d(const double* p, const double* g, int64_t lo, int64_t hi, double* out) {
  double pp = 0.0, gg = 0.0, pg = 0.0;
  if (p != nullptr) {
#pragma omp simd reduction(+ : pp, gg, pg)
    for (int64_t i = lo; i < hi; ++i) { const double x = p[i], y = g[i]; pp += x * x; gg += y * y; pg += x * y; }
  } else {
#pragma omp simd reduction(+ : gg)
    for (int64_t i = lo; i < hi; ++i) { const double y = g[i]; gg += y * y; }
  }
  out[0] = pp; out[1] = gg; out[2] = pg;
}

static void sums_range(const float* p, const float* g, int64_t lo, int64_t hi, double* out) {
  sums_range_f(p, g, lo, hi, out);
}
static void sums_range(const double* p, const double* g, int64_t lo, int64_t hi, double* out) {
  sums_range_d(p, g, lo, hi, out);
}

template <typename T>
static void sums_one(const T* p, const T* g, int64_t n, double* out) {
  const int64_t chunks = (n + CHUNK - 1) / CHUNK;
  std::vector<double> part(3 * std::max<int64_t>(chunks, 1), 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      sums_range(p, g, c * CHUNK, std::min(n, (c + 1) * CHUNK), part.data() + 3 * c);
    }
  });
  double pp = 0.0, gg = 0.0, pg = 0.0;
  for (int64_t c = 0; c < chunks; ++c) { pp += part[3 * c]; gg += part[3 * c + 1]; pg += part[3 * c + 2]; }
  out[0] = pp; out[1] = gg; out[2] = pg;
}

Tensor sums(std::vector<Tensor> moms, std::vector<Tensor> grads, bool with_momenta) {
  const int64_t n = static_cast<int64_t>(grads.size());
  Tensor out = torch::zeros({n, 3}, torch::dtype(torch::kFloat64));
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

template <typename T>
HAMOPT_CLONES static void update_range(T* th, T* p, const T* g, int64_t b, int64_t e, T d, T c, T h,
                                       bool drift_first) {
  if (drift_first) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) {
      const T q = p[i];
      th[i] = th[i] + h * q;
      p[i] = d * q - c * g[i];
    }
  } else {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) {
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
  Tensor cf = coefs.to(torch::kFloat64).contiguous();
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

    return load_inline(name="hamopt_fused_cpu_v2", cpp_sources=[_SOURCE], verbose=False,
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
