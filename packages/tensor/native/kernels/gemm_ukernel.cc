// Register-blocked GEMM microkernels. Each keeps the whole MR x NR tile of C in vector registers
// for the length of the k loop: per k step it loads one row of the packed B strip (NR wide),
// broadcasts MR values of the packed A strip and issues MR * NR / lanes FMAs.
//   AVX-512 f32: 14 x 32 -> 28 zmm accumulators + 2 for B (of 32 registers); it prefetches its C
//                tile like the bf16 kernel (measured +13-21% at 1024^3).
//   AVX-512 bf16: the same tile; each vdpbf16ps consumes a k pair (two products per lane). It
//                 prefetches its C tile near the end of the k loop and has a variant per row count
//                 for the last strip of A. 14 x 32 is already the largest tile the 32 registers
//                 hold (28 accumulators, 2 B vectors, 1 broadcast; 15 x 32 or 7 x 64 would need 33).
//                 A bf16 C row is rounded by vcvtne2ps2bf16 (storeTileBf16Dot): +4% on one Zen 4
//                 core for the GPT step's k = 384 products (2048 x 1536 x 384: 209 -> 218 GFLOP/s).
//   AVX2 f32: 6 x 16 -> 12 ymm accumulators + 2 for B + 1 broadcast (of 16 registers); it
//             prefetches its C tile too, and its k loop is unrolled 8 times.
//   Baseline: 4 x 8 -> 8 xmm accumulators.
#include "ds/gemm_ukernel.h"

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized on their "undefined" pass-through
// operands when inlined here (as in gemm.cc); the warning concerns the header, not this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include "ds/bf16_avx2.h"
#include "ds/bf16_avx512.h"
#include "ds/simd.h"

namespace ds {
namespace {

constexpr int kMr512 = 14;
constexpr int kMr256 = 6;

// v + bias for the epilogues, as 1 * bias + v in an FMA: the same arithmetic as beta = 1 onto a C
// filled with the bias (the driver's old way), and written as an FMA so that GCC, which contracts a
// vector multiply and add into one FMA (-ffp-contract=fast), cannot fold the alpha * acc before it
// into the add (one rounding instead of two: other bits than every other path's).
DS_TARGET_AVX512 DS_INLINE __m512 addBias(__m512 v, __m512 bias) { return _mm512_fmadd_ps(_mm512_set1_ps(1.0f), bias, v); }
DS_TARGET_AVX2 DS_INLINE __m256 addBias(__m256 v, __m256 bias) { return _mm256_fmadd_ps(_mm256_set1_ps(1.0f), bias, v); }

// `bias` (when hasBias) is added last (addBias).
DS_TARGET_AVX512 DS_INLINE void store512(float* c, __m512 acc, float alpha, float beta, __mmask16 m, bool hasBias = false,
                                         __m512 bias = _mm512_setzero_ps()) {
  __m512 v = _mm512_mul_ps(acc, _mm512_set1_ps(alpha));
  if (beta != 0.0f) v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, c), v);
  if (hasBias) v = addBias(v, bias);
  _mm512_mask_storeu_ps(c, m, v);
}

// The same into a bf16 C: round to nearest even exactly as f32ToBf16 (simd.h) does, NaN kept quiet.
DS_TARGET_AVX512 DS_INLINE void store512Bf16(uint16_t* c, __m512 acc, float alpha, float beta, __mmask16 m,
                                             bool hasBias = false, __m512 bias = _mm512_setzero_ps()) {
  __m512 v = _mm512_mul_ps(acc, _mm512_set1_ps(alpha));
  if (beta != 0.0f) {
    v = _mm512_fmadd_ps(_mm512_set1_ps(beta), widenBf16x16(c, m), v);
  }
  if (hasBias) v = addBias(v, bias);
  const __m512i b = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmp_epi32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000), _MM_CMPINT_NLE);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x40)));
  _mm256_mask_storeu_epi16(c, m, _mm512_cvtepi32_epi16(r));
}

// The tile's two 16-column pieces of the bias (zero past nr), loaded once for all its rows.
DS_TARGET_AVX512 DS_INLINE void biasPieces(const float* bias, __mmask16 m0, __mmask16 m1, __m512& b0, __m512& b1) {
  b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
}

