// Causal attention, flash style: a block owns a tile of B queries (forward, dQ) or keys (dK, dV);
// tiles of the other side stream through shared memory, so no T x T matrix is ever stored.
// Forward keeps an online softmax per query (running max m and normaliser l, earlier output
// rescaled when m grows) and saves lse = m + log(l); backward recomputes P = exp(scale q.k - lse)
// from lse, with corr_i = dO_i . O_i precomputed, in two kernels (dK and dV per key tile, dQ per
// query tile) so that nothing is accumulated with atomics and the result does not depend on timing.
//
// All arithmetic is f32 on CUDA cores: 256 threads as a 16 x 16 grid, each computing a strided
// (B/16) x (B/16) patch of a score tile and a (B/16) x (D/16) patch of an output tile; tiles are
// padded to D columns (zeros past the head dim) with odd row strides so shared loads do not
// conflict. Two shapes: B = 64 for head dims up to 64, B = 32 for head dims up to 128.
#include <algorithm>

#include "device.cuh"

namespace ds {
namespace cuda {
namespace {

constexpr int kAttnThreads = 256;

template <int B, int D>
struct Shape {
  static constexpr int LD = D + 1;  // row stride of [B, D] tiles
  static constexpr int LS = B + 1;  // row stride of [B, B] tiles
  static constexpr int R = B / 16;  // patch rows (and score-patch columns) per thread
  static constexpr int DC = D / 16; // output-patch columns per thread
};

// tile[r][c] = src[row0 + r, c] (times mul) for r < B, c < D; zero past t rows or hd columns.
template <class E, int B, int D>
__device__ inline void loadTile(float* tile, const typename E::T* src, int64_t row0, int64_t t, int64_t hd, float mul) {
  for (int idx = threadIdx.x; idx < B * D; idx += kAttnThreads) {
    const int r = idx / D, c = idx % D;
    const int64_t row = row0 + r;
    tile[r * Shape<B, D>::LD + c] = (row < t && c < hd) ? E::load(src, row * hd + c) * mul : 0.0f;
  }
}

// acc[i][j] = sum_k A[ty + 16i][k] * M[tx + 16j][k]: a score patch from two [B, D] tiles.
template <int B, int D>
__device__ inline void scorePatch(const float* A, const float* M, float (&acc)[B / 16][B / 16]) {
  using S = Shape<B, D>;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
  for (int i = 0; i < S::R; ++i)
#pragma unroll
    for (int j = 0; j < S::R; ++j) acc[i][j] = 0.0f;
#pragma unroll 4
  for (int k = 0; k < D; ++k) {
    float a[S::R], b[S::R];
#pragma unroll
    for (int i = 0; i < S::R; ++i) a[i] = A[(ty + 16 * i) * S::LD + k];
#pragma unroll
    for (int j = 0; j < S::R; ++j) b[j] = M[(tx + 16 * j) * S::LD + k];
#pragma unroll
    for (int i = 0; i < S::R; ++i)
#pragma unroll
      for (int j = 0; j < S::R; ++j) acc[i][j] += a[i] * b[j];
  }
}

// acc[i][j] += sum_k P[ty + 16i][k] * M[k][tx + 16j]  (P a [B, B] tile, M a [B, D] tile).
template <int B, int D>
__device__ inline void rowsTimes(const float* P, const float* M, float (&acc)[B / 16][D / 16]) {
  using S = Shape<B, D>;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll 4
  for (int k = 0; k < B; ++k) {
    float p[S::R], m[S::DC];
#pragma unroll
    for (int i = 0; i < S::R; ++i) p[i] = P[(ty + 16 * i) * S::LS + k];
#pragma unroll
    for (int j = 0; j < S::DC; ++j) m[j] = M[k * S::LD + tx + 16 * j];
#pragma unroll
    for (int i = 0; i < S::R; ++i)
#pragma unroll
      for (int j = 0; j < S::DC; ++j) acc[i][j] += p[i] * m[j];
  }
}

// acc[i][j] += sum_k P[k][ty + 16i] * M[k][tx + 16j]: the same with P read transposed.
template <int B, int D>
__device__ inline void colsTimes(const float* P, const float* M, float (&acc)[B / 16][D / 16]) {
  using S = Shape<B, D>;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll 4
  for (int k = 0; k < B; ++k) {
    float p[S::R], m[S::DC];
#pragma unroll
    for (int i = 0; i < S::R; ++i) p[i] = P[k * S::LS + ty + 16 * i];
#pragma unroll
    for (int j = 0; j < S::DC; ++j) m[j] = M[k * S::LD + tx + 16 * j];
#pragma unroll
    for (int i = 0; i < S::R; ++i)
#pragma unroll
      for (int j = 0; j < S::DC; ++j) acc[i][j] += p[i] * m[j];
  }
}

// Writes a (B/16) x (D/16) patch of rows row0.. into dst [t, hd] (times mul[i] per patch row).
template <class E, int B, int D>
__device__ inline void storePatch(typename E::T* dst, const float (&acc)[B / 16][D / 16], int64_t row0, int64_t t, int64_t hd,
                                  const float* rowMul) {
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
  for (int i = 0; i < B / 16; ++i) {
    const int r = ty + 16 * i;
    const int64_t row = row0 + r;
    if (row >= t) continue;
    const float mul = rowMul ? rowMul[r] : 1.0f;
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      const int c = tx + 16 * j;
      if (c < hd) dst[row * hd + c] = E::from(acc[i][j] * mul);
    }
  }
}

template <class E, int B, int D>
__global__ void __launch_bounds__(kAttnThreads) attentionForwardKernel(const typename E::T* q, const typename E::T* k,
                                                                      const typename E::T* v, typename E::T* out, float* lse,
                                                                      int64_t t, int64_t hd, float scale) {
  using S = Shape<B, D>;
  extern __shared__ float smem[];
  float *qs = smem, *ks = qs + B * S::LD, *vs = ks + B * S::LD, *ss = vs + B * S::LD;
  float *rowM = ss + B * S::LS, *rowL = rowM + B, *rowAlpha = rowL + B;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * B, head = static_cast<int64_t>(blockIdx.y) * t * hd;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  loadTile<E, B, D>(qs, q + head, q0, t, hd, scale);  // scaled once, so scores come out as scale * q.k
  if (threadIdx.x < B) {
    rowM[threadIdx.x] = -INFINITY;
    rowL[threadIdx.x] = 0.0f;
  }
  float o[S::R][S::DC] = {};
  const int tpr = kAttnThreads / B, row = threadIdx.x / tpr, part = threadIdx.x % tpr;
  const int64_t kEnd = min(t, q0 + B);  // the last query of the tile sees keys up to itself
  for (int64_t k0 = 0; k0 < kEnd; k0 += B) {
    __syncthreads();
    loadTile<E, B, D>(ks, k + head, k0, t, hd, 1.0f);
    loadTile<E, B, D>(vs, v + head, k0, t, hd, 1.0f);
    __syncthreads();
    float s[S::R][S::R];
    scorePatch<B, D>(qs, ks, s);
#pragma unroll
    for (int i = 0; i < S::R; ++i)
#pragma unroll
      for (int j = 0; j < S::R; ++j) {
        const int64_t qi = q0 + ty + 16 * i, kj = k0 + tx + 16 * j;
        ss[(ty + 16 * i) * S::LS + tx + 16 * j] = (kj <= qi && kj < t) ? s[i][j] : -INFINITY;
      }
    __syncthreads();
    // Online softmax update, tpr threads per row (adjacent lanes of one warp).
    float mx = -INFINITY;
    for (int c = part; c < B; c += tpr) mx = fmaxf(mx, ss[row * S::LS + c]);
    for (int off = tpr / 2; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    const float mOld = rowM[row], mNew = fmaxf(mOld, mx);
    float sum = 0.0f;
    for (int c = part; c < B; c += tpr) {
      const float p = mNew == -INFINITY ? 0.0f : expf(ss[row * S::LS + c] - mNew);  // masked: exp(-inf) = 0
      ss[row * S::LS + c] = p;
      sum += p;
    }
    for (int off = tpr / 2; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    __syncwarp();
    if (part == 0) {
      const float alpha = mOld == -INFINITY ? 0.0f : expf(mOld - mNew);
      rowL[row] = rowL[row] * alpha + sum;
      rowM[row] = mNew;
      rowAlpha[row] = alpha;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < S::R; ++i) {
      const float a = rowAlpha[ty + 16 * i];
#pragma unroll
      for (int j = 0; j < S::DC; ++j) o[i][j] *= a;
    }
    rowsTimes<B, D>(ss, vs, o);
  }
  __syncthreads();
  if (threadIdx.x < B) {
    const float l = rowL[threadIdx.x];
    rowAlpha[threadIdx.x] = 1.0f / l;
    if (q0 + threadIdx.x < t) lse[blockIdx.y * t + q0 + threadIdx.x] = rowM[threadIdx.x] + logf(l);
  }
  __syncthreads();
  storePatch<E, B, D>(out + head, o, q0, t, hd, rowAlpha);
}

// corr[i] = dO_i . O_i (f64 sum of f32 products, as the cpu kernel), one warp per row.
template <class E>
__global__ void attentionCorrKernel(const typename E::T* dout, const typename E::T* out, float* corr, int64_t rows, int64_t hd) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (warp >= rows) return;
  double s = 0.0;
  for (int64_t c = lane; c < hd; c += 32) s += static_cast<double>(E::load(dout, warp * hd + c) * E::load(out, warp * hd + c));
  s = warpSum(s);
  if (lane == 0) corr[warp] = static_cast<float>(s);
}

// P and dS of one (query tile, key tile) pair into shared [B, B] tiles, rows = queries:
// P = exp(scale q.k - lse), dS = P (dO.v - corr) scale; zero where the key is not visible.
template <int B, int D>
__device__ inline void probabilityAndGrad(const float* qs, const float* ks, const float* dos, const float* vs, const float* lseRow,
                                          const float* corrRow, float* ps, float* dss, int64_t q0, int64_t k0, int64_t t, float scale) {
  using S = Shape<B, D>;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  float s[S::R][S::R], dp[S::R][S::R];
  scorePatch<B, D>(qs, ks, s);
  scorePatch<B, D>(dos, vs, dp);
#pragma unroll
  for (int i = 0; i < S::R; ++i)
#pragma unroll
    for (int j = 0; j < S::R; ++j) {
      const int r = ty + 16 * i, c = tx + 16 * j;
      const int64_t qi = q0 + r, kj = k0 + c;
      const bool visible = kj <= qi && qi < t;
      const float p = visible ? expf(s[i][j] * scale - lseRow[r]) : 0.0f;
      ps[r * S::LS + c] = p;
      dss[r * S::LS + c] = visible ? p * (dp[i][j] - corrRow[r]) * scale : 0.0f;
    }
}

template <class E, int B, int D>
__device__ inline void loadRowStats(float* lseRow, float* corrRow, const float* lse, const float* corr, int64_t row0, int64_t t) {
  if (threadIdx.x < B) {
    const int64_t row = row0 + threadIdx.x;
    lseRow[threadIdx.x] = row < t ? lse[row] : 0.0f;
    corrRow[threadIdx.x] = row < t ? corr[row] : 0.0f;
  }
}

// dV = P^T dO and dK = dS^T Q for one key tile, over the query tiles at or below the diagonal.
template <class E, int B, int D>
__global__ void __launch_bounds__(kAttnThreads) attentionKeyGradKernel(const typename E::T* dout, const typename E::T* q,
                                                                      const typename E::T* k, const typename E::T* v, const float* lse,
                                                                      const float* corr, typename E::T* dk, typename E::T* dv,
                                                                      int64_t t, int64_t hd, float scale) {
  using S = Shape<B, D>;
  extern __shared__ float smem[];
  float *ks = smem, *vs = ks + B * S::LD, *qs = vs + B * S::LD, *dos = qs + B * S::LD;
  float *ps = dos + B * S::LD, *dss = ps + B * S::LS, *lseRow = dss + B * S::LS, *corrRow = lseRow + B;
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * B, head = static_cast<int64_t>(blockIdx.y) * t * hd;
  const int64_t statRow = static_cast<int64_t>(blockIdx.y) * t;
  loadTile<E, B, D>(ks, k + head, k0, t, hd, 1.0f);
  loadTile<E, B, D>(vs, v + head, k0, t, hd, 1.0f);
  float gk[S::R][S::DC] = {}, gv[S::R][S::DC] = {};
  for (int64_t q0 = k0; q0 < t; q0 += B) {
    __syncthreads();
    loadTile<E, B, D>(qs, q + head, q0, t, hd, 1.0f);
    loadTile<E, B, D>(dos, dout + head, q0, t, hd, 1.0f);
    loadRowStats<E, B, D>(lseRow, corrRow, lse + statRow, corr + statRow, q0, t);
    __syncthreads();
    probabilityAndGrad<B, D>(qs, ks, dos, vs, lseRow, corrRow, ps, dss, q0, k0, t, scale);
    __syncthreads();
    colsTimes<B, D>(ps, dos, gv);
    colsTimes<B, D>(dss, qs, gk);
  }
  storePatch<E, B, D>(dk + head, gk, k0, t, hd, nullptr);
  storePatch<E, B, D>(dv + head, gv, k0, t, hd, nullptr);
}

// dQ = dS K for one query tile, over the key tiles it can see.
template <class E, int B, int D>
__global__ void __launch_bounds__(kAttnThreads) attentionQueryGradKernel(const typename E::T* dout, const typename E::T* q,
                                                                        const typename E::T* k, const typename E::T* v, const float* lse,
                                                                        const float* corr, typename E::T* dq, int64_t t, int64_t hd,
                                                                        float scale) {
  using S = Shape<B, D>;
  extern __shared__ float smem[];
  float *qs = smem, *dos = qs + B * S::LD, *ks = dos + B * S::LD, *vs = ks + B * S::LD;
  float *ps = vs + B * S::LD, *dss = ps + B * S::LS, *lseRow = dss + B * S::LS, *corrRow = lseRow + B;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * B, head = static_cast<int64_t>(blockIdx.y) * t * hd;
  const int64_t statRow = static_cast<int64_t>(blockIdx.y) * t;
  loadTile<E, B, D>(qs, q + head, q0, t, hd, 1.0f);
  loadTile<E, B, D>(dos, dout + head, q0, t, hd, 1.0f);
  loadRowStats<E, B, D>(lseRow, corrRow, lse + statRow, corr + statRow, q0, t);
  float gq[S::R][S::DC] = {};
  const int64_t kEnd = min(t, q0 + B);
  for (int64_t k0 = 0; k0 < kEnd; k0 += B) {
    __syncthreads();
    loadTile<E, B, D>(ks, k + head, k0, t, hd, 1.0f);
    loadTile<E, B, D>(vs, v + head, k0, t, hd, 1.0f);
    __syncthreads();
    probabilityAndGrad<B, D>(qs, ks, dos, vs, lseRow, corrRow, ps, dss, q0, k0, t, scale);
    __syncthreads();
    rowsTimes<B, D>(dss, ks, gq);
  }
  storePatch<E, B, D>(dq + head, gq, q0, t, hd, nullptr);
}

template <int B, int D>
constexpr size_t forwardSmem() { return sizeof(float) * (3 * B * Shape<B, D>::LD + B * Shape<B, D>::LS + 3 * B); }
template <int B, int D>
constexpr size_t backwardSmem() { return sizeof(float) * (4 * B * Shape<B, D>::LD + 2 * B * Shape<B, D>::LS + 2 * B); }

template <class Kernel>
void allowSmem(Kernel kernel, size_t bytes) {
  DS_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// Calls f(B, D) as compile-time constants for a head dim.
template <class F>
void withShape(int64_t hd, F&& f) {
  if (hd <= 64) f(std::integral_constant<int, 64>{}, std::integral_constant<int, 64>{});
  else if (hd <= kMaxHeadDim) f(std::integral_constant<int, 32>{}, std::integral_constant<int, 128>{});
  else throw Error(Error::Unsupported, "attention: head dim " + std::to_string(hd) + " is above the cuda kernels' " + std::to_string(kMaxHeadDim));
}

void checkGrid(int64_t bh, int64_t t, int64_t B) {
  if (bh > 65535 || (t + B - 1) / B > 2147483647) {
    throw Error(Error::Unsupported, "attention: batch*heads = " + std::to_string(bh) + " is above the cuda kernels' 65535 (split the batch)");
  }
}

}  // namespace

void attentionForward(Device& d, DType dt, const void* q, const void* k, const void* v, void* out, float* lse, int64_t bh, int64_t t,
                      int64_t hd, float scale) {
  if (bh == 0 || t == 0 || hd == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    using T = typename E::T;
    withShape(hd, [&](auto bc, auto dc) {
      constexpr int B = decltype(bc)::value, D = decltype(dc)::value;
      checkGrid(bh, t, B);
      const auto kernel = attentionForwardKernel<E, B, D>;
      allowSmem(kernel, forwardSmem<B, D>());
      const dim3 grid(static_cast<unsigned>((t + B - 1) / B), static_cast<unsigned>(bh));
      kernel<<<grid, kAttnThreads, forwardSmem<B, D>(), d.compute>>>(static_cast<const T*>(q), static_cast<const T*>(k),
                                                                    static_cast<const T*>(v), static_cast<T*>(out), lse, t, hd, scale);
    });
  });
  DS_LAUNCHED("attentionForward");
}

void attentionBackward(Device& d, DType dt, const void* dout, const void* q, const void* k, const void* v, const void* out,
                       const float* lse, void* dq, void* dk, void* dv, int64_t bh, int64_t t, int64_t hd, float scale) {
  if (bh == 0 || t == 0 || hd == 0) return;
  auto* corr = static_cast<float*>(d.scratchFor(static_cast<size_t>(bh * t) * sizeof(float)));
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    using T = typename E::T;
    const int64_t rows = bh * t;
    attentionCorrKernel<E><<<static_cast<unsigned>((rows * 32 + kThreads - 1) / kThreads), kThreads, 0, d.compute>>>(
        static_cast<const T*>(dout), static_cast<const T*>(out), corr, rows, hd);
    withShape(hd, [&](auto bc, auto dc) {
      constexpr int B = decltype(bc)::value, D = decltype(dc)::value;
      checkGrid(bh, t, B);
      const dim3 grid(static_cast<unsigned>((t + B - 1) / B), static_cast<unsigned>(bh));
      const auto keyKernel = attentionKeyGradKernel<E, B, D>;
      const auto queryKernel = attentionQueryGradKernel<E, B, D>;
      allowSmem(keyKernel, backwardSmem<B, D>());
      allowSmem(queryKernel, backwardSmem<B, D>());
      keyKernel<<<grid, kAttnThreads, backwardSmem<B, D>(), d.compute>>>(static_cast<const T*>(dout), static_cast<const T*>(q),
                                                                        static_cast<const T*>(k), static_cast<const T*>(v), lse, corr,
                                                                        static_cast<T*>(dk), static_cast<T*>(dv), t, hd, scale);
      queryKernel<<<grid, kAttnThreads, backwardSmem<B, D>(), d.compute>>>(static_cast<const T*>(dout), static_cast<const T*>(q),
                                                                          static_cast<const T*>(k), static_cast<const T*>(v), lse, corr,
                                                                          static_cast<T*>(dq), t, hd, scale);
    });
  });
  DS_LAUNCHED("attentionBackward");
}

}  // namespace cuda
}  // namespace ds
