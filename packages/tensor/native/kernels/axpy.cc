// y[i] += alpha * x[i] over f32: the first kernel, showing the dispatch pattern every kernel follows
// (a scalar path, and vector paths compiled with per-function target attributes).
#include <immintrin.h>

#include <cstdint>

#include "ds/cpu.h"
#include "ds/kernels.h"

namespace ds {
namespace {

void axpyScalar(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

__attribute__((target("avx2,fma"))) void axpyAvx2(int64_t n, float alpha, const float* x, float* y) {
  const __m256 a = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

__attribute__((target("avx512f"))) void axpyAvx512(int64_t n, float alpha, const float* x, float* y) {
  const __m512 a = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

}  // namespace

void axpyF32(Isa isa, int64_t n, float alpha, const float* x, float* y) {
  if (isa >= Isa::Avx512) return axpyAvx512(n, alpha, x, y);
  if (isa >= Isa::Avx2) return axpyAvx2(n, alpha, x, y);
  axpyScalar(n, alpha, x, y);
}

}  // namespace ds
