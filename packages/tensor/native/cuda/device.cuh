// What every .cu file of the cuda addon shares: the Device (streams, caching allocator, pinned
// staging, scratch, cuBLASLt), the CUDA error check, launch geometry, and the element load/store
// helpers that convert bf16/f16 bit for bit as ds/dtype_bits.h does on the cpu (round to nearest
// even, NaN kept quiet with the cpu's payload), so cpu and cuda outputs can be compared exactly.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api.h"

namespace ds {
namespace cuda {

[[noreturn]] void throwCuda(cudaError_t err, const char* what, const char* file, int line);
#define DS_CUDA(call)                                                     \
  do {                                                                    \
    cudaError_t ds_err_ = (call);                                         \
    if (ds_err_ != cudaSuccess) ::ds::cuda::throwCuda(ds_err_, #call, __FILE__, __LINE__); \
  } while (0)
// After a <<<...>>> launch: a bad configuration shows up here, a fault at the next sync.
#define DS_LAUNCHED(name) DS_CUDA(cudaGetLastError())

class CachingAllocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}
  ~CachingAllocator();
  void* alloc(size_t bytes);
  void release(void* p);
  bool owns(const void* p, size_t bytes) const;
  MemoryStats stats() const { return stats_; }
  void emptyCache();
  // Size classes: 512-byte steps up to 4 KiB, then four classes per power of two (at most 25%
  // rounding), so a freed block serves any later request of the same class.
  static size_t roundUp(size_t bytes);

 private:
  int device_;
  std::map<size_t, std::vector<void*>> free_;   // size class -> cached blocks
  std::map<uintptr_t, std::pair<size_t, size_t>> live_;  // address -> (class size, requested bytes)
  MemoryStats stats_;
};

struct Device;
struct Cublas;  // gemm.cu: the dlopened cuBLASLt, its handle, workspace and plan cache
Cublas* createCublas(Device& d);
void destroyCublas(Cublas* c);
std::string describeCublas(Device& d);

struct Device {
  int index = 0;
  cudaStream_t compute = nullptr;
  cudaStream_t comm = nullptr;
  std::unique_ptr<CachingAllocator> allocator;
  // Pinned host staging for copies across the host boundary: two buffers used in turn, each with
  // an event saying when the device has finished reading from (or writing into) it.
  static constexpr size_t kStagingBytes = 8u << 20;
  void* staging[2] = {nullptr, nullptr};
  cudaEvent_t stagingDone[2] = {nullptr, nullptr};
  // Pinned words for results a kernel hands back (sums, flags, the first bad index).
  void* hostResult = nullptr;
  // Device scratch for reductions' partials; grows, never shrinks (stream-ordered reuse is safe
  // because every kernel runs on `compute`).
  void* scratch = nullptr;
  size_t scratchBytes = 0;
  Cublas* cublas = nullptr;
  cudaDeviceProp props{};
  std::vector<std::string> libDirs;
  void* scratchFor(size_t bytes);
};

// Waits for the compute stream and returns the pinned result words.
template <class T>
T* resultWords(Device& d) { return static_cast<T*>(d.hostResult); }
void waitCompute(Device& d);

// Row stripes per 32-column block for two-pass column sums (reduce.cu).
int64_t stripesFor(Device& d, int64_t rows, int64_t colBlocks);

// ---- launch geometry ----
constexpr int kThreads = 256;
inline unsigned gridFor(int64_t n, int64_t perThread = 1, int threads = kThreads) {
  const int64_t blocks = (n + threads * perThread - 1) / (threads * perThread);
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks > 65535 * 16 ? 65535 * 16 : blocks);
}
// Grid-stride loop over [0, n).
#define DS_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// ---- elements ----
__host__ __device__ inline uint16_t f32ToBf16Bits(float x) {
#ifdef __CUDA_ARCH__
  const uint32_t b = __float_as_uint(x);
#else
  uint32_t b;
  memcpy(&b, &x, 4);
#endif
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(((b >> 16) | 0x40u) & 0xffffu);
  return static_cast<uint16_t>(((b + 0x7fffu + ((b >> 16) & 1u)) >> 16) & 0xffffu);
}
__device__ inline float bf16BitsToF32(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }
// The hardware conversions round to nearest even with subnormals, as the cpu's do; only NaN is
// spelled out, to keep the sign and payload rule of dtype_bits.h.
__device__ inline uint16_t f32ToF16Bits(float x) {
  if (x != x) return static_cast<uint16_t>(((__float_as_uint(x) >> 16) & 0x8000u) | 0x7e00u);
  return __half_as_ushort(__float2half_rn(x));
}
__device__ inline float f16BitsToF32(uint16_t h) {
  if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) {
    return __uint_as_float((static_cast<uint32_t>(h & 0x8000u) << 16) | 0x7f800000u | (static_cast<uint32_t>(h & 0x3ffu) << 13));
  }
  return __half2float(__ushort_as_half(h));
}

// Element types as template tags: storage type, load to f32, store from f32.
struct F32T {
  using T = float;
  static constexpr DType code = DType::F32;
  __device__ static float load(const T* p, int64_t i) { return p[i]; }
  __device__ static T from(float v) { return v; }
  __device__ static float to(T v) { return v; }
};
struct BF16T {
  using T = uint16_t;
  static constexpr DType code = DType::BF16;
  __device__ static float load(const T* p, int64_t i) { return bf16BitsToF32(p[i]); }
  __device__ static T from(float v) { return f32ToBf16Bits(v); }
  __device__ static float to(T v) { return bf16BitsToF32(v); }
};
struct F16T {
  using T = uint16_t;
  static constexpr DType code = DType::F16;
  __device__ static float load(const T* p, int64_t i) { return f16BitsToF32(p[i]); }
  __device__ static T from(float v) { return f32ToF16Bits(v); }
  __device__ static float to(T v) { return f16BitsToF32(v); }
};

// Calls f(Tag{}) with the element tag of a float dtype.
template <class F>
void withFloat(DType dt, F&& f) {
  switch (dt) {
    case DType::F32: f(F32T{}); break;
    case DType::BF16: f(BF16T{}); break;
    case DType::F16: f(F16T{}); break;
    default: throw Error(Error::BadValue, "expected a float dtype (f32, bf16, f16)");
  }
}

// ---- block reductions (blockDim.x a multiple of 32, at most 1024) ----
template <class T>
__device__ inline T warpSum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block, returned to every thread. `shared` holds 32 values of T.
template <class T>
__device__ inline T blockSum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warpSum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T r = lane < warps ? shared[lane] : T(0);
  return warpSum(r);
}
__device__ inline float blockMax(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warpMax(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = lane < warps ? shared[lane] : -INFINITY;
  return warpMax(r);
}

}  // namespace cuda
}  // namespace ds
