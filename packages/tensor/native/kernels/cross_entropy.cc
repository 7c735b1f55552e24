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

// e[i] = exp(x[i] - m) and their f32 sum.
DS_INLINE float expStoreBody(const float* x, float* e, int64_t n, float m) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    e[i] = expFast(x[i] - m);
    s += e[i];
  }
  return s;
}
DS_VARIANTS(float, expStore, expStoreBody, (const float* x, float* e, int64_t n, float m), (x, e, n, m))

DS_INLINE void scaleBody(const float* e, float* g, int64_t n, float f) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) g[i] = e[i] * f;
}
DS_VARIANTS(void, scaleTile, scaleBody, (const float* e, float* g, int64_t n, float f), (e, g, n, f))

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

// Forward and the gradient at once, for a backward whose dloss will be `scale` on every counted row
// (a mean loss seeded with 1): each row is read once and exponentiated once, where forward and
// backward apart read it twice and exponentiate it twice. Per row: the row in f32 (a scratch row of
// vocab floats for bf16/f16) and its max; e = exp(x - max) and its sum s; lse = max + log(s);
// dlogits = e * (scale / s), minus scale at the target. Ignored rows (-1) get loss 0 and zero grads.
int64_t crossEntropyForwardGrad(const Ctx& c, DType d, const void* logits, const int32_t* targets, float* losses,
                                float* lse, void* dlogits, float scale, int64_t rows, int64_t vocab) {
  const int64_t bad = firstBadTarget(targets, rows, vocab);
  if (bad >= 0) return bad;
  c.pool->parallelFor(rows, rowGrain(vocab), [&](int64_t r0, int64_t r1, int tid) {
    // Scratch: the row widened (bf16/f16 only), then its exponentials; a tile of gradient.
    auto* row = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * (vocab + kTile)));
    float* bg = row + vocab;
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = tileIn(c.isa, d, logits, r * vocab, vocab, row);  // in place when f32
      const float m = tileMaxAt(c.isa, x, vocab);
      const int32_t t = targets[r];
      const float xt = t >= 0 ? x[t] : 0.0f;  // before the exponentials overwrite a widened row
      double s = 0.0;
      for (int64_t j = 0; j < vocab; j += kTile) {
        const int64_t len = std::min(vocab, j + kTile) - j;
        s += expStoreAt(c.isa, x + j, row + j, len, m);
      }
      const double l = static_cast<double>(m) + std::log(s);
      lse[r] = static_cast<float>(l);
      losses[r] = t < 0 ? 0.0f : static_cast<float>(l - static_cast<double>(xt));
      const float f = t < 0 ? 0.0f : static_cast<float>(static_cast<double>(scale) / s);
      for (int64_t j = 0; j < vocab; j += kTile) {
        const int64_t len = std::min(vocab, j + kTile) - j;
        float* g = tileDst(d, dlogits, r * vocab + j, bg);
        if (t < 0) {
          std::fill(g, g + len, 0.0f);  // exact zeros, whatever the logits hold
        } else {
          scaleTileAt(c.isa, row + j, g, len, f);
          if (t >= j && t < j + len) g[t - j] -= scale;
        }
        tileOut(c.isa, d, g, dlogits, r * vocab + j, len);
      }
    }
  });
  return -1;
}

}  // namespace ds
