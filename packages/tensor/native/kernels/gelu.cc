// GELU with GPT-2's tanh approximation, forward and backward, elementwise on f32 tiles; bf16
// operands go through per-ISA tables of the same f32 math instead (below).
#include <immintrin.h>

#include <memory>
#include <mutex>

#include "ds/bf16_avx2.h"
#include "ds/tile.h"

namespace ds {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

// 0.5 x (1 + tanh(u)) = x sigmoid(2u) = x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3): one
// exp and one division per element, no small-argument branch (sigmoid has no cancellation at 0), so
// the loop vectorizes to straight-line code (2.4x the tanh form's throughput on Zen 3). Large |x|:
// e^(-2u) = +Inf gives x / Inf = -0 for x -> -Inf, and 0 gives x for x -> +Inf; NaN stays NaN.
DS_INLINE void forwardBody(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float e = expFast(-2.0f * kSqrt2OverPi * (v + kCubic * v * v * v));
    y[i] = v / (1.0f + e);
  }
}
DS_VARIANTS(void, forwardTile, forwardBody, (const float* x, float* y, int64_t n), (x, y, n))

// With s = sigmoid(2u): d/dx [x s] = s + x s (1 - s) 2 u', u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
// (the same derivative as the tanh form's, t = 2s - 1).
DS_INLINE void backwardBody(const float* dy, const float* x, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float s = 1.0f / (1.0f + expFast(-2.0f * kSqrt2OverPi * (v + kCubic * v * v * v)));
    const float du = 2.0f * kSqrt2OverPi * (1.0f + 3.0f * kCubic * v * v);
    dx[i] = dy[i] * (s + v * s * (1.0f - s) * du);
  }
}
DS_VARIANTS(void, backwardTile, backwardBody, (const float* dy, const float* x, float* dx, int64_t n), (dy, x, dx, n))

// bf16 has 65536 values, so the GELU of a bf16 tensor is a table lookup: fwd[b] holds the bf16 the
// f32 path above gives for input bits b (widen, forwardTile, round), and dfac[b] the factor
// backwardTile multiplies dy by (computed by backwardTile itself with dy = 1, which 1 * f keeps
// exactly), so dx = bf16(dy * dfac[x]) is the f32 path's product and rounding. Same bits as the tile
// path (test/kernels/nn.test.ts checks all 65536 inputs per ISA), without the widening, the exp and
// the division per element: on the GPT bench's MLP (Zen 3, 2 threads) forward and backward had cost
// 5.4 and 8.5 ms of a 470 ms step. One table per ISA variant (their FMA contraction differs),
// built on first use: 384 KiB, about 1 ms.
struct GeluTables {
  uint16_t fwd[65536 + 2];  // + 2: the AVX2 lookup gathers 32 bits at 2-byte steps
  float dfac[65536];
};

DS_INLINE int variantOf(Isa isa) { return isa >= Isa::Avx512 ? 2 : isa >= Isa::Avx2 ? 1 : 0; }

const GeluTables& tablesFor(Isa isa) {
  static std::once_flag once[3];
  static std::unique_ptr<GeluTables> tables[3];
  const int v = variantOf(isa);
  std::call_once(once[v], [&] {
    auto t = std::make_unique<GeluTables>();
    std::unique_ptr<float[]> x(new float[65536]), y(new float[65536]), one(new float[65536]);
    for (uint32_t b = 0; b < 65536; ++b) {
      x[b] = bf16ToF32(static_cast<uint16_t>(b));
      one[b] = 1.0f;
    }
    forwardTileAt(isa, x.get(), y.get(), 65536);
    fromF32(isa, DType::BF16, y.get(), t->fwd, 65536);
    t->fwd[65536] = t->fwd[65537] = 0;
    backwardTileAt(isa, one.get(), x.get(), t->dfac, 65536);
    tables[v] = std::move(t);
  });
  return *tables[v];
}

DS_INLINE void lookupBody(const uint16_t* x, uint16_t* y, int64_t n, const uint16_t* fwd) {
  for (int64_t i = 0; i < n; ++i) y[i] = fwd[x[i]];
}
DS_INLINE void scaleLookupBody(const uint16_t* dy, const uint16_t* x, uint16_t* dx, int64_t n, const float* dfac) {
  for (int64_t i = 0; i < n; ++i) dx[i] = f32ToBf16(bf16ToF32(dy[i]) * dfac[x[i]]);
}

