"""One core's memory bandwidth for the two passes of the fused steps, kernel variant by kernel variant.

The fused Leapfrog step with energy and cap makes two passes over memory
(``hamopt.optim._fused_cpu``): a sums pass that reads p and g (‖p‖², ‖g‖², ⟨p, g⟩) and an update
pass that reads θ, p, g and writes θ, p; ``torch.optim.AdamW(fused=True)`` makes one pass that
reads 4 streams and writes 3. This script times, on one thread, in interleaved rounds, against
AdamW fused in the same rounds (each figure: the median over rounds of the round's time divided
by AdamW's in that round, which survives changes of machine load better than a ratio of medians;
also the median and the fastest round in ms):

* ``refs``: ``torch.dot(p, g)`` per tensor (the same two read streams as the sums pass) and
  ``copy_`` of g into a scratch tensor, against the shipped sums kernel;
* ``model``: read R float32 streams of the parameter count (11.17 M elements each) element by
  element and write W of them back (``r{R}w{W}``): what a pass costs as a function of the streams
  it reads and writes (``r4w3`` moves AdamW's bytes, ``r2w0`` + ``r3w2`` the two passes');
* ``sums``: the sums pass on the ResNet-18 set (62 tensors): ``plain`` (one loop, the kernel before
  this comparison), ``pf{d}`` (software prefetch of every line d elements ahead), ``halves`` (the
  tensor's two halves in one loop: four read streams), ``hint{d}`` (halves, plus one prefetched
  line per stream and block d elements ahead, to start the hardware prefetcher on the next page),
  ``quarters`` (eight streams), ``ways{k}`` (k parts read block by block in turn), ``hamopt`` (the
  shipped kernel: chunk j with chunk j + ⌈chunks/2⌉);
* ``update``: ``plain``, ``pf{d}``, ``nt`` (non-temporal stores for tensors above 1 MiB, 32-byte
  aligned middle), ``halves``, ``quarters``, ``hint{d}``, ``hamopt`` (the shipped kernel: halves);
* ``order``: sums then update, the update in the tensors' order or in reverse order (then the
  last tensors' p and g, read last by the sums pass, could still be cached), and ``cache``: one
  tensor pair read twice in a row against after reading 128 MB, by size;
* ``steps``: the optimisers' whole steps (Leapfrog energy + cap and lean, ECDSep ν = 0 and
  ν = 1e-5, all ``fused=True``).

Run: ``TORCH_EXTENSIONS_DIR=/tmp/ext python bench/bench_fused_bandwidth.py [--rounds N]
[--only refs,model,sums,update,order,cache,steps]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clone_params, interleaved_samples, resnet18_params  # noqa: E402

import hamopt  # noqa: E402
from hamopt.optim import _fused_cpu  # noqa: E402

_SOURCE = r"""
#include <ATen/core/Tensor.h>
#include <torch/csrc/utils/pybind.h>
#include <pybind11/stl.h>
#include <immintrin.h>
#include <algorithm>
#include <string>
#include <cstdint>
#include <vector>
using at::Tensor;

__attribute__((target("avx2"))) static void sums_plain(const float* p, const float* g, int64_t n, double* o) {
  double pp = 0, gg = 0, pg = 0;
  for (int64_t s = 0; s < n; s += 256) {
    const int64_t e = std::min(n, s + 256);
    float a = 0, b = 0, c = 0;
#pragma omp simd reduction(+ : a, b, c)
    for (int64_t i = s; i < e; ++i) { const float x = p[i], y = g[i]; a += x * x; b += y * y; c += x * y; }
    pp += a; gg += b; pg += c;
  }
  o[0] += pp; o[1] += gg; o[2] += pg;
}

// prefetch `ahead` elements ahead, one prefetch per cache line (16 floats) and stream
__attribute__((target("avx2"))) static void sums_pf(const float* p, const float* g, int64_t n, int64_t ahead,
                                                    double* o) {
  double pp = 0, gg = 0, pg = 0;
  for (int64_t s = 0; s < n; s += 256) {
    const int64_t e = std::min(n, s + 256);
    for (int64_t l = s + ahead; l < std::min(n, e + ahead); l += 16) {
      __builtin_prefetch(p + l, 0, 0);
      __builtin_prefetch(g + l, 0, 0);
    }
    float a = 0, b = 0, c = 0;
#pragma omp simd reduction(+ : a, b, c)
    for (int64_t i = s; i < e; ++i) { const float x = p[i], y = g[i]; a += x * x; b += y * y; c += x * y; }
    pp += a; gg += b; pg += c;
  }
  o[0] += pp; o[1] += gg; o[2] += pg;
}

