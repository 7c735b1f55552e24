// Fused softmax + cross-entropy over [rows, vocab]. Forward makes one pass over each row in tiles,
// keeping a running max and a sum of exponentials rescaled whenever the max grows (online
// log-sum-exp), so a row is read once. Backward: dloss * (softmax - onehot), ignored rows (-1) zero.
#include <algorithm>
#include <cmath>

#include "ds/tile.h"

namespace ds {
namespace {

DS_INLINE float tileMaxBody(const float* x, int64_t n) {
  float m = -__builtin_inff();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}
DS_VARIANTS(float, tileMax, tileMaxBody, (const float* x, int64_t n), (x, n))

DS_INLINE float tileExpSumBody(const float* x, int64_t n, float m) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += expFast(x[i] - m);
  return s;
}
DS_VARIANTS(float, tileExpSum, tileExpSumBody, (const float* x, int64_t n, float m), (x, n, m))

DS_INLINE void gradBody(const float* x, float* g, int64_t n, float lse, float scale) {
  for (int64_t i = 0; i < n; ++i) g[i] = scale * expFast(x[i] - lse);
}
DS_VARIANTS(void, gradTile, gradBody, (const float* x, float* g, int64_t n, float lse, float scale),
            (x, g, n, lse, scale))

int64_t firstBadTarget(const int32_t* t, int64_t rows, int64_t vocab) {
  for (int64_t r = 0; r < rows; ++r)
    if (t[r] < -1 || t[r] >= vocab) return r;
  return -1;
}

DS_INLINE int64_t rowGrain(int64_t vocab) { return std::max<int64_t>(1, kTaskGrain / std::max<int64_t>(1, vocab)); }

}  // namespace

int64_t crossEntropyForward(const Ctx& c, DType d, const void* logits, const int32_t* targets, float* losses,
                            float* lse, int64_t rows, int64_t vocab) {
  const int64_t bad = firstBadTarget(targets, rows, vocab);
  if (bad >= 0) return bad;
  c.pool->parallelFor(rows, rowGrain(vocab), [&](int64_t r0, int64_t r1, int) {
    float buf[kTile];
    for (int64_t r = r0; r < r1; ++r) {
      float m = -__builtin_inff();
      double s = 0.0;
      for (int64_t j = 0; j < vocab; j += kTile) {
        const int64_t len = std::min(vocab, j + kTile) - j;
        const float* x = tileIn(c.isa, d, logits, r * vocab + j, len, buf);
        const float tm = tileMaxAt(c.isa, x, len);
        if (tm > m) {  // rescale what was summed against the old max
          s *= std::exp(static_cast<double>(m) - static_cast<double>(tm));
          m = tm;
        }
        s += tileExpSumAt(c.isa, x, len, m);
      }
      const double l = static_cast<double>(m) + std::log(s);
      lse[r] = static_cast<float>(l);
      const int32_t t = targets[r];
      if (t < 0) {
        losses[r] = 0.0f;
      } else {
        float xt;
        toF32(c.isa, d, static_cast<const unsigned char*>(logits) + (r * vocab + t) * dtypeBytes(d), &xt, 1);
        losses[r] = static_cast<float>(l - static_cast<double>(xt));
      }
    }
  });
  return -1;
}

int64_t crossEntropyBackward(const Ctx& c, DType d, const void* logits, const int32_t* targets, const float* lse,
                             const float* dloss, void* dlogits, int64_t rows, int64_t vocab) {
  const int64_t bad = firstBadTarget(targets, rows, vocab);
  if (bad >= 0) return bad;
  c.pool->parallelFor(rows, rowGrain(vocab), [&](int64_t r0, int64_t r1, int) {
    float bx[kTile], bg[kTile];
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t t = targets[r];
      const float scale = t < 0 ? 0.0f : dloss[r];
      for (int64_t j = 0; j < vocab; j += kTile) {
        const int64_t len = std::min(vocab, j + kTile) - j;
        const float* x = tileIn(c.isa, d, logits, r * vocab + j, len, bx);
        float* g = tileDst(d, dlogits, r * vocab + j, bg);
        if (t < 0) {
          std::fill(g, g + len, 0.0f);  // ignored rows get exact zeros, whatever the logits hold
        } else {
          gradTileAt(c.isa, x, g, len, lse[r], scale);
          if (t >= j && t < j + len) g[t - j] -= scale;  // the one-hot part
        }
        tileOut(c.isa, d, g, dlogits, r * vocab + j, len);
      }
    }
  });
  return -1;
}

}  // namespace ds
