// Sign compression kernels: scalar versions (the baseline build) and AVX2 versions selected at run
// time with cpuid (GCC's __builtin_cpu_supports). Each AVX2 loop does 8 floats per byte of signs;
// the scalar loop is the same arithmetic, one element at a time, so both give identical bits and
// identical error values (the products are single roundings of the same operands).
#include "ds/onebit/signs.h"

#include <immintrin.h>

#include <cstring>

#define DS_ONEBIT_AVX2 __attribute__((target("avx2,fma")))

namespace ds::onebit {

Isa selectIsa(const char* requested) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (requested && std::strcmp(requested, "scalar") == 0) return Isa::Scalar;
  return avx2 ? Isa::Avx2 : Isa::Scalar;
}

const char* isaName(Isa isa) { return isa == Isa::Avx2 ? "avx2" : "scalar"; }

namespace {

double addErrorScalar(float* x, const float* err, int64_t n) {
  double ss = 0;
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i] + err[i];
    x[i] = v;
    ss += static_cast<double>(v) * v;
  }
  return ss;
}

DS_ONEBIT_AVX2 double addErrorAvx2(float* x, const float* err, int64_t n) {
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(err + i));
    _mm256_storeu_ps(x + i, v);
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    acc0 = _mm256_fmadd_pd(lo, lo, acc0);
    acc1 = _mm256_fmadd_pd(hi, hi, acc1);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(acc0, acc1));
  double ss = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  return ss + addErrorScalar(x + i, err + i, n - i);
}

void compressScalar(const float* x, int64_t n, float scale, uint8_t* bits, float* err) {
  for (int64_t b = 0; b < n / 8; b++) {
    uint8_t byte = 0;
    for (int k = 0; k < 8; k++) {
      const float v = x[b * 8 + k];
      const bool pos = !(v < 0.0f);
      byte = static_cast<uint8_t>(byte | (pos ? 1u : 0u) << (7 - k));
      err[b * 8 + k] = v - (pos ? scale : -scale);
    }
    bits[b] = byte;
  }
}

DS_ONEBIT_AVX2 void compressAvx2(const float* x, int64_t n, float scale, uint8_t* bits, float* err) {
  // Reversing the lanes puts element 0 in movemask's bit 7: numpy's big-endian bit order.
  const __m256i reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 pos = _mm256_set1_ps(scale), neg = _mm256_set1_ps(-scale);
  for (int64_t b = 0; b < n / 8; b++) {
    const __m256 v = _mm256_loadu_ps(x + b * 8);
    const __m256 isNeg = _mm256_cmp_ps(v, zero, _CMP_LT_OQ);  // NaN and -0: not negative
    const int mask = _mm256_movemask_ps(_mm256_permutevar8x32_ps(isNeg, reverse));
    bits[b] = static_cast<uint8_t>(~mask & 0xff);
    _mm256_storeu_ps(err + b * 8, _mm256_sub_ps(v, _mm256_blendv_ps(pos, neg, isNeg)));
  }
}

void unpackScalar(const uint8_t* bits, int64_t n, float scale, float* out, bool accumulate) {
  for (int64_t i = 0; i < n; i++) {
    const bool pos = (bits[i >> 3] >> (7 - (i & 7))) & 1;
    const float q = pos ? scale : -scale;
    out[i] = accumulate ? out[i] + q : q;
  }
}

DS_ONEBIT_AVX2 void unpackAvx2(const uint8_t* bits, int64_t n, float scale, float* out, bool accumulate) {
  const __m256i lanes = _mm256_setr_epi32(128, 64, 32, 16, 8, 4, 2, 1);
  const __m256 pos = _mm256_set1_ps(scale), neg = _mm256_set1_ps(-scale);
  for (int64_t b = 0; b < n / 8; b++) {
    const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits[b]), lanes), lanes);
    const __m256 q = _mm256_blendv_ps(neg, pos, _mm256_castsi256_ps(set));
    float* o = out + b * 8;
    _mm256_storeu_ps(o, accumulate ? _mm256_add_ps(_mm256_loadu_ps(o), q) : q);
  }
}

}  // namespace

double addErrorSumSquares(Isa isa, float* x, const float* err, int64_t n) {
  return isa == Isa::Avx2 ? addErrorAvx2(x, err, n) : addErrorScalar(x, err, n);
}

void compressSigns(Isa isa, const float* x, int64_t n, float scale, uint8_t* bits, float* err) {
  if (isa == Isa::Avx2) compressAvx2(x, n, scale, bits, err);
  else compressScalar(x, n, scale, bits, err);
}

void unpackSigns(Isa isa, const uint8_t* bits, int64_t n, float scale, float* out, bool accumulate) {
  if (isa == Isa::Avx2) unpackAvx2(bits, n, scale, out, accumulate);
  else unpackScalar(bits, n, scale, out, accumulate);
}

}  // namespace ds::onebit
