// Fused softmax + cross-entropy over [rows, vocab]. Forward makes one pass over each row in tiles,
// keeping a running max and a sum of exponentials rescaled whenever the max grows (online
// log-sum-exp), so a row is read once. Backward: dloss * (softmax - onehot), ignored rows (-1) zero.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "ds/bf16_avx512.h"
#include "ds/exp_avx512.h"
#include "ds/tile.h"

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized / -Wuninitialized on their "undefined"
// pass-through operands when inlined (as in gemm.cc); the warning concerns the header, not this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

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

// The same three steps on bf16 logits read as they are (widened in registers) and a bf16 gradient
// written directly: forwardGrad on bf16 made five passes over a row (widen into f32, max, exponentials,
// scale into an f32 tile, round it) and now makes three.
DS_INLINE float maxBf16Body(const uint16_t* x, int64_t n) {
  float m = -__builtin_inff();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) {
    const float v = bf16ToF32(x[i]);
    m = v > m ? v : m;
  }
  return m;
}
DS_VARIANTS(float, maxBf16, maxBf16Body, (const uint16_t* x, int64_t n), (x, n))

DS_INLINE float expStoreBf16Body(const uint16_t* x, float* e, int64_t n, float m) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    e[i] = expFast(bf16ToF32(x[i]) - m);
    s += e[i];
  }
  return s;
}
DS_VARIANTS(float, expStoreBf16, expStoreBf16Body, (const uint16_t* x, float* e, int64_t n, float m), (x, e, n, m))

// The same with exp16 (FMAs, vscalefps) on AVX-512: the exponentials are most of this kernel's work
// (16.8 M of them for the GPT bench's 2048 x 8192 logits).
DS_TARGET_AVX512 float expStoreBf16Exp16(const uint16_t* x, float* e, int64_t n, float m) {
  const __m512 vm = _mm512_set1_ps(m);
  __m512 s = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? 0xffff : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = widenBf16x16(x + i, k);
    const __m512 ev = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(v, vm)));
    _mm512_mask_storeu_ps(e + i, k, ev);
    s = _mm512_add_ps(s, ev);
  }
  return _mm512_reduce_add_ps(s);
}

DS_INLINE void scaleBf16Body(const float* e, uint16_t* g, int64_t n, float f) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) g[i] = f32ToBf16(e[i] * f);
}
DS_VARIANTS(void, scaleBf16, scaleBf16Body, (const float* e, uint16_t* g, int64_t n, float f), (e, g, n, f))

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
  if (d == DType::BF16) {
    const auto* x16 = static_cast<const uint16_t*>(logits);
    auto* g16 = static_cast<uint16_t*>(dlogits);
    c.pool->parallelFor(rows, rowGrain(vocab), [&](int64_t r0, int64_t r1, int tid) {
      auto* e = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * vocab));  // the row's exponentials
      for (int64_t r = r0; r < r1; ++r) {
        const uint16_t* x = x16 + r * vocab;
        uint16_t* g = g16 + r * vocab;
        const float m = maxBf16At(c.isa, x, vocab);
        const int32_t t = targets[r];
        double s = 0.0;
        for (int64_t j = 0; j < vocab; j += kTile) {
          const int64_t len = std::min(vocab, j + kTile) - j;
          s += c.isa >= Isa::Avx512 ? expStoreBf16Exp16(x + j, e + j, len, m) : expStoreBf16At(c.isa, x + j, e + j, len, m);
        }
        const double l = static_cast<double>(m) + std::log(s);
        lse[r] = static_cast<float>(l);
        losses[r] = t < 0 ? 0.0f : static_cast<float>(l - static_cast<double>(bf16ToF32(x[t])));
        if (t < 0) {
          std::fill(g, g + vocab, uint16_t{0});  // exact zeros, whatever the logits hold
          continue;
        }
        const float f = static_cast<float>(static_cast<double>(scale) / s);
        scaleBf16At(c.isa, e, g, vocab, f);
        g[t] = f32ToBf16(e[t] * f - scale);  // the one-hot part, from the same f32 value
      }
    });
    return -1;
  }
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