template <int R>
DS_TARGET_AVX512 DS_INLINE void storeTile512(__m512 (&acc)[R][2], void* c, int64_t ldc, bool cBf16, float alpha,
                                             float beta, const float* bias, int mr, int nr) {
  const __mmask16 m0 = nr >= 16 ? 0xffff : static_cast<__mmask16>((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : static_cast<__mmask16>((1u << (nr - 16)) - 1);
  const bool hb = bias != nullptr;
  __m512 b0, b1;
  biasPieces(bias, m0, m1, b0, b1);
  if (cBf16) {
    auto* cb = static_cast<uint16_t*>(c);
#pragma GCC unroll 14
    for (int i = 0; i < mr; ++i) {
      store512Bf16(cb + i * ldc, acc[i][0], alpha, beta, m0, hb, b0);
      if (m1) store512Bf16(cb + i * ldc + 16, acc[i][1], alpha, beta, m1, hb, b1);
    }
    return;
  }
  auto* cf = static_cast<float*>(c);
#pragma GCC unroll 14
  for (int i = 0; i < mr; ++i) {
    store512(cf + i * ldc, acc[i][0], alpha, beta, m0, hb, b0);
    if (m1) store512(cf + i * ldc + 16, acc[i][1], alpha, beta, m1, hb, b1);
  }
}

// storeTile512 for the bf16 kernel, whose CPU has AVX512_BF16: a bf16 C row of the tile (32 columns) is
// rounded by one vcvtne2ps2bf16 (roundBf16x32) and written by one store, where store512Bf16 takes about
// ten integer instructions per 16 columns; a row holding a subnormal goes through store512Bf16.
template <int R>
DS_TARGET_AVX512BF16 DS_INLINE void storeTileBf16Dot(__m512 (&acc)[R][2], void* c, int64_t ldc, bool cBf16, float alpha,
                                                     float beta, const float* bias, int nr) {
  if (!cBf16) return storeTile512(acc, c, ldc, cBf16, alpha, beta, bias, R, nr);
  auto* cb = static_cast<uint16_t*>(c);
  const __mmask32 m = nr >= 32 ? 0xffffffffu : (1u << nr) - 1;
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const bool hb = bias != nullptr;
  __m512 b0, b1;
  biasPieces(bias, static_cast<__mmask16>(m), static_cast<__mmask16>(m >> 16), b0, b1);
#pragma GCC unroll 14
  for (int i = 0; i < R; ++i) {
    uint16_t* row = cb + i * ldc;
    __m512 v0 = _mm512_mul_ps(acc[i][0], va), v1 = _mm512_mul_ps(acc[i][1], va);
    if (beta != 0.0f) {
      v0 = _mm512_fmadd_ps(vb, widenBf16x16(row, static_cast<__mmask16>(m)), v0);
      v1 = _mm512_fmadd_ps(vb, widenBf16x16(row + 16, static_cast<__mmask16>(m >> 16)), v1);
    }
    if (hb) {
      v0 = addBias(v0, b0);
      v1 = addBias(v1, b1);
    }
    __m512i h;
    if (roundBf16x32(v0, v1, h)) {
      _mm512_mask_storeu_epi16(row, m, h);
      continue;
    }
    store512Bf16(row, v0, 1.0f, 0.0f, static_cast<__mmask16>(m));
    if (nr > 16) store512Bf16(row + 16, v1, 1.0f, 0.0f, static_cast<__mmask16>(m >> 16));
  }
}

// The C tile is usually not in cache (a 1024^2 f32 C is 4 MiB, and its rows are 4 KiB apart), so
// its lines are prefetched from kCPrefetchPairs k pairs (about 900 cycles) before the end of the k
// loop, one row per k pair: early enough to hide a miss to memory, late enough that the streaming B
// strip has not evicted them again. Without it every tile ends waiting on its stores (measured: 8-9%
// of the kernel's time). A row of the tile is 128 bytes, which span three lines unless C is 64-byte
// aligned (JS arrays usually start 16 bytes past a line), so the last element's line is prefetched
// too: with only the first two, a 1024^3 product with such a C ran 7% slower.
constexpr int64_t kCPrefetchPairs = 64;
// The same lead for the f32 kernel, in k steps (one f32 k step costs what one bf16 k pair does).
constexpr int64_t kCPrefetchSteps = 64;

// Row `i` of a tile of C whose rows are `ldc` elements of 4 (f32) or 2 (bf16) bytes: 128 or 64 bytes.
DS_TARGET_AVX512 DS_INLINE void prefetchRow(const void* c, int64_t ldc, bool cBf16, int64_t i) {
  const char* row = static_cast<const char*>(c) + i * ldc * (cBf16 ? 2 : 4);
  _mm_prefetch(row, _MM_HINT_T0);
  _mm_prefetch(row + (cBf16 ? 62 : 64), _MM_HINT_T0);
  if (!cBf16) _mm_prefetch(row + 124, _MM_HINT_T0);
}

DS_TARGET_AVX512 void ukrF32Avx512(int64_t kc, const float* a, const float* b, void* c, int64_t ldc, bool cBf16,
                                   float alpha, float beta, const float* bias, int mr, int nr) {
  __m512 acc[kMr512][2];
#pragma GCC unroll 14
  for (int i = 0; i < kMr512; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  const int64_t pPrefetch = kc > kCPrefetchSteps ? kc - kCPrefetchSteps : 0;
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * 32), _MM_HINT_T0);
    if (static_cast<uint64_t>(p - pPrefetch) < static_cast<uint64_t>(kMr512)) prefetchRow(c, ldc, cBf16, p - pPrefetch);
#pragma GCC unroll 14
    for (int i = 0; i < kMr512; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kMr512;
    b += 32;
  }
  storeTile512(acc, c, ldc, cBf16, alpha, beta, bias, mr, nr);
}

// The first R rows of a 14 x 32 bf16 tile (the packed A strip still holds 14 rows per k pair): R is
// 14 but for the last strip of A, whose mr < 14 rows then cost mr rows of work rather than 14.
template <int R>
DS_TARGET_AVX512BF16 void bf16Rows(int64_t kp, const uint16_t* a, const uint16_t* b, void* c, int64_t ldc, bool cBf16,
                                   float alpha, float beta, const float* bias, int nr) {
  __m512 acc[R][2];
#pragma GCC unroll 14
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  const int64_t qPrefetch = kp > kCPrefetchPairs ? kp - kCPrefetchPairs : 0;
  for (int64_t q = 0; q < kp; ++q) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + 32);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * 64), _MM_HINT_T0);
    if (static_cast<uint64_t>(q - qPrefetch) < static_cast<uint64_t>(R)) prefetchRow(c, ldc, cBf16, q - qPrefetch);
