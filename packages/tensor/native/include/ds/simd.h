// Building blocks every kernel shares: the per-ISA target attributes, a macro that compiles one
// always-inline body three times (baseline, AVX2, AVX-512) so GCC vectorizes it for each target,
// and branch-free scalar math (exp, log, tanh) written so that loops calling it auto-vectorize; the
// dtype conversions come from ds/dtype_bits.h. Nothing here holds state.
#pragma once
#include <cstdint>
#include <cstring>

#include "ds/cpu.h"
#include "ds/dtype_bits.h"

#define DS_INLINE inline __attribute__((always_inline))
#define DS_TARGET_AVX2 __attribute__((target("avx2,fma,f16c,bmi2")))
#define DS_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi2,prefer-vector-width=512")))
#define DS_TARGET_AVX512BF16 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c,bmi2,prefer-vector-width=512")))

// DS_VARIANTS(ret, name, body, (params), (args)): from the always-inline function `body`, defines
// `name##Scalar`, `name##Avx2` and `name##Avx512`, plus `name##At(Isa, params)` that picks one.
#define DS_VARIANTS(ret, name, body, params, args)                             \
  ret name##Scalar params { return body args; }                                \
  DS_TARGET_AVX2 ret name##Avx2 params { return body args; }                   \
  DS_TARGET_AVX512 ret name##Avx512 params { return body args; }               \
  ret name##At(::ds::Isa isa, DS_UNPAREN params) {                              \
    if (isa >= ::ds::Isa::Avx512) return name##Avx512 args;                    \
    if (isa >= ::ds::Isa::Avx2) return name##Avx2 args;                        \
    return name##Scalar args;                                                  \
  }
#define DS_UNPAREN(...) __VA_ARGS__

namespace ds {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, U8 = 4 };

// bitsOf, floatOf, f32ToBf16, bf16ToF32, f32ToF16, f16ToF32: ds/dtype_bits.h.

// e^r for |r| <= ln2/2: the degree-6 polynomial expApprox and expFast share.
DS_INLINE float expPoly(float r) {
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

// e^x for f32, |rel err| < 2e-7 over the normal range; subnormal results below e^-87.3, 0 below
// -103.98 and +Inf above 88.7228. Range reduction x = n ln2 + r with |r| <= ln2/2, a degree-6
// polynomial for e^r, and 2^n applied as 2^(n/2) * 2^(n - n/2) so neither factor leaves the
// normal range at either end.
DS_INLINE float expApprox(float x) {
  const bool over = x > 88.72283f;
  const bool under = x < -103.98f;
  float xc = over ? 88.72283f : x;
  xc = under ? -103.98f : xc;
  // 1.5 * 2^23 rounds t to the nearest integer in the current (nearest-even) rounding mode.
  const float t = xc * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  const float p = expPoly(r);
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  const float s1 = floatOf(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = floatOf(static_cast<uint32_t>(n2 + 127) << 23);
  float y = (p * s1) * s2;
  y = under ? 0.0f : y;
  y = over ? __builtin_inff() : y;
  return x != x ? x : y;
}

// e^x with expApprox's reduction and polynomial but one scaling step: the arguments are clamped to
// [-87.34, 88] so that 2^n stays a normal float and is built from its exponent bits directly; results
// below e^-87.34 (subnormal) are flushed to 0, arguments above 88 give e^88 (1.65e38) instead of
// growing to +Inf, NaN stays NaN. About a third fewer instructions than expApprox; for the kernels
// whose arguments are non-positive (softmax, cross-entropy and attention's x - max) or saturate
// harmlessly (GELU's sigmoid), not for the user-facing exp.
DS_INLINE float expFast(float x) {
  float xc = x < -87.33654f ? -87.33654f : x;  // NaN compares false both times and stays
  xc = xc > 88.0f ? 88.0f : xc;
  const float t = xc * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  const float p = expPoly(r);
  const float y = p * floatOf(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return x < -87.33654f ? 0.0f : y;
}

// ln(x) for f32: split x = 2^e * m with m in [sqrt(1/2), sqrt(2)), then a polynomial in m - 1.
// Returns NaN for x < 0 or NaN, -Inf for 0, +Inf for +Inf; subnormal inputs are scaled first.
DS_INLINE float logApprox(float x) {
  const bool sub = x < 1.17549435e-38f;
  const float xs = sub ? x * 8388608.0f : x;  // 2^23 brings subnormals into the normal range
  const uint32_t bits = bitsOf(xs);
  int32_t e = static_cast<int32_t>((bits >> 23) & 0xff) - 127;
  float m = floatOf((bits & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float f = m - 1.0f;
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const float ef = static_cast<float>(sub ? e - 23 : e);
  float y = f * z * p - 0.5f * z + f;
  y = y + ef * 0.693147180559945f;
  y = x == 0.0f ? -__builtin_inff() : y;
  y = x == __builtin_inff() ? x : y;
  return (x < 0.0f || x != x) ? __builtin_nanf("") : y;
}

// tanh: an odd polynomial near zero (where 1 - 2/(e^2x + 1) would cancel), the exp form elsewhere.
DS_INLINE float tanhApprox(float x) {
  const float a = x < 0.0f ? -x : x;
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float e = expApprox(2.0f * (a > 9.0f ? 9.0f : a));
  float big = 1.0f - 2.0f / (e + 1.0f);
  big = x < 0.0f ? -big : big;
  return a < 0.625f ? small : big;
}

DS_INLINE float sigmoidApprox(float x) { return 1.0f / (1.0f + expApprox(-x)); }

}  // namespace ds
