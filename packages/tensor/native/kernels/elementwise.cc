// Elementwise kernels: unary ops, binary ops with a repeating (bias-like) right operand, scale and
// axpy. Arithmetic is in f32 on tiles (tile.h); each body is compiled for every ISA (simd.h) and the
// loops are written branch-free so that the compiler vectorizes them.
#include <algorithm>
#include <cmath>

#include "ds/tile.h"

namespace ds {
namespace {

DS_INLINE void unaryBody(UnaryOp op, const float* x, float* y, int64_t n) {
  switch (op) {
    case UnaryOp::Neg: for (int64_t i = 0; i < n; ++i) y[i] = -x[i]; break;
    case UnaryOp::Exp: for (int64_t i = 0; i < n; ++i) y[i] = expApprox(x[i]); break;
    case UnaryOp::Log: for (int64_t i = 0; i < n; ++i) y[i] = logApprox(x[i]); break;
    case UnaryOp::Sqrt: for (int64_t i = 0; i < n; ++i) y[i] = std::sqrt(x[i]); break;
    case UnaryOp::Rsqrt: for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / std::sqrt(x[i]); break;
    case UnaryOp::Tanh: for (int64_t i = 0; i < n; ++i) y[i] = tanhApprox(x[i]); break;
    case UnaryOp::Relu: for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f; break;
    case UnaryOp::Abs: for (int64_t i = 0; i < n; ++i) y[i] = std::fabs(x[i]); break;
    case UnaryOp::Square: for (int64_t i = 0; i < n; ++i) y[i] = x[i] * x[i]; break;
    case UnaryOp::Sigmoid: for (int64_t i = 0; i < n; ++i) y[i] = sigmoidApprox(x[i]); break;
    // -1, 0 or +1 (Lion's update direction); NaN stays NaN.
    case UnaryOp::Sign: for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? 1.0f : x[i] < 0.0f ? -1.0f : x[i]; break;
  }
}
DS_VARIANTS(void, unaryTile, unaryBody, (UnaryOp op, const float* x, float* y, int64_t n), (op, x, y, n))

// max/min propagate a NaN from either side, like the reference's (a >= b || isNaN(a)) ? a : b.
DS_INLINE void binaryBody(BinaryOp op, const float* a, const float* b, float* y, int64_t n) {
  switch (op) {
    case BinaryOp::Add: for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i]; break;
    case BinaryOp::Sub: for (int64_t i = 0; i < n; ++i) y[i] = a[i] - b[i]; break;
    case BinaryOp::Mul: for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i]; break;
    case BinaryOp::Div: for (int64_t i = 0; i < n; ++i) y[i] = a[i] / b[i]; break;
    case BinaryOp::Max: for (int64_t i = 0; i < n; ++i) y[i] = (a[i] >= b[i] || a[i] != a[i]) ? a[i] : b[i]; break;
    case BinaryOp::Min: for (int64_t i = 0; i < n; ++i) y[i] = (a[i] <= b[i] || a[i] != a[i]) ? a[i] : b[i]; break;
  }
}
DS_VARIANTS(void, binaryTile, binaryBody, (BinaryOp op, const float* a, const float* b, float* y, int64_t n), (op, a, b, y, n))

DS_INLINE void scaleBody(const float* x, float* y, int64_t n, float alpha, float beta) {
  for (int64_t i = 0; i < n; ++i) y[i] = alpha * x[i] + beta;
}
DS_VARIANTS(void, scaleTile, scaleBody, (const float* x, float* y, int64_t n, float alpha, float beta), (x, y, n, alpha, beta))

DS_INLINE void axpyBody(const float* x, float* y, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}
DS_VARIANTS(void, axpyTile, axpyBody, (const float* x, float* y, int64_t n, float alpha), (x, y, n, alpha))

}  // namespace

void unaryKernel(const Ctx& c, UnaryOp op, DType d, const void* x, void* out, int64_t n) {
  forTiles(c, n, [&](int64_t b, int64_t e, int) {
    float bx[kTile], by[kTile];
    const float* xs = tileIn(c.isa, d, x, b, e - b, bx);
    float* ys = tileDst(d, out, b, by);
    unaryTileAt(c.isa, op, xs, ys, e - b);
    tileOut(c.isa, d, ys, out, b, e - b);
  });
}

void binaryKernel(const Ctx& c, BinaryOp op, DType d, const void* a, const void* b, void* out, int64_t n, int64_t bn) {
  if (n == 0) return;
  forTiles(c, n, [&](int64_t lo, int64_t hi, int) {
    float ba[kTile], bb[kTile], by[kTile];
    const int64_t len = hi - lo;
    const float* as = tileIn(c.isa, d, a, lo, len, ba);
    const float* bs;
    if (bn == n) {
      bs = tileIn(c.isa, d, b, lo, len, bb);
    } else {  // b repeats every bn elements: lay the needed stretch of it out contiguously
      for (int64_t i = 0, j = lo % bn; i < len;) {
        const int64_t run = std::min(len - i, bn - j);
        const float* src = tileIn(c.isa, d, b, j, run, bb + i);
        if (src != bb + i) std::copy(src, src + run, bb + i);
        i += run;
        j = 0;
      }
      bs = bb;
    }
    float* ys = tileDst(d, out, lo, by);
    binaryTileAt(c.isa, op, as, bs, ys, len);
    tileOut(c.isa, d, ys, out, lo, len);
  });
}

void scaleKernel(const Ctx& c, DType d, const void* x, void* out, int64_t n, float alpha, float beta) {
  forTiles(c, n, [&](int64_t b, int64_t e, int) {
    float bx[kTile], by[kTile];
    const float* xs = tileIn(c.isa, d, x, b, e - b, bx);
    float* ys = tileDst(d, out, b, by);
    scaleTileAt(c.isa, xs, ys, e - b, alpha, beta);
    tileOut(c.isa, d, ys, out, b, e - b);
  });
}

void axpyKernel(const Ctx& c, DType xd, const void* x, DType yd, void* y, int64_t n, float alpha) {
  forTiles(c, n, [&](int64_t b, int64_t e, int) {
    float bx[kTile], by[kTile];
    const float* xs = tileIn(c.isa, xd, x, b, e - b, bx);
    float* ys = yd == DType::F32 ? static_cast<float*>(y) + b : by;
    if (yd != DType::F32) toF32(c.isa, yd, static_cast<const uint16_t*>(y) + b, by, e - b);
    axpyTileAt(c.isa, xs, ys, e - b, alpha);
    tileOut(c.isa, yd, ys, y, b, e - b);
  });
}

}  // namespace ds
