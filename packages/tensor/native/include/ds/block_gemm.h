// A register-blocked product for small in-cache blocks (attention's 64 x 64 tiles), written with GCC
// vector extensions so that one always-inline body compiles to SSE, AVX2 or AVX-512 registers
// depending on the target of the function it is inlined into (see DS_VARIANTS in simd.h). The
// caller picks the tile: R rows x 16*U columns of C held in R*U vectors across the k loop.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "ds/simd.h"

// The helpers below are always inlined into a function with the right target, so GCC's note that
// passing 64-byte vectors "changes the ABI" does not apply (addon.json builds with -Wno-psabi).

namespace ds {

typedef float V16 __attribute__((vector_size(64), aligned(4)));

DS_INLINE V16 loadV16(const float* p) {
  V16 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
DS_INLINE void storeV16(float* p, V16 v) { __builtin_memcpy(p, &v, sizeof v); }

// C[i, j] (+)= sum_p op(A)[i, p] B[p, j] for i < m, j < n, p < k; op(A)[i, p] is A[i * lda + p], or
// A[p * lda + i] when TransA (A is read one broadcast element at a time, so either layout costs the
// same). B and C are row-major with leading dimensions ldb, ldc. `accumulate` false overwrites C.
template <int R, int U, bool TransA = false>
DS_INLINE void blockGemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                         float* c, int64_t ldc, bool accumulate) {
  constexpr int64_t W = 16 * U;
  const auto at = [&](int64_t i, int64_t p) { return TransA ? a[p * lda + i] : a[i * lda + p]; };
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    int64_t i = 0;
    for (; i + R <= m; i += R) {
      V16 acc[R][U];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) acc[r][u] = accumulate ? loadV16(c + (i + r) * ldc + j + 16 * u) : V16{};
      for (int64_t p = 0; p < k; ++p) {
        V16 bv[U];
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) bv[u] = loadV16(b + p * ldb + j + 16 * u);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const V16 av = V16{} + at(i + r, p);
#pragma GCC unroll 4
          for (int u = 0; u < U; ++u) acc[r][u] += av * bv[u];
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) storeV16(c + (i + r) * ldc + j + 16 * u, acc[r][u]);
    }
    for (; i < m; ++i) {  // leftover rows, one at a time
      V16 acc[U];
      for (int u = 0; u < U; ++u) acc[u] = accumulate ? loadV16(c + i * ldc + j + 16 * u) : V16{};
      for (int64_t p = 0; p < k; ++p) {
        const V16 av = V16{} + at(i, p);
        for (int u = 0; u < U; ++u) acc[u] += av * loadV16(b + p * ldb + j + 16 * u);
      }
      for (int u = 0; u < U; ++u) storeV16(c + i * ldc + j + 16 * u, acc[u]);
    }
  }
  if (j < n) {  // leftover columns (fewer than one tile): plain row updates the compiler vectorizes
    for (int64_t i = 0; i < m; ++i) {
      float* ci = c + i * ldc;
      if (!accumulate)
        for (int64_t jj = j; jj < n; ++jj) ci[jj] = 0.0f;
      for (int64_t p = 0; p < k; ++p) {
        const float av = at(i, p);
        const float* bp = b + p * ldb;
        for (int64_t jj = j; jj < n; ++jj) ci[jj] += av * bp[jj];
      }
    }
  }
}

// The same product with AVX-512 intrinsics, for functions compiled for AVX-512 (attention's
// forwardBlockAvx512 and backwardBlockAvx512). GCC turns the generic-vector splat above into a
// scalar add (0.0f + x is not an identity for -0.0f) plus a register broadcast, or into a 64-byte
// load and a broadcast: either way a second uop per broadcast. _mm512_set1_ps of a load is one
// vbroadcastss from memory. Measured on 64 x 64 x 64 blocks in L1: 4 x 64 tiles (16 accumulators)
// 206 GFLOP/s, the generic 8 x 32 path 180-200, of a 225 GFLOP/s core. Leftover rows go one at a
// time; leftover columns in masked 16-lane pieces.
template <int R, int U, bool TransA = false>
DS_TARGET_AVX512 DS_INLINE void blockGemm512(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                                             const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  constexpr int64_t W = 16 * U;
  const auto at = [&](int64_t i, int64_t p) { return TransA ? a[p * lda + i] : a[i * lda + p]; };
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    int64_t i = 0;
    for (; i + R <= m; i += R) {
      __m512 acc[R][U];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) acc[r][u] = accumulate ? _mm512_loadu_ps(c + (i + r) * ldc + j + 16 * u) : _mm512_setzero_ps();
      for (int64_t p = 0; p < k; ++p) {
        __m512 bv[U];
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) bv[u] = _mm512_loadu_ps(b + p * ldb + j + 16 * u);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const __m512 av = _mm512_set1_ps(at(i + r, p));
#pragma GCC unroll 4
          for (int u = 0; u < U; ++u) acc[r][u] = _mm512_fmadd_ps(av, bv[u], acc[r][u]);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) _mm512_storeu_ps(c + (i + r) * ldc + j + 16 * u, acc[r][u]);
    }
    for (; i < m; ++i) {
      __m512 acc[U];
      for (int u = 0; u < U; ++u) acc[u] = accumulate ? _mm512_loadu_ps(c + i * ldc + j + 16 * u) : _mm512_setzero_ps();
      for (int64_t p = 0; p < k; ++p) {
        const __m512 av = _mm512_set1_ps(at(i, p));
        for (int u = 0; u < U; ++u) acc[u] = _mm512_fmadd_ps(av, _mm512_loadu_ps(b + p * ldb + j + 16 * u), acc[u]);
      }
      for (int u = 0; u < U; ++u) _mm512_storeu_ps(c + i * ldc + j + 16 * u, acc[u]);
    }
  }
  for (; j < n; j += 16) {  // leftover columns, 16 (or fewer, masked) at a time, row by row
    const __mmask16 mk = n - j >= 16 ? 0xffff : static_cast<__mmask16>((1u << (n - j)) - 1);
    for (int64_t i = 0; i < m; ++i) {
      __m512 acc = accumulate ? _mm512_maskz_loadu_ps(mk, c + i * ldc + j) : _mm512_setzero_ps();
      for (int64_t p = 0; p < k; ++p) acc = _mm512_fmadd_ps(_mm512_set1_ps(at(i, p)), _mm512_maskz_loadu_ps(mk, b + p * ldb + j), acc);
      _mm512_mask_storeu_ps(c + i * ldc + j, mk, acc);
    }
  }
}

