// GELU with GPT-2's tanh approximation, forward and backward, elementwise on f32 tiles.
#include "ds/tile.h"

namespace ds {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

DS_INLINE void forwardBody(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + tanhApprox(kSqrt2OverPi * (v + kCubic * v * v * v)));
  }
}
DS_VARIANTS(void, forwardTile, forwardBody, (const float* x, float* y, int64_t n), (x, y, n))

// d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t = tanh(inner).
DS_INLINE void backwardBody(const float* dy, const float* x, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float t = tanhApprox(kSqrt2OverPi * (v + kCubic * v * v * v));
    const float dt = (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kCubic * v * v);
    dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * dt);
  }
}
DS_VARIANTS(void, backwardTile, backwardBody, (const float* dy, const float* x, float* dx, int64_t n), (dy, x, dx, n))

}  // namespace

void geluForward(const Ctx& c, DType d, const void* x, void* y, int64_t n) {
  forTiles(c, n, [&](int64_t b, int64_t e, int) {
    float bx[kTile], by[kTile];
    const float* xs = tileIn(c.isa, d, x, b, e - b, bx);
    float* ys = tileDst(d, y, b, by);
    forwardTileAt(c.isa, xs, ys, e - b);
    tileOut(c.isa, d, ys, y, b, e - b);
  });
}

void geluBackward(const Ctx& c, DType d, const void* dy, const void* x, void* dx, int64_t n) {
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
