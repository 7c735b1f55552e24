// Row-wise normalisations: LayerNorm (forward, the residual-fused forward, backward) and softmax
// (forward, backward). One block per row; row statistics are f64 block sums, as the cpu twin keeps
// them in f64; each thread revisits the same elements in every pass (the row stays in L1/L2), which
// also makes in-place softmax safe.
#include <algorithm>

#include "device.cuh"

namespace ds {
namespace cuda {
namespace {

int threadsFor(int64_t cols) { return cols >= 2048 ? 512 : cols >= 512 ? 256 : cols >= 128 ? 128 : 32; }
unsigned rowBlocks(int64_t rows) { return static_cast<unsigned>(std::min<int64_t>(rows, 65535 * 16)); }

// Mean and rstd of a row as the cpu computes them: mu in f64, variance of (x - mu) in f64, then
// rstd = 1 / sqrt(var + eps) rounded to f32. `load(i)` yields element i as f32.
template <class Load>
__device__ inline void rowStats(Load load, int64_t cols, float eps, double* shared, float* muOut, float* rsOut) {
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) s += load(i);
  const double mu = blockSum(s, shared) / static_cast<double>(cols);
  double v = 0.0;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const double dv = static_cast<double>(load(i)) - mu;
    v += dv * dv;
  }
  v = blockSum(v, shared);
  *muOut = static_cast<float>(mu);
  *rsOut = static_cast<float>(1.0 / sqrt(v / static_cast<double>(cols) + eps));
}

template <class E>
__global__ void layerNormForwardKernel(const typename E::T* x, const typename E::T* w, const typename E::T* b, typename E::T* y,
                                       float* mean, float* rstd, int64_t rows, int64_t cols, float eps) {
  __shared__ double shared[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const typename E::T* xr = x + r * cols;
    float mu, rs;
    rowStats([&](int64_t i) { return E::load(xr, i); }, cols, eps, shared, &mu, &rs);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) y[r * cols + i] = E::from((E::load(xr, i) - mu) * rs * E::load(w, i) + E::load(b, i));
    if (threadIdx.x == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

// sum = x + r rounded to the dtype, then the layer norm of the rounded sum (so y is exactly
// layerNormForward of the stored sum).
template <class E>
__global__ void layerNormResidualKernel(const typename E::T* x, const typename E::T* res, const typename E::T* w,
                                        const typename E::T* b, typename E::T* sum, typename E::T* y, float* mean, float* rstd,
                                        int64_t rows, int64_t cols, float eps) {
  __shared__ double shared[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t off = r * cols;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum[off + i] = E::from(E::load(x, off + i) + E::load(res, off + i));
    // Later passes read the sum as stored; each thread only its own elements, so no barrier is
    // needed, and sum may be x or r (in place).
    auto rounded = [&](int64_t i) { return E::load(sum, off + i); };
    float mu, rs;
    rowStats(rounded, cols, eps, shared, &mu, &rs);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) y[off + i] = E::from((rounded(i) - mu) * rs * E::load(w, i) + E::load(b, i));
    if (threadIdx.x == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w, xhat = (x - mean) * rstd.
template <class E>
__global__ void layerNormBackwardRowsKernel(const typename E::T* dy, const typename E::T* x, const typename E::T* w,
                                            const float* mean, const float* rstd, typename E::T* dx, int64_t rows, int64_t cols) {
  __shared__ double shared[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t off = r * cols;
    const float mu = mean[r], rs = rstd[r];
    double sg = 0.0, sgx = 0.0;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float g = E::load(dy, off + i) * E::load(w, i);
      sg += g;
      sgx += g * ((E::load(x, off + i) - mu) * rs);
    }
    const float mg = static_cast<float>(blockSum(sg, shared) / static_cast<double>(cols));
    const float mgx = static_cast<float>(blockSum(sgx, shared) / static_cast<double>(cols));
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float g = E::load(dy, off + i) * E::load(w, i);
      dx[off + i] = E::from(rs * (g - mg - (E::load(x, off + i) - mu) * rs * mgx));
    }
  }
}

// Parameter gradients in two passes like sumRows: stripes of rows per 32 columns, then in order.
template <class E>
__global__ void layerNormParamStripeKernel(const typename E::T* dy, const typename E::T* x, const float* mean, const float* rstd,
                                           int64_t rows, int64_t cols, int64_t stripeRows, double* partial) {
  __shared__ double accW[8][33], accB[8][33];
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = blockIdx.y * stripeRows, r1 = min(rows, r0 + stripeRows);
  double sw = 0.0, sb = 0.0;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const float g = E::load(dy, r * cols + c);
      sw += static_cast<double>(g * ((E::load(x, r * cols + c) - mean[r]) * rstd[r]));
      sb += g;
    }
  }
  accW[threadIdx.y][threadIdx.x] = sw;
  accB[threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double tw = 0.0, tb = 0.0;
    for (int i = 0; i < 8; ++i) {
      tw += accW[i][threadIdx.x];
      tb += accB[i][threadIdx.x];
    }
    partial[(2 * blockIdx.y) * cols + c] = tw;
    partial[(2 * blockIdx.y + 1) * cols + c] = tb;
  }
}

__global__ void layerNormParamFinishKernel(const double* partial, int64_t stripes, int64_t cols, float* dw, float* db) {
  DS_GRID_LOOP(c, cols) {
    double sw = 0.0, sb = 0.0;
    for (int64_t i = 0; i < stripes; ++i) {
      sw += partial[(2 * i) * cols + c];
      sb += partial[(2 * i + 1) * cols + c];
    }
    dw[c] = static_cast<float>(dw[c] + sw);
    db[c] = static_cast<float>(db[c] + sb);
  }
}

template <class E>
__global__ void softmaxForwardKernel(const typename E::T* x, typename E::T* y, int64_t rows, int64_t cols) {
  __shared__ float sharedF[32];
  __shared__ double sharedD[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t off = r * cols;
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, E::load(x, off + i));
    m = blockMax(m, sharedF);
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) s += expf(E::load(x, off + i) - m);
    const float inv = static_cast<float>(1.0 / blockSum(s, sharedD));
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) y[off + i] = E::from(expf(E::load(x, off + i) - m) * inv);
  }
}

