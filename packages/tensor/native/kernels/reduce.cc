// Reductions. Sums that return a number accumulate in f64 (one partial per thread, added in thread
// order, so a result depends on the thread count only through that last addition); sumRows keeps an
// f64 accumulator per column and splits columns among threads; hasInfNan tests exponent bits.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "ds/bf16_avx512.h"
#include "ds/simd.h"
#include "ds/tile.h"

namespace ds {
namespace {

DS_INLINE double sumBody(const float* x, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]);
  return s;
}
DS_VARIANTS(double, sumTile, sumBody, (const float* x, int64_t n), (x, n))

DS_INLINE double sumSquaresBody(const float* x, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return s;
}
DS_VARIANTS(double, sumSquaresTile, sumSquaresBody, (const float* x, int64_t n), (x, n))

// Exponent all ones means Inf or NaN, for every float format.
DS_INLINE bool nonFinite32Body(const uint32_t* x, int64_t n) {
  uint32_t hit = 0;
#pragma omp simd reduction(| : hit)
  for (int64_t i = 0; i < n; ++i) hit |= (x[i] & 0x7f800000u) == 0x7f800000u ? 1u : 0u;
  return hit != 0;
}
DS_VARIANTS(bool, nonFinite32, nonFinite32Body, (const uint32_t* x, int64_t n), (x, n))
DS_INLINE bool nonFinite16Body(const uint16_t* x, int64_t n, uint16_t expMask) {
  uint32_t hit = 0;
#pragma omp simd reduction(| : hit)
  for (int64_t i = 0; i < n; ++i) hit |= (x[i] & expMask) == expMask ? 1u : 0u;
  return hit != 0;
}
DS_VARIANTS(bool, nonFinite16, nonFinite16Body, (const uint16_t* x, int64_t n, uint16_t expMask), (x, n, expMask))

DS_INLINE void addColumnsBody(double* acc, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<double>(x[i]);
}
DS_VARIANTS(void, addColumns, addColumnsBody, (double* acc, const float* x, int64_t n), (acc, x, n))

// sumRows on AVX-512 for f32 and bf16: columns [c0, c0 + len) of x [rows][cols] summed into out. 64
// columns at a time live in registers for the whole walk down the rows: each chunk of kRowChunk rows
// is summed in f32 and the chunk's sum added to an f64 accumulator, so a column's arithmetic depends on
// neither the block nor the thread (the generic path widened every element to f64 through a converted
// tile in memory: the bias gradients of the GPT d384 step, 25 calls, took 9.4 ms).
constexpr int64_t kRowChunk = 32;

DS_TARGET_AVX512 DS_INLINE __m512 load16(bool bf16, const void* x, int64_t i, __mmask16 m) {
  return bf16 ? widenBf16x16(static_cast<const uint16_t*>(x) + i, m) : _mm512_maskz_loadu_ps(m, static_cast<const float*>(x) + i);
}

template <int U>
DS_TARGET_AVX512 void sumColumns512(bool bf16, const void* x, int64_t rows, int64_t cols, int64_t c0, int64_t len,
                                    float* out, bool accumulate) {
  __mmask16 mask[U];
  for (int u = 0; u < U; ++u) {
    const int64_t live = std::max<int64_t>(0, std::min<int64_t>(16, len - 16 * u));
    mask[u] = live >= 16 ? 0xffff : static_cast<__mmask16>((1u << live) - 1);
  }
  __m512d lo[U], hi[U];
  for (int u = 0; u < U; ++u) lo[u] = hi[u] = _mm512_setzero_pd();
  for (int64_t r0 = 0; r0 < rows; r0 += kRowChunk) {
    const int64_t r1 = std::min(rows, r0 + kRowChunk);
    __m512 part[U];
    for (int u = 0; u < U; ++u) part[u] = _mm512_setzero_ps();
    for (int64_t r = r0; r < r1; ++r)
      for (int u = 0; u < U; ++u) part[u] = _mm512_add_ps(part[u], load16(bf16, x, r * cols + c0 + 16 * u, mask[u]));
    for (int u = 0; u < U; ++u) {
      lo[u] = _mm512_add_pd(lo[u], _mm512_cvtps_pd(_mm512_castps512_ps256(part[u])));
      hi[u] = _mm512_add_pd(hi[u], _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(part[u]), 1))));
    }
  }
  for (int u = 0; u < U; ++u) {
    float* o = out + c0 + 16 * u;
    __m512d l = lo[u], h = hi[u];
    if (accumulate) {
      const __m512 prev = _mm512_maskz_loadu_ps(mask[u], o);
      l = _mm512_add_pd(l, _mm512_cvtps_pd(_mm512_castps512_ps256(prev)));
      h = _mm512_add_pd(h, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(prev), 1))));
    }
    const __m512 v = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(l)), _mm512_cvtpd_ps(h), 1);
    _mm512_mask_storeu_ps(o, mask[u], v);
  }
}

