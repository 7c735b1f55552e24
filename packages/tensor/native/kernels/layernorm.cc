// LayerNorm over the last dim. Forward: row mean and variance in f64 sums, y = (x - mean) * rstd *
// w + b, mean and rstd saved as f32. Backward: dx row by row (rows split among threads); dweight and
// dbias in a second pass that splits columns among threads, so accumulation needs no atomics.
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

void layerNormBackward(const Ctx& c, DType d, const void* dy, const void* x, const void* w, const float* mean,
                       const float* rstd, void* dx, float* dw, float* db, int64_t rows, int64_t cols) {
  if (cols == 0 || rows == 0) return;
  const std::vector<float> wf = vectorF32(c.isa, d, w, cols);
  c.pool->parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1, int tid) {
    auto* bdy = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * cols));
    auto* bx = static_cast<float*>(c.pool->scratch(tid, 1, sizeof(float) * cols));
    auto* bdx = static_cast<float*>(c.pool->scratch(tid, 2, sizeof(float) * cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* g = tileIn(c.isa, d, dy, r * cols, cols, bdy);
      const float* xs = tileIn(c.isa, d, x, r * cols, cols, bx);
      float* out = tileDst(d, dx, r * cols, bdx);
      backwardRowAt(c.isa, g, xs, wf.data(), mean[r], rstd[r], out, cols);
      tileOut(c.isa, d, out, dx, r * cols, cols);
    }
  });
  // Parameter gradients: each task owns a block of columns for all rows.
  const int64_t threads = c.pool->size();
  const int64_t block = std::min<int64_t>(kTile, std::max<int64_t>(64, (cols + threads - 1) / threads));
  const int64_t blocks = (cols + block - 1) / block;
  c.pool->parallelFor(blocks, rows * block < kTaskGrain ? blocks : 1, [&](int64_t b0, int64_t b1, int) {
    double accW[kTile], accB[kTile];
    float bdy[kTile], bx[kTile];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t c0 = blk * block, len = std::min(cols, c0 + block) - c0;
      std::fill(accW, accW + len, 0.0);
      std::fill(accB, accB + len, 0.0);
      for (int64_t r = 0; r < rows; ++r) {
        const float* g = tileIn(c.isa, d, dy, r * cols + c0, len, bdy);
        const float* xs = tileIn(c.isa, d, x, r * cols + c0, len, bx);
        paramGradAt(c.isa, g, xs, mean[r], rstd[r], accW, accB, len);
      }
      for (int64_t j = 0; j < len; ++j) {
        dw[c0 + j] = static_cast<float>(dw[c0 + j] + accW[j]);
        db[c0 + j] = static_cast<float>(db[c0 + j] + accB[j]);
      }
    }
  });
}

}  // namespace ds