#pragma GCC unroll 14
    for (int i = 0; i < R; ++i) {
      int32_t pair;
      __builtin_memcpy(&pair, a + 2 * i, 4);
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
    a += 2 * kMr512;
    b += 64;
  }
  storeTileBf16Dot(acc, c, ldc, cBf16, alpha, beta, bias, nr);
}

DS_TARGET_AVX512BF16 void ukrBf16Avx512(int64_t kp, const uint16_t* a, const uint16_t* b, void* c, int64_t ldc,
                                        bool cBf16, float alpha, float beta, const float* bias, int mr, int nr) {
  using Rows = void (*)(int64_t, const uint16_t*, const uint16_t*, void*, int64_t, bool, float, float, const float*, int);
  static constexpr Rows kRows[kMr512] = {bf16Rows<1>, bf16Rows<2>, bf16Rows<3>,  bf16Rows<4>,  bf16Rows<5>,
                                         bf16Rows<6>, bf16Rows<7>, bf16Rows<8>,  bf16Rows<9>,  bf16Rows<10>,
                                         bf16Rows<11>, bf16Rows<12>, bf16Rows<13>, bf16Rows<14>};
  kRows[mr - 1](kp, a, b, c, ldc, cBf16, alpha, beta, bias, nr);
}

// The AVX2 f32 kernel's C prefetch lead, in k steps (about 800 cycles at 6 cycles a step): the C
// tile's rows (64 bytes, two lines unless C is 64-byte aligned) are fetched all at once that far
// before the end of the k loop. Measured at 1024^3 f32 on one Zen 3 core: the prefetch with the k
// loop unrolled 4 times ran 10% faster than neither; leads of 64 and 256 steps were no better.
constexpr int64_t kCPrefetchStepsAvx2 = 128;

// The baseline kernel writes f32 C only (its shape has bf16C false); the AVX2 one also bf16 C.
// The AVX2 k loop is unrolled 8 times (measured 3-4% over 4 or 2 at 1024^3); the accumulators,
// the B row and the broadcast stay in ymm0-ymm15 across it (checked with objdump).
DS_TARGET_AVX2 void ukrF32Avx2(int64_t kc, const float* a, const float* b, void* cv, int64_t ldc, bool cBf16, float alpha,
                               float beta, const float* bias, int mr, int nr) {
  float* c = static_cast<float*>(cv);
  uint16_t* ch = static_cast<uint16_t*>(cv);
  const int64_t cElem = cBf16 ? 2 : 4;
  __m256 acc[kMr256][2];
#pragma GCC unroll 6
  for (int i = 0; i < kMr256; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  const auto step = [&]() DS_TARGET_AVX2 {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kMr256; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kMr256;
    b += 16;
  };
  const int64_t pPrefetch = kc > kCPrefetchStepsAvx2 ? kc - kCPrefetchStepsAvx2 : 0;
#pragma GCC unroll 8
  for (int64_t p = 0; p < pPrefetch; ++p) step();
#pragma GCC unroll 6
  for (int i = 0; i < kMr256; ++i) {
    const char* row = static_cast<const char*>(cv) + i * ldc * cElem;
    _mm_prefetch(row, _MM_HINT_T0);
    _mm_prefetch(row + 15 * cElem, _MM_HINT_T0);
  }
#pragma GCC unroll 8
  for (int64_t p = pPrefetch; p < kc; ++p) step();
  // Every loop over the tile is unrolled with constant bounds, so the accumulators stay in registers
  // (a runtime-indexed access would make GCC keep them in memory across the k loop).
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  if (mr == kMr256 && nr == 16) {
    const __m256 bias0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
    const __m256 bias1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < kMr256; ++i) {
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        __m256 v = _mm256_mul_ps(acc[i][h], va);
        if (cBf16) {
          uint16_t* ci = ch + i * ldc + 8 * h;
          if (beta != 0.0f) v = _mm256_fmadd_ps(vb, widenBf16x8(ci), v);
          if (bias) v = addBias(v, h ? bias1 : bias0);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(ci), bf16x8(v));
        } else {
          float* ci = c + i * ldc + 8 * h;
          if (beta != 0.0f) v = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), v);
          if (bias) v = addBias(v, h ? bias1 : bias0);
          _mm256_storeu_ps(ci, v);
        }
      }
    }
    return;
  }
  alignas(32) float tile[kMr256][16];