// AVX2: 8 lookups per gather; a 32-bit gather at 2-byte scale reads the entry and the next one, the
// mask keeps the entry.
DS_TARGET_AVX2 void lookupAvx2(const uint16_t* x, uint16_t* y, int64_t n, const uint16_t* fwd) {
  const __m256i low = _mm256_set1_epi32(0xffff);
  const int* base = reinterpret_cast<const int*>(fwd);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i i0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    const __m256i i1 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8)));
    const __m256i v0 = _mm256_and_si256(_mm256_i32gather_epi32(base, i0, 2), low);
    const __m256i v1 = _mm256_and_si256(_mm256_i32gather_epi32(base, i1, 2), low);
    // packus interleaves the 128-bit lanes (v0 lo, v1 lo, v0 hi, v1 hi): put them back in order.
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(v0, v1), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), p);
  }
  lookupBody(x + i, y + i, n - i, fwd);
}

DS_TARGET_AVX2 void scaleLookupAvx2(const uint16_t* dy, const uint16_t* x, uint16_t* dx, int64_t n, const float* dfac) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i i0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    const __m256i i1 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8)));
    const __m256 p0 = _mm256_mul_ps(widenBf16x8(dy + i), _mm256_i32gather_ps(dfac, i0, 4));
    const __m256 p1 = _mm256_mul_ps(widenBf16x8(dy + i + 8), _mm256_i32gather_ps(dfac, i1, 4));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dx + i), bf16x8(p0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dx + i + 8), bf16x8(p1));
  }
  scaleLookupBody(dy + i, x + i, dx + i, n - i, dfac);
}

void lookupAt(Isa isa, const uint16_t* x, uint16_t* y, int64_t n, const uint16_t* fwd) {
  if (isa >= Isa::Avx2) return lookupAvx2(x, y, n, fwd);
  lookupBody(x, y, n, fwd);
}
void scaleLookupAt(Isa isa, const uint16_t* dy, const uint16_t* x, uint16_t* dx, int64_t n, const float* dfac) {
  if (isa >= Isa::Avx2) return scaleLookupAvx2(dy, x, dx, n, dfac);
  scaleLookupBody(dy, x, dx, n, dfac);
}

}  // namespace

void geluForward(const Ctx& c, DType d, const void* x, void* y, int64_t n) {
  if (d == DType::BF16) {
    const uint16_t* fwd = tablesFor(c.isa).fwd;
    forTiles(c, n, [&](int64_t b, int64_t e, int) {
      lookupAt(c.isa, static_cast<const uint16_t*>(x) + b, static_cast<uint16_t*>(y) + b, e - b, fwd);
    });
    return;
  }
  forTiles(c, n, [&](int64_t b, int64_t e, int) {
    float bx[kTile], by[kTile];
    const float* xs = tileIn(c.isa, d, x, b, e - b, bx);
    float* ys = tileDst(d, y, b, by);
    forwardTileAt(c.isa, xs, ys, e - b);
    tileOut(c.isa, d, ys, y, b, e - b);
  });
}

void geluBackward(const Ctx& c, DType d, const void* dy, const void* x, void* dx, int64_t n) {
  if (d == DType::BF16) {
    const float* dfac = tablesFor(c.isa).dfac;
    forTiles(c, n, [&](int64_t b, int64_t e, int) {
      scaleLookupAt(c.isa, static_cast<const uint16_t*>(dy) + b, static_cast<const uint16_t*>(x) + b,
                    static_cast<uint16_t*>(dx) + b, e - b, dfac);
    });
    return;
  }
  forTiles(c, n, [&](int64_t b, int64_t e, int) {
    float bg[kTile], bx[kTile], bo[kTile];
    const float* g = tileIn(c.isa, d, dy, b, e - b, bg);
    const float* xs = tileIn(c.isa, d, x, b, e - b, bx);
    float* out = tileDst(d, dx, b, bo);
    backwardTileAt(c.isa, g, xs, out, e - b);
    tileOut(c.isa, d, out, dx, b, e - b);
  });
}

}  // namespace ds
