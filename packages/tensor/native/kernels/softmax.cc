// Softmax over the last dim, forward and backward, one row per step (rows split among threads).
#include <algorithm>

#include "ds/tile.h"

namespace ds {
namespace {

DS_INLINE void forwardRowBody(const float* x, float* y, int64_t cols) {
  float m = -__builtin_inff();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < cols; ++i) m = x[i] > m ? x[i] : m;
  double s = 0.0;
  for (int64_t i = 0; i < cols; ++i) y[i] = expFast(x[i] - m);
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < cols; ++i) s += y[i];
  const float inv = static_cast<float>(1.0 / s);
  for (int64_t i = 0; i < cols; ++i) y[i] *= inv;
}
DS_VARIANTS(void, forwardRow, forwardRowBody, (const float* x, float* y, int64_t cols), (x, y, cols))

// dx = y * (dy - sum(dy * y))
DS_INLINE void backwardRowBody(const float* dy, const float* y, float* dx, int64_t cols) {
  double dot = 0.0;
#pragma omp simd reduction(+ : dot)
  for (int64_t i = 0; i < cols; ++i) dot += static_cast<double>(dy[i] * y[i]);
  const float d = static_cast<float>(dot);
  for (int64_t i = 0; i < cols; ++i) dx[i] = y[i] * (dy[i] - d);
}
DS_VARIANTS(void, backwardRow, backwardRowBody, (const float* dy, const float* y, float* dx, int64_t cols),
            (dy, y, dx, cols))

DS_INLINE int64_t rowGrain(int64_t cols) { return std::max<int64_t>(1, kTaskGrain / std::max<int64_t>(1, cols)); }

}  // namespace

void softmaxForward(const Ctx& c, DType d, const void* x, void* y, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  c.pool->parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1, int tid) {
    auto* bx = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * cols));
    auto* by = static_cast<float*>(c.pool->scratch(tid, 1, sizeof(float) * cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* xs = tileIn(c.isa, d, x, r * cols, cols, bx);
      // y may alias x (in place): compute into the buffer unless both are distinct f32 rows.
      float* ys = (d == DType::F32 && x != y) ? static_cast<float*>(y) + r * cols : by;
      forwardRowAt(c.isa, xs, ys, cols);
      if (ys == by) fromF32(c.isa, d, by, static_cast<unsigned char*>(y) + r * cols * dtypeBytes(d), cols);
    }
  });
}

void softmaxBackward(const Ctx& c, DType d, const void* dy, const void* y, void* dx, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  c.pool->parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1, int tid) {
    auto* bg = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * cols));
    auto* by = static_cast<float*>(c.pool->scratch(tid, 1, sizeof(float) * cols));
    auto* bo = static_cast<float*>(c.pool->scratch(tid, 2, sizeof(float) * cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* g = tileIn(c.isa, d, dy, r * cols, cols, bg);
      const float* ys = tileIn(c.isa, d, y, r * cols, cols, by);
      float* out = tileDst(d, dx, r * cols, bo);
      backwardRowAt(c.isa, g, ys, out, cols);
      tileOut(c.isa, d, out, dx, r * cols, cols);
    }
  });
}

}  // namespace ds