// dx = y * (dy - sum(dy * y))
template <class E>
__global__ void softmaxBackwardKernel(const typename E::T* dy, const typename E::T* y, typename E::T* dx, int64_t rows, int64_t cols) {
  __shared__ double shared[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t off = r * cols;
    double dot = 0.0;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) dot += static_cast<double>(E::load(dy, off + i) * E::load(y, off + i));
    const float dd = static_cast<float>(blockSum(dot, shared));
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) dx[off + i] = E::from(E::load(y, off + i) * (E::load(dy, off + i) - dd));
  }
}

}  // namespace

void layerNormForward(Device& d, DType dt, const void* x, const void* w, const void* b, void* y, float* mean, float* rstd,
                      int64_t rows, int64_t cols, float eps) {
  if (cols == 0 || rows == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    using T = typename E::T;
    layerNormForwardKernel<E><<<rowBlocks(rows), threadsFor(cols), 0, d.compute>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), static_cast<T*>(y), mean, rstd, rows, cols, eps);
  });
  DS_LAUNCHED("layerNormForward");
}

void layerNormResidualForward(Device& d, DType dt, const void* x, const void* r, const void* w, const void* b, void* sum, void* y,
                              float* mean, float* rstd, int64_t rows, int64_t cols, float eps) {
  if (cols == 0 || rows == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    using T = typename E::T;
    layerNormResidualKernel<E><<<rowBlocks(rows), threadsFor(cols), 0, d.compute>>>(
        static_cast<const T*>(x), static_cast<const T*>(r), static_cast<const T*>(w), static_cast<const T*>(b), static_cast<T*>(sum),
        static_cast<T*>(y), mean, rstd, rows, cols, eps);
  });
  DS_LAUNCHED("layerNormResidualForward");
}

void layerNormBackward(Device& d, DType dt, const void* dy, const void* x, const void* w, const float* mean, const float* rstd,
                       void* dx, float* dw, float* db, int64_t rows, int64_t cols) {
  if (cols == 0 || rows == 0) return;
  const int64_t colBlocks = (cols + 31) / 32;
  const int64_t stripes = stripesFor(d, rows, colBlocks);
  const int64_t stripeRows = (rows + stripes - 1) / stripes;
  auto* partial = static_cast<double*>(d.scratchFor(static_cast<size_t>(2 * stripes * cols) * sizeof(double)));
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    using T = typename E::T;
    // Parameter gradients first: they read dy, which dx may overwrite (in place).
    layerNormParamStripeKernel<E><<<dim3(colBlocks, stripes), dim3(32, 8), 0, d.compute>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), mean, rstd, rows, cols, stripeRows, partial);
    layerNormBackwardRowsKernel<E><<<rowBlocks(rows), threadsFor(cols), 0, d.compute>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(w), mean, rstd, static_cast<T*>(dx), rows, cols);
  });
  layerNormParamFinishKernel<<<gridFor(cols), kThreads, 0, d.compute>>>(partial, stripes, cols, dw, db);
  DS_LAUNCHED("layerNormBackward");
}

void softmaxForward(Device& d, DType dt, const void* x, void* y, int64_t rows, int64_t cols) {
  if (cols == 0 || rows == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    softmaxForwardKernel<E><<<rowBlocks(rows), threadsFor(cols), 0, d.compute>>>(static_cast<const typename E::T*>(x),
                                                                                static_cast<typename E::T*>(y), rows, cols);
  });
  DS_LAUNCHED("softmaxForward");
}

void softmaxBackward(Device& d, DType dt, const void* dy, const void* y, void* dx, int64_t rows, int64_t cols) {
  if (cols == 0 || rows == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    using T = typename E::T;
    softmaxBackwardKernel<E><<<rowBlocks(rows), threadsFor(cols), 0, d.compute>>>(static_cast<const T*>(dy), static_cast<const T*>(y),
                                                                                 static_cast<T*>(dx), rows, cols);
  });
  DS_LAUNCHED("softmaxBackward");
}

}  // namespace cuda
}  // namespace ds
