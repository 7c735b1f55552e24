// The 1-bit optimizers' elementwise loops in the compressed phase (DeepSpeed: the exp_avg and
// parameter updates of runtime/fp16/onebit/adam.py). Twins in TypeScript: src/reference/kernels.ts.
#pragma once
#include <cstdint>

#include "ds/onebit/signs.h"

namespace ds::onebit {

// m[i] = beta1 * m[i] + (1 - beta1) * (g[i] * gradScale), for i < n.
void momentumUpdate(Isa isa, float* m, const float* g, int64_t n, float beta1, float gradScale);

// p[i] -= lr * (m[i] / (sqrt(v[i]) + eps) + weightDecay * p[i]), for i < n (v is the frozen variance).
void frozenAdamUpdate(Isa isa, float* p, const float* m, const float* v, int64_t n, float lr, float eps, float weightDecay);

}  // namespace ds::onebit