// two halves of the tensor walked together element by element (four read streams in flight); with ahead > 0 one
// line per stream is touched `ahead` elements ahead once per block of 256 (a page hint to the hardware prefetcher)
__attribute__((target("avx2"))) static void sums_halves(const float* p, const float* g, int64_t n, int64_t ahead,
                                                       double* o) {
  const int64_t half = ((n / 2) / 256) * 256;
  double r0[3] = {0, 0, 0}, r1[3] = {0, 0, 0};
  for (int64_t s = 0; s < half; s += 256) {
    if (ahead > 0)
      for (int64_t l = s + ahead; l < std::min(half, s + ahead + 1); l += 16) {
        __builtin_prefetch(p + l, 0, 3); __builtin_prefetch(g + l, 0, 3);
        __builtin_prefetch(p + half + l, 0, 3); __builtin_prefetch(g + half + l, 0, 3);
      }
    float a = 0, b = 0, c = 0, a2 = 0, b2 = 0, c2 = 0;
#pragma omp simd reduction(+ : a, b, c, a2, b2, c2)
    for (int64_t i = s; i < s + 256; ++i) {
      const float x = p[i], y = g[i], x2 = p[half + i], y2 = g[half + i];
      a += x * x; b += y * y; c += x * y; a2 += x2 * x2; b2 += y2 * y2; c2 += x2 * y2;
    }
    r0[0] += a; r0[1] += b; r0[2] += c; r1[0] += a2; r1[1] += b2; r1[2] += c2;
  }
  double tail[3] = {0, 0, 0};
  sums_plain(p + 2 * half, g + 2 * half, n - 2 * half, tail);
  for (int k = 0; k < 3; ++k) o[k] += r0[k] + r1[k] + tail[k];
}

__attribute__((target("avx2"))) static void update_plain(float* th, float* p, const float* g, int64_t n, float d,
                                                        float c, float h) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) { const float q = d * p[i] - c * g[i]; p[i] = q; th[i] = th[i] + h * q; }
}

__attribute__((target("avx2"))) static void update_pf(float* th, float* p, const float* g, int64_t n, float d,
                                                     float c, float h, int64_t ahead) {
  for (int64_t s = 0; s < n; s += 256) {
    const int64_t e = std::min(n, s + 256);
    for (int64_t l = s + ahead; l < std::min(n, e + ahead); l += 16) {
      __builtin_prefetch(p + l, 1, 0);
      __builtin_prefetch(g + l, 0, 0);
      __builtin_prefetch(th + l, 1, 0);
    }
#pragma omp simd
    for (int64_t i = s; i < e; ++i) { const float q = d * p[i] - c * g[i]; p[i] = q; th[i] = th[i] + h * q; }
  }
}

// non-temporal stores on the 32-byte aligned middle, plain head and tail (th and p must share the alignment
// offset for the vector part; otherwise the plain loop)
__attribute__((target("avx2"))) static void update_nt(float* th, float* p, const float* g, int64_t n, float d,
                                                     float c, float h) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(th) & 31, ap = reinterpret_cast<uintptr_t>(p) & 31;
  if (n < (1 << 18) || at != ap || (at & 3)) { update_plain(th, p, g, n, d, c, h); return; }
  const int64_t head = std::min<int64_t>(n, at ? (32 - at) / 4 : 0);
  update_plain(th, p, g, head, d, c, h);
  const __m256 vd = _mm256_set1_ps(d), vc = _mm256_set1_ps(c), vh = _mm256_set1_ps(h);
  int64_t i = head;
  for (; i + 8 <= n; i += 8) {
    const __m256 q = _mm256_sub_ps(_mm256_mul_ps(vd, _mm256_load_ps(p + i)), _mm256_mul_ps(vc, _mm256_loadu_ps(g + i)));
    const __m256 t = _mm256_add_ps(_mm256_load_ps(th + i), _mm256_mul_ps(vh, q));
    _mm256_stream_ps(p + i, q);
    _mm256_stream_ps(th + i, t);
  }
  _mm_sfence();
  update_plain(th + i, p + i, g + i, n - i, d, c, h);
}


