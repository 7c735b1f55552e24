// Fused Adam/AdamW step over a flat f32 master buffer (torch.optim.AdamW semantics): gradient
// scaling, L2 or decoupled weight decay, both moments, bias correction, and the optional bf16/f16
// copy of the new weights, in one pass over memory per tile.
#include <cmath>

#include "ds/tile.h"

namespace ds {
namespace {

struct Coeffs {
  float gradScale, decay, l2, beta1, oneMinusBeta1, beta2, oneMinusBeta2, stepSize, invSqrtBc2, eps;
};

DS_INLINE void stepBody(float* p, const float* g, float* m, float* v, int64_t n, const Coeffs& k) {
  for (int64_t i = 0; i < n; ++i) {
    const float w = p[i] * k.decay;  // decay is 1 - lr * wd when decoupled, else 1
    const float gi = g[i] * k.gradScale + k.l2 * p[i];  // l2 is wd when coupled, else 0
    const float mi = k.beta1 * m[i] + k.oneMinusBeta1 * gi;
    const float vi = k.beta2 * v[i] + k.oneMinusBeta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = w - k.stepSize * mi / (std::sqrt(vi) * k.invSqrtBc2 + k.eps);
  }
}
DS_VARIANTS(void, stepTile, stepBody, (float* p, const float* g, float* m, float* v, int64_t n, const Coeffs& k),
            (p, g, m, v, n, k))

}  // namespace

void adamwKernel(const Ctx& c, const AdamWParams& a) {
  const double bc1 = a.biasCorrection ? 1.0 - std::pow(a.beta1, a.step) : 1.0;
  const double bc2 = a.biasCorrection ? 1.0 - std::pow(a.beta2, a.step) : 1.0;
  Coeffs k;
  k.gradScale = static_cast<float>(a.gradScale);
  k.decay = static_cast<float>(a.decoupled ? 1.0 - a.lr * a.weightDecay : 1.0);
  k.l2 = static_cast<float>(a.decoupled ? 0.0 : a.weightDecay);
  k.beta1 = static_cast<float>(a.beta1);
  k.oneMinusBeta1 = static_cast<float>(1.0 - a.beta1);
  k.beta2 = static_cast<float>(a.beta2);
  k.oneMinusBeta2 = static_cast<float>(1.0 - a.beta2);
  k.stepSize = static_cast<float>(a.lr / bc1);
  k.invSqrtBc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  k.eps = static_cast<float>(a.eps);
  forTiles(c, a.n, [&](int64_t b, int64_t e, int) {
    float bg[kTile];
    const float* g = tileIn(c.isa, a.gradDtype, a.grad, b, e - b, bg);
    stepTileAt(c.isa, a.param + b, g, a.expAvg + b, a.expAvgSq + b, e - b, k);
    if (a.out16) fromF32(c.isa, a.out16Dtype, a.param + b, static_cast<uint16_t*>(a.out16) + b, e - b);
  });
}

}  // namespace ds
