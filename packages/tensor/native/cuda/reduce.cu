// Reductions. Sums returned as numbers accumulate in f64, in a fixed tree (per-thread partials, a
// block sum, then one block adding the block partials in order), so a result depends on n only,
// never on timing. sumRows splits rows into a fixed number of stripes per column block and adds
// the stripes in order; hasInfNan tests exponent bits and raises a flag.
#include <algorithm>

#include "device.cuh"

namespace ds {
namespace cuda {
namespace {

constexpr int kMaxBlocks = 1024;

template <class E, bool Squares>
__global__ void partialSumKernel(const typename E::T* x, int64_t n, double* partial) {
  __shared__ double shared[32];
  double s = 0.0;
  DS_GRID_LOOP(i, n) {
    const double v = E::load(x, i);
    s += Squares ? v * v : v;
  }
  s = blockSum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void finishSumKernel(const double* partial, int blocks, double* out) {
  __shared__ double shared[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < blocks; i += blockDim.x) s += partial[i];
  s = blockSum(s, shared);
  if (threadIdx.x == 0) *out = s;
}

template <class E>
__global__ void infNanKernel(const typename E::T* x, int64_t n, unsigned* flag) {
  const uint32_t mask = E::code == DType::F32 ? 0x7f800000u : E::code == DType::BF16 ? 0x7f80u : 0x7c00u;
  bool hit = false;
  DS_GRID_LOOP(i, n) hit |= (static_cast<uint32_t>(x[i]) & mask) == mask;
  if (__syncthreads_or(hit) && threadIdx.x == 0) *flag = 1u;
}
template <>
__global__ void infNanKernel<F32T>(const float* x, int64_t n, unsigned* flag) {
  bool hit = false;
  DS_GRID_LOOP(i, n) hit |= (__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u;
  if (__syncthreads_or(hit) && threadIdx.x == 0) *flag = 1u;
}

// Stripe s of the rows, 32 columns per block: partial[s * cols + c] = sum of x[r, c] over the stripe.
template <class E>
__global__ void columnStripeKernel(const typename E::T* x, int64_t rows, int64_t cols, int64_t stripeRows, double* partial) {
  __shared__ double acc[8][33];
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = blockIdx.y * stripeRows, r1 = min(rows, r0 + stripeRows);
  double s = 0.0;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) s += E::load(x, r * cols + c);
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double t = 0.0;
    for (int i = 0; i < 8; ++i) t += acc[i][threadIdx.x];
    partial[blockIdx.y * cols + c] = t;
  }
}

__global__ void columnFinishKernel(const double* partial, int64_t stripes, int64_t cols, float* out, bool accumulate) {
  DS_GRID_LOOP(c, cols) {
    double s = 0.0;
    for (int64_t i = 0; i < stripes; ++i) s += partial[i * cols + c];
    out[c] = static_cast<float>(accumulate ? static_cast<double>(out[c]) + s : s);
  }
}

template <class E>
__global__ void rowSumKernel(const typename E::T* x, int64_t rows, int64_t cols, typename E::T* out) {
  __shared__ double shared[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += E::load(x, r * cols + j);
    s = blockSum(s, shared);
    if (threadIdx.x == 0) out[r] = E::from(static_cast<float>(s));
  }
}

template <bool Squares>
double sumOf(Device& d, DType dt, const void* x, int64_t n) {
  if (n == 0) return 0.0;
  const int blocks = static_cast<int>(std::min<int64_t>(kMaxBlocks, gridFor(n, 4)));
  auto* partial = static_cast<double*>(d.scratchFor((blocks + 1) * sizeof(double)));
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    partialSumKernel<E, Squares><<<blocks, kThreads, 0, d.compute>>>(static_cast<const typename E::T*>(x), n, partial);
  });
  finishSumKernel<<<1, kThreads, 0, d.compute>>>(partial, blocks, partial + blocks);
  DS_LAUNCHED("sum");
  DS_CUDA(cudaMemcpyAsync(d.hostResult, partial + blocks, sizeof(double), cudaMemcpyDeviceToHost, d.compute));
  waitCompute(d);
  return *resultWords<double>(d);
}

}  // namespace

double sum(Device& d, DType dt, const void* x, int64_t n) { return sumOf<false>(d, dt, x, n); }
double sumSquares(Device& d, DType dt, const void* x, int64_t n) { return sumOf<true>(d, dt, x, n); }

bool hasInfNan(Device& d, DType dt, const void* x, int64_t n) {
  if (n == 0) return false;
  auto* flag = static_cast<unsigned*>(d.scratchFor(sizeof(unsigned)));
  DS_CUDA(cudaMemsetAsync(flag, 0, sizeof(unsigned), d.compute));
  const unsigned blocks = std::min<unsigned>(gridFor(n, 4), 4 * kMaxBlocks);
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    infNanKernel<E><<<blocks, kThreads, 0, d.compute>>>(static_cast<const typename E::T*>(x), n, flag);
  });
  DS_LAUNCHED("hasInfNan");
  DS_CUDA(cudaMemcpyAsync(d.hostResult, flag, sizeof(unsigned), cudaMemcpyDeviceToHost, d.compute));
  waitCompute(d);
  return *resultWords<unsigned>(d) != 0;
}

// Stripes per column block for the two-pass column sums (here and layerNormBackward): enough
// blocks to fill the GPU, each stripe at least 64 rows.
int64_t stripesFor(Device& d, int64_t rows, int64_t colBlocks) {
  const int64_t want = (4 * d.props.multiProcessorCount + colBlocks - 1) / colBlocks;
  return std::max<int64_t>(1, std::min<int64_t>({want, (rows + 63) / 64, 256}));
}

void sumRows(Device& d, DType dt, const void* x, int64_t rows, int64_t cols, float* out, bool accumulate) {
  if (cols == 0) return;
  const int64_t colBlocks = (cols + 31) / 32;
  const int64_t stripes = stripesFor(d, rows, colBlocks);
  const int64_t stripeRows = (rows + stripes - 1) / stripes;
  auto* partial = static_cast<double*>(d.scratchFor(static_cast<size_t>(stripes * cols) * sizeof(double)));
  if (rows > 0) {
    withFloat(dt, [&](auto e) {
      using E = decltype(e);
      columnStripeKernel<E><<<dim3(colBlocks, stripes), dim3(32, 8), 0, d.compute>>>(static_cast<const typename E::T*>(x), rows, cols,
                                                                                     stripeRows, partial);
    });
  }
  columnFinishKernel<<<gridFor(cols), kThreads, 0, d.compute>>>(partial, rows > 0 ? stripes : 0, cols, out, accumulate);
  DS_LAUNCHED("sumRows");
}

void sumLastDim(Device& d, DType dt, const void* x, int64_t rows, int64_t cols, void* out) {
  if (rows == 0) return;
  const int threads = cols >= 1024 ? 256 : cols >= 128 ? 128 : 32;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(rows, 65535 * 4));
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    rowSumKernel<E><<<blocks, threads, 0, d.compute>>>(static_cast<const typename E::T*>(x), rows, cols, static_cast<typename E::T*>(out));
  });
  DS_LAUNCHED("sumLastDim");
}

}  // namespace cuda
}  // namespace ds