// the tensor cut into `ways` equal parts (multiples of 256) read in turn, one block of 256 elements of each part
// after the other (`ways` times the streams, interleaved by blocks instead of elements)
__attribute__((target("avx2"))) static void sums_ways(const float* p, const float* g, int64_t n, int64_t ways,
                                                     double* o) {
  const int64_t part = ((n / ways) / 256) * 256;
  if (part == 0) { sums_plain(p, g, n, o); return; }
  double acc[3] = {0, 0, 0};
  for (int64_t s = 0; s < part; s += 256) {
    for (int64_t w = 0; w < ways; ++w) {
      const float* pw = p + w * part;
      const float* gw = g + w * part;
      float a = 0, b = 0, c = 0;
#pragma omp simd reduction(+ : a, b, c)
      for (int64_t i = s; i < s + 256; ++i) { const float x = pw[i], y = gw[i]; a += x * x; b += y * y; c += x * y; }
      acc[0] += a; acc[1] += b; acc[2] += c;
    }
  }
  sums_plain(p + ways * part, g + ways * part, n - ways * part, acc);
  for (int k = 0; k < 3; ++k) o[k] += acc[k];
}

template <int K>
__attribute__((target("avx2"))) static void update_interleaved(float* th, float* p, const float* g, int64_t n,
                                                              float d, float c, float h) {
  const int64_t part = ((n / K) / 256) * 256;
#pragma omp simd
  for (int64_t i = 0; i < part; ++i) {
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) {
      const int64_t j = k * part + i;
      const float q = d * p[j] - c * g[j]; p[j] = q; th[j] = th[j] + h * q;
    }
  }
  update_plain(th + K * part, p + K * part, g + K * part, n - K * part, d, c, h);
}


// quarters walked in one loop with twelve accumulators (eight read streams in flight)
__attribute__((target("avx2"))) static void sums_quarters(const float* p, const float* g, int64_t n, double* o) {
  const int64_t q = ((n / 4) / 256) * 256;
  double r[12] = {0};
  for (int64_t s = 0; s < q; s += 256) {
    float a0 = 0, b0 = 0, c0 = 0, a1 = 0, b1 = 0, c1 = 0, a2 = 0, b2 = 0, c2 = 0, a3 = 0, b3 = 0, c3 = 0;
#pragma omp simd reduction(+ : a0, b0, c0, a1, b1, c1, a2, b2, c2, a3, b3, c3)
    for (int64_t i = s; i < s + 256; ++i) {
      const float x0 = p[i], y0 = g[i], x1 = p[q + i], y1 = g[q + i];
      const float x2 = p[2 * q + i], y2 = g[2 * q + i], x3 = p[3 * q + i], y3 = g[3 * q + i];
      a0 += x0 * x0; b0 += y0 * y0; c0 += x0 * y0; a1 += x1 * x1; b1 += y1 * y1; c1 += x1 * y1;
      a2 += x2 * x2; b2 += y2 * y2; c2 += x2 * y2; a3 += x3 * x3; b3 += y3 * y3; c3 += x3 * y3;
    }
    r[0] += a0; r[1] += b0; r[2] += c0; r[3] += a1; r[4] += b1; r[5] += c1;
    r[6] += a2; r[7] += b2; r[8] += c2; r[9] += a3; r[10] += b3; r[11] += c3;
  }
  double tail[3] = {0, 0, 0};
  sums_plain(p + 4 * q, g + 4 * q, n - 4 * q, tail);
  for (int k = 0; k < 3; ++k) o[k] += r[k] + r[3 + k] + r[6 + k] + r[9 + k] + tail[k];
}


