r"""C++ source of the bounce-noise generator of the fused ECD kernels (:mod:`hamopt.optim._fused_ecd_cpu`).

Philox4x32-10 (Salmon et al., SC 2011) keyed by the seed, with the counter (quad index, tensor
index, step), and the Box-Muller transform with float32 polynomial logarithm and sine/cosine:
``block_normals`` writes the 64 normals of one block of elements. The portable loop and the
AVX2 one (eight calls per vector, two vectors interleaved) give the same bits. The full
definition of the noise is in :mod:`hamopt.optim._fused_ecd_cpu`'s docstring. The text uses
that module's includes and macros (``BLOCK``, ``HAMOPT_CLONES``) and is compiled as part of its
source.
"""

PHILOX_BOX_MULLER_SOURCE = r"""
// ------------------------------------------------------------------ Philox4x32-10 + Box-Muller
static inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

// ln x for x in (0, 1] normal floats: x = m 2^e with m in [sqrt(1/2), sqrt(2)) (exponent split by integer
// arithmetic on the bits, no branch), ln m = 2 atanh(t), t = (m - 1)/(m + 1), |t| <= 0.1716, series to t^9
// (error < 3e-10)
static inline float log_unit(float x) {
  const int32_t bits = static_cast<int32_t>(float_to_bits(x));
  const int32_t e = (bits - 0x3f3504f3) >> 23;  // 0x3f3504f3: the bits of sqrt(1/2)
  const float m = bits_to_float(static_cast<uint32_t>(bits - e * (1 << 23)));
  const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
  const float series = 1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9))));
  return 2.0f * t * series + static_cast<float>(e) * 0.693147180559945f;
}

// sin/cos of 2 pi u via the half angle x = pi u - pi/2 in [-pi/2, pi/2): sin 2x = 2 s c, cos 2x = c^2 - s^2
// (Taylor polynomials of s to x^11 and c to x^12: errors below 6e-8)
HAMOPT_CLONES static void box_muller(const uint32_t* ra, const uint32_t* rb, float* z_cos, float* z_sin) {
  constexpr float INV24 = 1.0f / 16777216.0f, PI = 3.14159265358979f;
#pragma omp simd
  for (int q = 0; q < BLOCK / 4; ++q) {
    const float u1 = static_cast<float>(static_cast<int32_t>((ra[q] >> 8) + 1u)) * INV24;
    const float u2 = static_cast<float>(static_cast<int32_t>(rb[q] >> 8)) * INV24;
    const float radius = std::sqrt(-2.0f * log_unit(u1));
    const float x = PI * u2 - 0.5f * PI, x2 = x * x;
    const float s = x * (1.0f + x2 * (-1.0f / 6 + x2 * (1.0f / 120 + x2 * (-1.0f / 5040 + x2 * (1.0f / 362880
                    + x2 * (-1.0f / 39916800))))));
    const float c = 1.0f + x2 * (-0.5f + x2 * (1.0f / 24 + x2 * (-1.0f / 720 + x2 * (1.0f / 40320
                    + x2 * (-1.0f / 3628800 + x2 * (1.0f / 479001600))))));
    z_cos[q] = radius * (c * c - s * s);
    z_sin[q] = radius * (2.0f * s * c);
  }
}

// BLOCK / 4 Philox4x32-10 calls: counter (quad lo, quad hi, tensor index, step), key = seed
HAMOPT_CLONES static void philox_words(uint64_t seed, uint32_t step, uint32_t index, uint64_t first_quad,
                                       uint32_t* r0, uint32_t* r1, uint32_t* r2, uint32_t* r3) {
#pragma omp simd
  for (int q = 0; q < BLOCK / 4; ++q) {
    const uint64_t quad = first_quad + static_cast<uint64_t>(q);
    uint32_t c0 = static_cast<uint32_t>(quad), c1 = static_cast<uint32_t>(quad >> 32), c2 = index, c3 = step;
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      const uint64_t m0 = static_cast<uint64_t>(0xD2511F53u) * c0;
      const uint64_t m1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
      const uint32_t n0 = static_cast<uint32_t>(m1 >> 32) ^ c1 ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(m0 >> 32) ^ c3 ^ k1;
      c1 = static_cast<uint32_t>(m1);
      c3 = static_cast<uint32_t>(m0);
      c0 = n0;
      c2 = n2;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    r0[q] = c0; r1[q] = c1; r2[q] = c2; r3[q] = c3;
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAMOPT_PHILOX_AVX2 1
// the same words, eight calls per vector: 32 x 32 -> 64-bit products of the even and the odd lanes
__attribute__((target("avx2"))) static inline void mul_hi_lo(__m256i a, __m256i m, __m256i& lo, __m256i& hi) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

// the counter lanes of calls first_quad + g .. first_quad + g + 7: low word, and high word plus one where the low
// word wrapped (unsigned c0 < base)
__attribute__((target("avx2"))) static inline void quad_counters(uint64_t q0, __m256i& c0, __m256i& c1) {
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i base = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(q0)));
  c0 = _mm256_add_epi32(base, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(base, sign), _mm256_xor_si256(c0, sign));
  c1 = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(q0 >> 32))), wrapped);
}

// two vectors of eight calls each, interleaved round by round (independent chains hide the multiply latency)
__attribute__((target("avx2"))) static void philox_words_avx2(uint64_t seed, uint32_t step, uint32_t index,
                                                              uint64_t first_quad, uint32_t* r0, uint32_t* r1,
                                                              uint32_t* r2, uint32_t* r3) {
  static_assert(BLOCK / 4 == 16, "two vectors of eight Philox calls per block");
  const __m256i M0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i M1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  __m256i a0, a1, b0, b1;
  quad_counters(first_quad, a0, a1);
  quad_counters(first_quad + 8, b0, b1);
  __m256i a2 = _mm256_set1_epi32(static_cast<int>(index)), a3 = _mm256_set1_epi32(static_cast<int>(step));
  __m256i b2 = a2, b3 = a3;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0)), key1 = _mm256_set1_epi32(static_cast<int>(k1));
    __m256i alo0, ahi0, alo1, ahi1, blo0, bhi0, blo1, bhi1;
    mul_hi_lo(a0, M0, alo0, ahi0);
    mul_hi_lo(b0, M0, blo0, bhi0);
    mul_hi_lo(a2, M1, alo1, ahi1);
    mul_hi_lo(b2, M1, blo1, bhi1);
    a0 = _mm256_xor_si256(_mm256_xor_si256(ahi1, a1), key0);
    b0 = _mm256_xor_si256(_mm256_xor_si256(bhi1, b1), key0);
    a2 = _mm256_xor_si256(_mm256_xor_si256(ahi0, a3), key1);
    b2 = _mm256_xor_si256(_mm256_xor_si256(bhi0, b3), key1);
    a1 = alo1; b1 = blo1;
    a3 = alo0; b3 = blo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(r0), a0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(r0 + 8), b0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(r1), a1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(r1 + 8), b1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(r2), a2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(r2 + 8), b2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(r3), a3);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(r3 + 8), b3);
}
static const bool HAS_AVX2 = __builtin_cpu_supports("avx2");
#endif

// the normals of elements [4 first_quad, 4 first_quad + BLOCK) of one tensor: word w of quad q feeds
// element q + (BLOCK / 4) w of the block
static void block_normals(uint64_t seed, uint32_t step, uint32_t index, uint64_t first_quad, float* z, bool portable) {
  constexpr int Q = BLOCK / 4;
  alignas(32) uint32_t r0[Q], r1[Q], r2[Q], r3[Q];
#ifdef HAMOPT_PHILOX_AVX2
  if (HAS_AVX2 && !portable) philox_words_avx2(seed, step, index, first_quad, r0, r1, r2, r3);
  else philox_words(seed, step, index, first_quad, r0, r1, r2, r3);
#else
  philox_words(seed, step, index, first_quad, r0, r1, r2, r3);
#endif
  box_muller(r0, r1, z, z + Q);
  box_muller(r2, r3, z + 2 * Q, z + 3 * Q);
}

"""
