// A register-blocked product for small in-cache blocks (attention's 64 x 64 tiles), written with GCC
// vector extensions so that one always-inline body compiles to SSE, AVX2 or AVX-512 registers
// depending on the target of the function it is inlined into (see DS_VARIANTS in simd.h). The
// caller picks the tile: R rows x 16*U columns of C held in R*U vectors across the k loop.
#pragma once
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

// C[i, j] (+)= sum_p A[i, p] B[p, j] for i < m, j < n, p < k; A, B, C row-major with leading
// dimensions lda, ldb, ldc. `accumulate` false overwrites C.
template <int R, int U>
DS_INLINE void blockGemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                         float* c, int64_t ldc, bool accumulate) {
  constexpr int64_t W = 16 * U;
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
          const V16 av = V16{} + a[(i + r) * lda + p];
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
        const V16 av = V16{} + a[i * lda + p];
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
        const float av = a[i * lda + p];
        const float* bp = b + p * ldb;
        for (int64_t jj = j; jj < n; ++jj) ci[jj] += av * bp[jj];
      }
    }
  }
}

}  // namespace ds