#pragma GCC unroll 6
  for (int i = 0; i < kMr256; ++i) {
    _mm256_store_ps(tile[i], acc[i][0]);
    _mm256_store_ps(tile[i] + 8, acc[i][1]);
  }
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      // The bias takes the place of beta * C (the driver passes beta = 0 with one).
      if (cBf16) {
        uint16_t* cij = ch + i * ldc + j;
        *cij = f32ToBf16(alpha * tile[i][j] + (bias ? bias[j] : beta != 0.0f ? beta * bf16ToF32(*cij) : 0.0f));
      } else {
        float* cij = c + i * ldc + j;
        *cij = alpha * tile[i][j] + (bias ? bias[j] : beta != 0.0f ? beta * *cij : 0.0f);
      }
    }
}

// Baseline x86-64: a 4 x 8 tile in plain C++ the compiler keeps in 8 of the 16 SSE registers.
void ukrF32Scalar(int64_t kc, const float* a, const float* b, void* cv, int64_t ldc, bool, float alpha, float beta,
                  const float* bias, int mr, int nr) {
  float* c = static_cast<float*>(cv);
  constexpr int MR = 4, NR = 8;
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int i = 0; i < MR; ++i) {
      const float ai = a[i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
    a += MR;
    b += NR;
  }
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      float* cij = c + i * ldc + j;
      *cij = alpha * acc[i][j] + (bias ? bias[j] : beta != 0.0f ? beta * *cij : 0.0f);
    }
}

}  // namespace

// f32: kc = 1024 so that C is written once for k <= 1024 (measured 3% over
// kc = 256 at 1024^3 once the C tile is prefetched), nc = 2048 to keep the packed B panel at 8 MiB.
const GemmShape kGemmAvx512 = {kMr512, 32, kMr512 * 6, 1024, 2048, false, Isa::Avx512, true, ukrF32Avx512, nullptr};
// bf16: kc = 2048 (1024 pairs), so a k up to 2048 is one pass and C is written once instead of
// re-read per k block (a bf16 C straight from the registers, no f32 workspace); the B strip
// (128 KiB) streams from L2, as the 64 KiB one of kc = 1024 did (measured faster at 1024^3 than
// kc = 256 or 512 with the strip in L1), and mc = 84 keeps the 344 KiB A block in L2 (1 MiB on Zen 4
// and 5, 2 MiB on Sapphire Rapids). Against kc = 1024 on 2 Zen 4 cores, the GPT d384 step's products
// with k of 1152 to 8192 ran 0.3-3% faster (2048 x 384 x 1536 to bf16: 396 -> 409 GFLOP/s).
const GemmShape kGemmAvx512Bf16 = {kMr512, 32, kMr512 * 6, 2048, 4096, true, Isa::Avx512, true, nullptr, ukrBf16Avx512};
// AVX2 (Zen 3: 32 KiB L1d, 512 KiB L2): kc = 512 makes the 32 KiB B strip fill L1 and halves the
// passes over C against kc = 256; mc = 96 keeps the 192 KiB A block in L2 (measured at 1024^3:
// kc = 512 +2-4% over 256, 384 and 768-1024 slower or no better, mc from 72 to 120 the same).
// bf16C: a bf16 C with k <= kc is rounded once from the tile's registers, not through an f32 workspace.
const GemmShape kGemmAvx2 = {kMr256, 16, kMr256 * 16, 512, 4096, false, Isa::Avx2, true, ukrF32Avx2, nullptr};
const GemmShape kGemmScalar = {4, 8, 4 * 32, 256, 4096, false, Isa::Scalar, false, ukrF32Scalar, nullptr};

}  // namespace ds