// The same product with AVX2 intrinsics (8-lane __m256), for functions compiled for AVX2
// (attention's forwardBlockAvx2 and backwardBlockAvx2). The generic 64-byte vectors above are not
// kept in registers by GCC on an AVX2 target: each accumulator went through the stack and general
// registers on every k step (measured: 6 GFLOP/s for attention on a Zen 3 core whose GEMM does 70).
// R x 8U tiles with R x U accumulators (6 x 16: 12 accumulators, 2 B vectors and a broadcast of the
// 16 ymm registers, as the GEMM microkernel; 4 x 16 for the rows a 6-row tile leaves). Leftover rows go one at a time; leftover columns (fewer than 8U) in 8-lane
// pieces with a masked load and store for the last one.
template <int R, int U, bool TransA = false>
DS_TARGET_AVX2 DS_INLINE void blockGemm256(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                                           const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  if constexpr (R > 4) {
    // Rows past the last full R-row tile go through 4-row tiles (64 = 10 x 6 + 4) before row by row.
    const int64_t mFull = m / R * R;
    if (mFull < m) {
      if (mFull > 0) blockGemm256<R, U, TransA>(mFull, n, k, a, lda, b, ldb, c, ldc, accumulate);
      blockGemm256<4, U, TransA>(m - mFull, n, k, TransA ? a + mFull : a + mFull * lda, lda, b, ldb, c + mFull * ldc, ldc, accumulate);
      return;
    }
  }
  constexpr int64_t W = 8 * U;
  const auto at = [&](int64_t i, int64_t p) { return TransA ? a[p * lda + i] : a[i * lda + p]; };
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    int64_t i = 0;
    for (; i + R <= m; i += R) {
      __m256 acc[R][U];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) acc[r][u] = accumulate ? _mm256_loadu_ps(c + (i + r) * ldc + j + 8 * u) : _mm256_setzero_ps();
      for (int64_t p = 0; p < k; ++p) {
        __m256 bv[U];
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) bv[u] = _mm256_loadu_ps(b + p * ldb + j + 8 * u);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const __m256 av = _mm256_set1_ps(at(i + r, p));
#pragma GCC unroll 4
          for (int u = 0; u < U; ++u) acc[r][u] = _mm256_fmadd_ps(av, bv[u], acc[r][u]);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) _mm256_storeu_ps(c + (i + r) * ldc + j + 8 * u, acc[r][u]);
    }
    for (; i < m; ++i) {
      __m256 acc[U];
      for (int u = 0; u < U; ++u) acc[u] = accumulate ? _mm256_loadu_ps(c + i * ldc + j + 8 * u) : _mm256_setzero_ps();
      for (int64_t p = 0; p < k; ++p) {
        const __m256 av = _mm256_set1_ps(at(i, p));
        for (int u = 0; u < U; ++u) acc[u] = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + p * ldb + j + 8 * u), acc[u]);
      }
      for (int u = 0; u < U; ++u) _mm256_storeu_ps(c + i * ldc + j + 8 * u, acc[u]);
    }
  }
  for (; j < n; j += 8) {  // leftover columns, 8 (or fewer, masked) at a time, row by row
    const int64_t w = n - j < 8 ? n - j : 8;
    const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(w)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int64_t i = 0; i < m; ++i) {
      __m256 acc = accumulate ? _mm256_maskload_ps(c + i * ldc + j, mk) : _mm256_setzero_ps();
      for (int64_t p = 0; p < k; ++p) acc = _mm256_fmadd_ps(_mm256_set1_ps(at(i, p)), _mm256_maskload_ps(b + p * ldb + j, mk), acc);
      _mm256_maskstore_ps(c + i * ldc + j, mk, acc);
    }
  }
}

}  // namespace ds
