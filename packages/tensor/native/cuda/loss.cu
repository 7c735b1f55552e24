// Token embedding (forward: a bit copy of table rows; backward: atomic adds into the f32 table
// gradient) and the fused softmax + cross-entropy (forward: one pass per row with an online
// log-sum-exp; backward: dloss * (softmax - onehot), ignored rows zero). Ids and targets come from
// data, so each kernel first finds the first bad one on the device and the host throws naming it
// before anything is written, as the cpu kernels do.
#include <algorithm>
#include <climits>

#include "device.cuh"

namespace ds {
namespace cuda {
namespace {

// words[0] = lowest position i with ids[i] outside [lo, hi), words[1] = its value.
__global__ void firstBadKernel(const int32_t* ids, int64_t n, int64_t lo, int64_t hi, unsigned long long* first) {
  DS_GRID_LOOP(i, n) {
    const int32_t v = ids[i];
    if (v < lo || v >= hi) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

void checkIndices(Device& d, const char* op, const char* what, const int32_t* ids, int64_t n, int64_t lo, int64_t hi) {
  if (n == 0) return;
  auto* first = static_cast<unsigned long long*>(d.scratchFor(sizeof(unsigned long long)));
  DS_CUDA(cudaMemsetAsync(first, 0xff, sizeof(unsigned long long), d.compute));
  firstBadKernel<<<std::min<unsigned>(gridFor(n), 1024), kThreads, 0, d.compute>>>(ids, n, lo, hi, first);
  DS_LAUNCHED(op);
  DS_CUDA(cudaMemcpyAsync(d.hostResult, first, sizeof(unsigned long long), cudaMemcpyDeviceToHost, d.compute));
  waitCompute(d);
  const unsigned long long at = *resultWords<unsigned long long>(d);
  if (at == ULLONG_MAX) return;
  int32_t value = 0;
  DS_CUDA(cudaMemcpy(&value, ids + at, sizeof value, cudaMemcpyDeviceToHost));
  throw Error(Error::BadValue, std::string(what) + "[" + std::to_string(at) + "] = " + std::to_string(value) + " is outside [" +
                                   (lo < 0 ? "-1 or 0" : "0") + ", " + std::to_string(hi) + ")");
}

template <class E>
__global__ void embeddingForwardKernel(const int32_t* ids, const E* table, E* out, int64_t n, int64_t dim) {
  DS_GRID_LOOP(j, n * dim) {
    const int64_t i = j / dim, c = j - i * dim;
    out[j] = table[static_cast<int64_t>(ids[i]) * dim + c];
  }
}

template <class E>
__global__ void embeddingBackwardKernel(const typename E::T* dout, const int32_t* ids, float* dtable, int64_t n, int64_t dim) {
  DS_GRID_LOOP(j, n * dim) {
    const int64_t i = j / dim, c = j - i * dim;
    atomicAdd(dtable + static_cast<int64_t>(ids[i]) * dim + c, E::load(dout, j));
  }
}

template <class E>
__global__ void crossEntropyForwardKernel(const typename E::T* logits, const int32_t* targets, float* losses, float* lse,
                                          int64_t rows, int64_t vocab) {
  __shared__ float sharedF[32];
  __shared__ double sharedD[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const typename E::T* x = logits + r * vocab;
    // Online log-sum-exp per thread: a running max and a sum rescaled whenever the max grows.
    float m = -INFINITY, s = 0.0f;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      const float v = E::load(x, i);
      if (v > m) {
        s = s * expf(m - v) + 1.0f;
        m = v;
      } else {
        s += expf(v - m);
      }
    }
    const float bm = blockMax(m, sharedF);
    const double total = blockSum(m == -INFINITY ? 0.0 : static_cast<double>(s) * exp(static_cast<double>(m) - bm), sharedD);
    if (threadIdx.x == 0) {
      const double l = static_cast<double>(bm) + log(total);
      lse[r] = static_cast<float>(l);
      const int32_t t = targets[r];
      losses[r] = t < 0 ? 0.0f : static_cast<float>(l - static_cast<double>(E::load(x, t)));
    }
  }
}

template <class E>
__global__ void crossEntropyBackwardKernel(const typename E::T* logits, const int32_t* targets, const float* lse, const float* dloss,
                                           typename E::T* dlogits, int64_t rows, int64_t vocab) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int32_t t = targets[r];
    const float scale = t < 0 ? 0.0f : dloss[r], l = lse[r];
    const int64_t off = r * vocab;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      // Ignored rows get exact zeros, whatever the logits hold.
      const float g = t < 0 ? 0.0f : scale * expf(E::load(logits, off + i) - l) - (i == t ? scale : 0.0f);
      dlogits[off + i] = E::from(g);
    }
  }
}

unsigned rowBlocks(int64_t rows) { return static_cast<unsigned>(std::min<int64_t>(rows, 65535 * 16)); }

}  // namespace

void embeddingForward(Device& d, DType dt, const int32_t* ids, const void* table, void* out, int64_t n, int64_t vocab, int64_t dim) {
  checkIndices(d, "embeddingForward", "ids", ids, n, 0, vocab);
  if (n == 0 || dim == 0) return;
  const unsigned grid = gridFor(n * dim);
  if (dt == DType::F32) embeddingForwardKernel<uint32_t><<<grid, kThreads, 0, d.compute>>>(ids, static_cast<const uint32_t*>(table), static_cast<uint32_t*>(out), n, dim);
  else embeddingForwardKernel<uint16_t><<<grid, kThreads, 0, d.compute>>>(ids, static_cast<const uint16_t*>(table), static_cast<uint16_t*>(out), n, dim);
  DS_LAUNCHED("embeddingForward");
}

void embeddingBackward(Device& d, DType dt, const void* dout, const int32_t* ids, float* dtable, int64_t n, int64_t vocab, int64_t dim) {
  checkIndices(d, "embeddingBackward", "ids", ids, n, 0, vocab);
  if (n == 0 || dim == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    embeddingBackwardKernel<E><<<gridFor(n * dim), kThreads, 0, d.compute>>>(static_cast<const typename E::T*>(dout), ids, dtable, n, dim);
  });
  DS_LAUNCHED("embeddingBackward");
}

void crossEntropyForward(Device& d, DType dt, const void* logits, const int32_t* targets, float* losses, float* lse, int64_t rows,
                         int64_t vocab) {
  checkIndices(d, "crossEntropyForward", "targets", targets, rows, -1, vocab);
  if (rows == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    crossEntropyForwardKernel<E><<<rowBlocks(rows), 512, 0, d.compute>>>(static_cast<const typename E::T*>(logits), targets, losses, lse,
                                                                         rows, vocab);
  });
  DS_LAUNCHED("crossEntropyForward");
}

void crossEntropyBackward(Device& d, DType dt, const void* logits, const int32_t* targets, const float* lse, const float* dloss,
                          void* dlogits, int64_t rows, int64_t vocab) {
  checkIndices(d, "crossEntropyBackward", "targets", targets, rows, -1, vocab);
  if (rows == 0 || vocab == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    using T = typename E::T;
    crossEntropyBackwardKernel<E><<<rowBlocks(rows), 512, 0, d.compute>>>(static_cast<const T*>(logits), targets, lse, dloss,
                                                                          static_cast<T*>(dlogits), rows, vocab);
  });
  DS_LAUNCHED("crossEntropyBackward");
}

}  // namespace cuda
}  // namespace ds