// the halves update, touching one line of the next 4 KiB page of every stream once per 1 KiB block (a hint to
// the hardware prefetcher, which does not cross page boundaries on its own)
__attribute__((target("avx2"))) static void update_halves_page(float* th, float* p, const float* g, int64_t n,
                                                              float d, float c, float h, int64_t ahead) {
  const int64_t half = n / 32 * 16;
  float *th2 = th + half, *p2 = p + half;
  const float* g2 = g + half;
  for (int64_t s = 0; s < half; s += 256) {
    const int64_t e = std::min(half, s + 256);
    if (s + ahead < half) {
      __builtin_prefetch(p + s + ahead, 1, 3); __builtin_prefetch(p2 + s + ahead, 1, 3);
      __builtin_prefetch(th + s + ahead, 1, 3); __builtin_prefetch(th2 + s + ahead, 1, 3);
      __builtin_prefetch(g + s + ahead, 0, 3); __builtin_prefetch(g2 + s + ahead, 0, 3);
    }
#pragma omp simd
    for (int64_t i = s; i < e; ++i) {
      const float q = d * p[i] - c * g[i], q2 = d * p2[i] - c * g2[i];
      p[i] = q; p2[i] = q2; th[i] = th[i] + h * q; th2[i] = th2[i] + h * q2;
    }
  }
  update_plain(th + 2 * half, p + 2 * half, g + 2 * half, n - 2 * half, d, c, h);
}


// the sums of every tensor with one kernel (kind: plain, pf, halves, hint, quarters, ways2, ways4, ways8); the total,
// so that nothing is optimised away
double sums(std::vector<Tensor> ps, std::vector<Tensor> gs, std::string kind, int64_t ahead) {
  double out[3] = {0, 0, 0};
  for (size_t i = 0; i < ps.size(); ++i) {
    const float* p = ps[i].data_ptr<float>();
    const float* g = gs[i].data_ptr<float>();
    const int64_t m = ps[i].numel();
    if (kind == "plain") sums_plain(p, g, m, out);
    else if (kind == "pf") sums_pf(p, g, m, ahead, out);
    else if (kind == "halves") sums_halves(p, g, m, 0, out);
    else if (kind == "hint") sums_halves(p, g, m, ahead, out);
    else if (kind == "quarters") sums_quarters(p, g, m, out);
    else if (kind.rfind("ways", 0) == 0) sums_ways(p, g, m, std::stoll(kind.substr(4)), out);
    else TORCH_CHECK(false, "sums: unknown kind ", kind);
  }
  return out[0] + out[1] + out[2];
}

// the update of every tensor with one kernel (kind: plain, pf, nt, halves, hint, quarters), in tensor order or
// in reverse order
void update(std::vector<Tensor> ths, std::vector<Tensor> ps, std::vector<Tensor> gs, std::string kind, int64_t ahead,
            bool reverse) {
  const int64_t n = ps.size();
  for (int64_t j = 0; j < n; ++j) {
    const int64_t i = reverse ? n - 1 - j : j;
    float* th = ths[i].data_ptr<float>();
    float* p = ps[i].data_ptr<float>();
    const float* g = gs[i].data_ptr<float>();
    const int64_t m = ps[i].numel();
    if (kind == "plain") update_plain(th, p, g, m, 1.0f, 1e-7f, 1e-7f);
    else if (kind == "pf") update_pf(th, p, g, m, 1.0f, 1e-7f, 1e-7f, ahead);
    else if (kind == "nt") update_nt(th, p, g, m, 1.0f, 1e-7f, 1e-7f);
    else if (kind == "halves") update_interleaved<2>(th, p, g, m, 1.0f, 1e-7f, 1e-7f);
    else if (kind == "quarters") update_interleaved<4>(th, p, g, m, 1.0f, 1e-7f, 1e-7f);
    else if (kind == "hint") update_halves_page(th, p, g, m, 1.0f, 1e-7f, 1e-7f, ahead);
    else TORCH_CHECK(false, "update: unknown kind ", kind);
  }
}

// the cost model's probe: read R flat float32 streams element by element, write the first W of them back in place
template <int R, int W>
__attribute__((target("avx2"))) static double read_write(float* const* x, int64_t n, float eps) {
  float* xs[R];
  for (int k = 0; k < R; ++k) xs[k] = x[k];
  double total = 0;
  for (int64_t s = 0; s < n; s += 256) {
    const int64_t e = std::min(n, s + 256);
    float acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = s; i < e; ++i) {
#pragma GCC unroll 8
      for (int k = 0; k < R; ++k) {
        const float v = xs[k][i];
        acc += v * v;
        if (k < W) xs[k][i] = v + eps;
      }
    }
    total += acc;
  }
  return total;
}

