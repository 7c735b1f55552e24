// LayerNorm over the last dim. Forward: row mean and variance in f64 sums, y = (x - mean) * rstd *
// w + b, mean and rstd saved as f32. Backward: dx row by row (rows split among threads), dweight and
// dbias summed per fixed chunk of rows in the same pass, then over the chunks in order (no atomics, the
// same bits on any thread count).
#include <algorithm>
#include <cmath>
#include <vector>

#include "ds/tile.h"

namespace ds {
namespace {

DS_INLINE void forwardRowBody(const float* x, const float* w, const float* b, float* y, int64_t cols, float eps,
                              float* meanOut, float* rstdOut) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < cols; ++i) s += x[i];
  const double mu = s / static_cast<double>(cols);
  const float muf = static_cast<float>(mu);
  double v = 0.0;
#pragma omp simd reduction(+ : v)
  for (int64_t i = 0; i < cols; ++i) {
    const double d = static_cast<double>(x[i]) - mu;
    v += d * d;
  }
  const float rs = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(cols) + eps));
  for (int64_t i = 0; i < cols; ++i) y[i] = (x[i] - muf) * rs * w[i] + b[i];
  *meanOut = muf;
  *rstdOut = rs;
}
DS_VARIANTS(void, forwardRow, forwardRowBody,
            (const float* x, const float* w, const float* b, float* y, int64_t cols, float eps, float* m, float* r),
            (x, w, b, y, cols, eps, m, r))

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w, xhat = (x - mean) * rstd.
DS_INLINE void backwardRowBody(const float* dy, const float* x, const float* w, float mu, float rs, float* dx,
                               int64_t cols) {
  double sumG = 0.0, sumGX = 0.0;
#pragma omp simd reduction(+ : sumG, sumGX)
  for (int64_t i = 0; i < cols; ++i) {
    const float g = dy[i] * w[i];
    sumG += g;
    sumGX += g * ((x[i] - mu) * rs);
  }
  const float mg = static_cast<float>(sumG / static_cast<double>(cols));
  const float mgx = static_cast<float>(sumGX / static_cast<double>(cols));
  for (int64_t i = 0; i < cols; ++i) dx[i] = rs * (dy[i] * w[i] - mg - (x[i] - mu) * rs * mgx);
}
DS_VARIANTS(void, backwardRow, backwardRowBody,
            (const float* dy, const float* x, const float* w, float mu, float rs, float* dx, int64_t cols),
            (dy, x, w, mu, rs, dx, cols))

DS_INLINE void paramGradBody(const float* dy, const float* x, float mu, float rs, double* dw, double* db, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    dw[i] += static_cast<double>(dy[i] * ((x[i] - mu) * rs));
    db[i] += static_cast<double>(dy[i]);
  }
}
DS_VARIANTS(void, paramGrad, paramGradBody,
            (const float* dy, const float* x, float mu, float rs, double* dw, double* db, int64_t n),
            (dy, x, mu, rs, dw, db, n))

std::vector<float> vectorF32(Isa isa, DType d, const void* p, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  toF32(isa, d, p, out.data(), n);
  return out;
}

DS_INLINE int64_t rowGrain(int64_t cols) { return std::max<int64_t>(1, kTaskGrain / std::max<int64_t>(1, cols)); }

}  // namespace

void layerNormForward(const Ctx& c, DType d, const void* x, const void* w, const void* b, void* y, float* mean,
                      float* rstd, int64_t rows, int64_t cols, float eps) {
  if (cols == 0) return;
  const std::vector<float> wf = vectorF32(c.isa, d, w, cols), bf = vectorF32(c.isa, d, b, cols);
  c.pool->parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1, int tid) {
    auto* bx = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * cols));
    auto* by = static_cast<float*>(c.pool->scratch(tid, 1, sizeof(float) * cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* xs = tileIn(c.isa, d, x, r * cols, cols, bx);
      float* ys = tileDst(d, y, r * cols, by);
      forwardRowAt(c.isa, xs, wf.data(), bf.data(), ys, cols, eps, mean + r, rstd + r);
      tileOut(c.isa, d, ys, y, r * cols, cols);
    }
  });
}

// One pass per row: x + r into the sum row (rounded to dtype when it is not f32, and normalised as
// rounded, so that y is exactly layerNormForward of the stored sum), then the layer norm of it while
// the row is in L1. The unfused pair reads x and r, writes h, then reads h again.
DS_INLINE void addRowBody(const float* x, const float* r, float* s, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) s[i] = x[i] + r[i];
}
DS_VARIANTS(void, addRow, addRowBody, (const float* x, const float* r, float* s, int64_t n), (x, r, s, n))

