// Elementwise loops of the compressed phase: one always-inline body compiled for the baseline and
// for AVX2 (GCC vectorizes both; the AVX2 copy uses 8 lanes and FMA), chosen at run time. Every
// element is computed in f32 in the order the header states; FMA contraction may differ from the
// TypeScript twin by an ulp, which the tests allow.
#include <cmath>

#include "ds/onebit/update.h"

#define DS_ONEBIT_INLINE inline __attribute__((always_inline))
#define DS_ONEBIT_AVX2 __attribute__((target("avx2,fma")))

namespace ds::onebit {

namespace {

DS_ONEBIT_INLINE void momentumBody(float* __restrict m, const float* __restrict g, int64_t n, float beta1, float gradScale) {
  const float keep = 1.0f - beta1;
  for (int64_t i = 0; i < n; i++) m[i] = beta1 * m[i] + keep * (g[i] * gradScale);
}

DS_ONEBIT_INLINE void updateBody(float* __restrict p, const float* __restrict m, const float* __restrict v, int64_t n, float lr, float eps, float wd) {
  for (int64_t i = 0; i < n; i++) p[i] = p[i] - lr * (m[i] / (std::sqrt(v[i]) + eps) + wd * p[i]);
}

void momentumScalar(float* m, const float* g, int64_t n, float b, float s) { momentumBody(m, g, n, b, s); }
DS_ONEBIT_AVX2 void momentumAvx2(float* m, const float* g, int64_t n, float b, float s) { momentumBody(m, g, n, b, s); }
void updateScalar(float* p, const float* m, const float* v, int64_t n, float lr, float eps, float wd) { updateBody(p, m, v, n, lr, eps, wd); }
DS_ONEBIT_AVX2 void updateAvx2(float* p, const float* m, const float* v, int64_t n, float lr, float eps, float wd) { updateBody(p, m, v, n, lr, eps, wd); }

}  // namespace

void momentumUpdate(Isa isa, float* m, const float* g, int64_t n, float beta1, float gradScale) {
  if (isa == Isa::Avx2) momentumAvx2(m, g, n, beta1, gradScale);
  else momentumScalar(m, g, n, beta1, gradScale);
}

void frozenAdamUpdate(Isa isa, float* p, const float* m, const float* v, int64_t n, float lr, float eps, float weightDecay) {
  if (isa == Isa::Avx2) updateAvx2(p, m, v, n, lr, eps, weightDecay);
  else updateScalar(p, m, v, n, lr, eps, weightDecay);
}

}  // namespace ds::onebit