double streams(std::vector<Tensor> xs, int64_t nread, int64_t nwrite, double eps) {
  std::vector<float*> x;
  for (auto& t : xs) x.push_back(t.data_ptr<float>());
  const int64_t n = xs[0].numel();
  const float f = static_cast<float>(eps);
  switch (nread * 10 + nwrite) {
    case 10: return read_write<1, 0>(x.data(), n, f);
    case 20: return read_write<2, 0>(x.data(), n, f);
    case 30: return read_write<3, 0>(x.data(), n, f);
    case 40: return read_write<4, 0>(x.data(), n, f);
    case 50: return read_write<5, 0>(x.data(), n, f);
    case 11: return read_write<1, 1>(x.data(), n, f);
    case 21: return read_write<2, 1>(x.data(), n, f);
    case 22: return read_write<2, 2>(x.data(), n, f);
    case 32: return read_write<3, 2>(x.data(), n, f);
    case 43: return read_write<4, 3>(x.data(), n, f);
    case 52: return read_write<5, 2>(x.data(), n, f);
    default: TORCH_CHECK(false, "streams: (nread, nwrite) not instantiated");
  }
  return 0;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("streams", &streams, "read nread streams, write back the first nwrite");
  m.def("sums", &sums, "(|p|^2, |g|^2, <p,g>) of every tensor, one kernel variant");
  m.def("update", &update, "p <- d p - c g, theta <- theta + h p, one kernel variant");
}
"""


@functools.lru_cache(maxsize=1)
def _probe() -> Any:
    from torch.utils.cpp_extension import load_inline

    return load_inline(name="hamopt_bandwidth_probe_v9", cpp_sources=[_SOURCE], verbose=False,
                       extra_cflags=["-O3", "-fopenmp-simd", "-ffp-contract=off"])


def ratio_rounds(fns: dict[str, Callable[[], object]], *, rounds: int, ref: str = "adamw_fused",
                 warmup: int = 3) -> None:
    """Time ``fns`` in interleaved rounds and print, per function, the median ms, the median over
    rounds of (its time / ``ref``'s time in the same round), the quartiles of that ratio and the
    fastest round in ms."""
    samples = interleaved_samples(fns, rounds=rounds, warmup=warmup)
    print("| variant | median ms | fastest ms | / AdamW fused, per round: median (quartiles) |\n|---|---:|---:|---|")
    for name, ts in samples.items():
        r = sorted(a / b for a, b in zip(ts, samples[ref]))
        q = len(r) // 4
        print(f"| {name} | {statistics.median(ts) * 1e3:.2f} | {min(ts) * 1e3:.2f} | "
              f"{statistics.median(r):.3f}× ({r[q]:.3f}–{r[-1 - q]:.3f}) |")


def cache_reuse(m: Any) -> None:
    """Read one (p, g) pair right after reading it (cached if it fits) and right after 128 MB of
    other data, by size."""
    flush = [torch.randn(16_000_000) for _ in range(2)]
    print("| p + g | after 128 MB: ms (GB/s) | read again at once: ms (GB/s) |\n|---|---:|---:|")
    for n in (250_000, 1_000_000, 2_000_000, 4_000_000):
        p, g = torch.randn(n), torch.randn(n)
        cold, warm = [], []
        for _ in range(9):
            m.sums(flush[:1], flush[1:], "plain", 0)
            t0 = time.perf_counter()
            m.sums([p], [g], "plain", 0)
            t1 = time.perf_counter()
            m.sums([p], [g], "plain", 0)
            t2 = time.perf_counter()
            cold.append(t1 - t0)
            warm.append(t2 - t1)
        c, w = statistics.median(cold), statistics.median(warm)
        print(f"| {8 * n / 2**20:.1f} MiB | {c * 1e3:.2f} ({8 * n / c / 1e9:.1f}) "
              f"| {w * 1e3:.2f} ({8 * n / w / 1e9:.1f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--only", default="refs,model,sums,update,order,cache,steps")
    args = parser.parse_args()
    only = set(args.only.split(","))
    torch.set_num_threads(1)
    m = _probe()
    base = resnet18_params()
    th = [p.detach() for p in base]
    ps = [p.detach().clone() for p in base]
    gs = [p.grad for p in base]
    numel = sum(t.numel() for t in th)
    adamw = torch.optim.AdamW(clone_params(base), lr=1e-3, fused=True)
    coefs = torch.tensor([[1.0] * len(th), [1e-7] * len(th), [1e-7] * len(th)], dtype=torch.float64)
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} interleaved rounds, {numel:,} elements per stream, "
          f"load average {os.getloadavg()}")
    groups: dict[str, dict[str, Callable[[], object]]] = {}
    if "refs" in only:
        scratch = [torch.empty_like(g) for g in gs]
        groups["refs"] = {"torch.dot": lambda: [torch.dot(p.view(-1), g.view(-1)) for p, g in zip(ps, gs)],
                          "copy_": lambda: [s.copy_(g) for s, g in zip(scratch, gs)],
                          "sums hamopt": lambda: _fused_cpu.sums(ps, gs, with_momenta=True)}
    if "model" in only:
        flat = [torch.randn(numel) for _ in range(5)]
        groups["model"] = {f"r{r}w{w}": (lambda r=r, w=w: m.streams(flat, r, w, 0.0))
                           for r, w in ((1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (1, 1), (2, 1), (3, 2), (4, 3),
                                        (5, 2))}
    if "sums" in only:
        sums = {k: (lambda k=k, a=a: m.sums(ps, gs, k, a)) for k, a in
                (("plain", 0), ("halves", 0), ("quarters", 0), ("ways2", 0), ("ways4", 0))}
        sums.update({f"pf{a}": (lambda a=a: m.sums(ps, gs, "pf", a)) for a in (512, 2048)})
        sums["hint2048"] = lambda: m.sums(ps, gs, "hint", 2048)
        sums["hamopt"] = lambda: _fused_cpu.sums(ps, gs, with_momenta=True)
        groups["sums"] = sums
    if "update" in only:
        upd = {k: (lambda k=k: m.update(th, ps, gs, k, 0, False)) for k in ("plain", "nt", "halves", "quarters")}
        upd["pf512"] = lambda: m.update(th, ps, gs, "pf", 512, False)
        upd["hint2048"] = lambda: m.update(th, ps, gs, "hint", 2048, False)
        upd["hamopt"] = lambda: _fused_cpu.update(th, ps, gs, coefs, drift_first=False)
        groups["update"] = upd
    if "order" in only:
        groups["order"] = {
            "same order": lambda: (m.sums(ps, gs, "halves", 0), m.update(th, ps, gs, "halves", 0, False)),
            "reverse order": lambda: (m.sums(ps, gs, "halves", 0), m.update(th, ps, gs, "halves", 0, True))}
    if "steps" in only:
        loss = torch.tensor(2.3)
        energy = hamopt.Leapfrog(clone_params(base), lr=1e-3, mode="streaming", fused=True, track_energy=True, cap=2.0)
        lean = hamopt.Leapfrog(clone_params(base), lr=1e-3, mode="streaming", fused=True, track_energy=False,
                               cap=None, check_finite=False)
        nu0 = hamopt.ECDSep(clone_params(base), lr=1e-3, eta=2.0, nu=0.0, seed=0, fused=True)
        noisy = hamopt.ECDSep(clone_params(base), lr=1e-3, eta=2.0, nu=1e-5, seed=0, fused=True)
        groups["steps"] = {"leapfrog_energy_fused": lambda: energy.step(loss=loss),
                           "leapfrog_lean_fused": lambda: lean.step(loss=loss),
                           "ecdsep_nu0_fused": lambda: nu0.step(lambda: loss),
                           "ecdsep_fused": lambda: noisy.step(lambda: loss)}
    for name, fns in groups.items():
        print(f"\n{name}:")
        ratio_rounds({"adamw_fused": adamw.step, **fns}, rounds=args.rounds)
    if "cache" in only:
        print("\ncache:")
        cache_reuse(m)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