DS_TARGET_AVX512 void sumRowsBlock512(bool bf16, const void* x, int64_t rows, int64_t cols, int64_t c0, int64_t len,
                                      float* out, bool accumulate) {
  for (int64_t j = 0; j < len; j += 64) {
    const int64_t w = std::min<int64_t>(64, len - j);
    if (w > 48) sumColumns512<4>(bf16, x, rows, cols, c0 + j, w, out, accumulate);
    else if (w > 32) sumColumns512<3>(bf16, x, rows, cols, c0 + j, w, out, accumulate);
    else if (w > 16) sumColumns512<2>(bf16, x, rows, cols, c0 + j, w, out, accumulate);
    else sumColumns512<1>(bf16, x, rows, cols, c0 + j, w, out, accumulate);
  }
}

template <class TileFn>
double reduceDouble(const Ctx& c, DType d, const void* x, int64_t n, TileFn tileFn) {
  std::vector<double> partial(c.pool->size(), 0.0);
  c.pool->parallelFor(n, kTaskGrain, [&](int64_t b, int64_t e, int tid) {
    double s = 0.0;
    float buf[kTile];
    for (int64_t i = b; i < e; i += kTile) {
      const int64_t len = std::min(e, i + kTile) - i;
      s += tileFn(c.isa, tileIn(c.isa, d, x, i, len, buf), len);
    }
    partial[tid] = s;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

double sumKernel(const Ctx& c, DType d, const void* x, int64_t n) { return reduceDouble(c, d, x, n, sumTileAt); }

double sumSquaresKernel(const Ctx& c, DType d, const void* x, int64_t n) {
  return reduceDouble(c, d, x, n, sumSquaresTileAt);
}

bool hasInfNanKernel(const Ctx& c, DType d, const void* x, int64_t n) {
  std::vector<char> found(c.pool->size(), 0);
  c.pool->parallelFor(n, kTaskGrain, [&](int64_t b, int64_t e, int tid) {
    if (d == DType::F32) found[tid] = nonFinite32At(c.isa, static_cast<const uint32_t*>(x) + b, e - b);
    else found[tid] = nonFinite16At(c.isa, static_cast<const uint16_t*>(x) + b, e - b, d == DType::BF16 ? 0x7f80 : 0x7c00);
  });
  return std::any_of(found.begin(), found.end(), [](char f) { return f != 0; });
}

void sumRowsKernel(const Ctx& c, DType d, const void* x, int64_t rows, int64_t cols, float* out, bool accumulate) {
  if (cols == 0) return;
  // Split columns into tiles so each thread owns whole accumulators: no races, no reduction step.
  const int64_t threads = c.pool->size();
  const int64_t block = std::min<int64_t>(kTile, std::max<int64_t>(64, (cols + threads - 1) / threads));
  const int64_t blocks = (cols + block - 1) / block;
  const int64_t grain = rows * block < kTaskGrain ? blocks : 1;
  if (c.isa >= Isa::Avx512 && (d == DType::F32 || d == DType::BF16)) {
    c.pool->parallelFor(blocks, grain, [&](int64_t b0, int64_t b1, int) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t c0 = blk * block;
        sumRowsBlock512(d == DType::BF16, x, rows, cols, c0, std::min(cols, c0 + block) - c0, out, accumulate);
      }
    });
    return;
  }
  c.pool->parallelFor(blocks, grain, [&](int64_t b0, int64_t b1, int) {
    double acc[kTile];
    float buf[kTile];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t c0 = blk * block, len = std::min(cols, c0 + block) - c0;
      std::fill(acc, acc + len, 0.0);
      for (int64_t r = 0; r < rows; ++r) addColumnsAt(c.isa, acc, tileIn(c.isa, d, x, r * cols + c0, len, buf), len);
      for (int64_t j = 0; j < len; ++j)
        out[c0 + j] = static_cast<float>(accumulate ? static_cast<double>(out[c0 + j]) + acc[j] : acc[j]);
    }
  });
}

void sumLastDimKernel(const Ctx& c, DType d, const void* x, int64_t rows, int64_t cols, void* out) {
  const int64_t grain = std::max<int64_t>(1, kTaskGrain / std::max<int64_t>(1, cols));
  c.pool->parallelFor(rows, grain, [&](int64_t r0, int64_t r1, int) {
    float buf[kTile], sums[1];
    for (int64_t r = r0; r < r1; ++r) {
      double s = 0.0;
      for (int64_t j = 0; j < cols; j += kTile) {
        const int64_t len = std::min(cols, j + kTile) - j;
        s += sumTileAt(c.isa, tileIn(c.isa, d, x, r * cols + j, len, buf), len);
      }
      sums[0] = static_cast<float>(s);
      fromF32(c.isa, d, sums, static_cast<unsigned char*>(out) + r * dtypeBytes(d), 1);
    }
  });
}

}  // namespace ds