void layerNormResidualForward(const Ctx& c, DType d, const void* x, const void* r, const void* w, const void* b,
                              void* sum, void* y, float* mean, float* rstd, int64_t rows, int64_t cols, float eps) {
  if (cols == 0) return;
  const std::vector<float> wf = vectorF32(c.isa, d, w, cols), bf = vectorF32(c.isa, d, b, cols);
  c.pool->parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1, int tid) {
    auto* bx = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * cols));
    auto* br = static_cast<float*>(c.pool->scratch(tid, 1, sizeof(float) * cols));
    auto* bs = static_cast<float*>(c.pool->scratch(tid, 2, sizeof(float) * cols));
    auto* by = static_cast<float*>(c.pool->scratch(tid, 3, sizeof(float) * cols));
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t off = row * cols;
      float* ss = tileDst(d, sum, off, bs);
      addRowAt(c.isa, tileIn(c.isa, d, x, off, cols, bx), tileIn(c.isa, d, r, off, cols, br), ss, cols);
      tileOut(c.isa, d, ss, sum, off, cols);
      const float* sr = tileIn(c.isa, d, sum, off, cols, bs);  // the sum as stored (rounded)
      float* ys = tileDst(d, y, off, by);
      forwardRowAt(c.isa, sr, wf.data(), bf.data(), ys, cols, eps, mean + row, rstd + row);
      tileOut(c.isa, d, ys, y, off, cols);
    }
  });
}

// One pass over dy and x: each row's dx, and its dweight / dbias terms added (in f64) into the partial
// sums of its chunk of kParamChunk rows while the row is in L1; then the chunks' partials are added in
// chunk order per column. The chunks are fixed, not one per thread, so the sums are the same on any
// thread count. (The two-pass form read dy and x again for the parameter gradients: 1.6x the memory
// traffic of this one; measured on the GPT bench's f32 [2048, 384] rows below.)
constexpr int64_t kParamChunk = 32;

void layerNormBackward(const Ctx& c, DType d, const void* dy, const void* x, const void* w, const float* mean,
                       const float* rstd, void* dx, float* dw, float* db, int64_t rows, int64_t cols) {
  if (cols == 0 || rows == 0) return;
  const std::vector<float> wf = vectorF32(c.isa, d, w, cols);
  const int64_t chunks = (rows + kParamChunk - 1) / kParamChunk;
  // Partial sums [chunk][dweight cols, dbias cols], shared by the threads: held in the caller's
  // (thread 0's) scratch slot 3, which the row pass below does not use, so no allocation per call.
  const size_t nPartial = static_cast<size_t>(chunks * 2 * cols);
  auto* partial = static_cast<double*>(c.pool->scratch(0, 3, sizeof(double) * nPartial));
  std::fill(partial, partial + nPartial, 0.0);
  const int64_t chunkGrain = std::max<int64_t>(1, kTaskGrain / std::max<int64_t>(1, kParamChunk * cols));
  c.pool->parallelFor(chunks, chunkGrain, [&](int64_t k0, int64_t k1, int tid) {
    auto* bdy = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * cols));
    auto* bx = static_cast<float*>(c.pool->scratch(tid, 1, sizeof(float) * cols));
    auto* bdx = static_cast<float*>(c.pool->scratch(tid, 2, sizeof(float) * cols));
    for (int64_t k = k0; k < k1; ++k) {
      double* pw = partial + k * 2 * cols;
      double* pb = pw + cols;
      for (int64_t r = k * kParamChunk; r < std::min(rows, (k + 1) * kParamChunk); ++r) {
        const float* g = tileIn(c.isa, d, dy, r * cols, cols, bdy);
        const float* xs = tileIn(c.isa, d, x, r * cols, cols, bx);
        float* out = tileDst(d, dx, r * cols, bdx);
        backwardRowAt(c.isa, g, xs, wf.data(), mean[r], rstd[r], out, cols);
        tileOut(c.isa, d, out, dx, r * cols, cols);
        paramGradAt(c.isa, g, xs, mean[r], rstd[r], pw, pb, cols);
      }
    }
  });
  c.pool->parallelFor(cols, std::max<int64_t>(1, kTaskGrain / std::max<int64_t>(1, chunks)), [&](int64_t c0, int64_t c1, int) {
    for (int64_t j = c0; j < c1; ++j) {
      double sw = 0.0, sb = 0.0;
      for (int64_t k = 0; k < chunks; ++k) {
        sw += partial[k * 2 * cols + j];
        sb += partial[k * 2 * cols + cols + j];
      }
      dw[j] = static_cast<float>(dw[j] + sw);
      db[j] = static_cast<float>(db[j] + sb);
    }
  });
}

}  // namespace ds
