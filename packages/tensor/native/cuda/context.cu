// The device: test-load probe, streams and events, the caching allocator, copies across the host
// boundary through pinned staging, and the scratch a reduction needs. Kernels live in the other
// .cu files; cuBLASLt in gemm.cu.
#include <cstring>
#include <string>

#include "cublaslt.h"
#include "device.cuh"

namespace ds {
namespace cuda {

void throwCuda(cudaError_t err, const char* what, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the next call does not report it again
  const std::string where = std::string(file).substr(std::string(file).find_last_of('/') + 1) + ":" + std::to_string(line);
  std::string msg = std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ") from " + what + " at " + where;
  if (err == cudaErrorMemoryAllocation) throw Error(Error::OutOfMemory, msg);
  throw Error(Error::Cuda, msg);
}

namespace {

std::string versionText(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

}  // namespace

Probe probe(const std::vector<std::string>& extraLibDirs) {
  Probe p;
  cudaRuntimeGetVersion(&p.runtimeVersion);
  if (cudaDriverGetVersion(&p.driverVersion) != cudaSuccess || p.driverVersion == 0) {
    cudaGetLastError();
    p.code = "no-driver";
    p.reason = "no NVIDIA driver was found (libcuda.so.1 did not load); install an NVIDIA driver that supports CUDA " +
               versionText(p.runtimeVersion) + " or run on a machine with an NVIDIA GPU";
    return p;
  }
  const cudaError_t err = cudaGetDeviceCount(&p.deviceCount);
  if (err == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    p.code = "no-driver";
    p.reason = "the NVIDIA driver supports CUDA " + versionText(p.driverVersion) + " but the cuda binary needs CUDA " +
               versionText(p.runtimeVersion) + "; update the NVIDIA driver";
    return p;
  }
  if (err != cudaSuccess || p.deviceCount == 0) {
    cudaGetLastError();
    p.code = "no-gpu";
    p.reason = std::string("the NVIDIA driver sees no usable GPU (") + cudaGetErrorString(err) +
               "); check nvidia-smi and CUDA_VISIBLE_DEVICES";
    p.deviceCount = 0;
    return p;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    p.gpu = prop.name;
    p.ccMajor = prop.major;
    p.ccMinor = prop.minor;
    p.totalMemory = prop.totalGlobalMem;
  }
  cudaGetLastError();
  if (p.ccMajor < 8) {
    p.code = "no-gpu";
    p.reason = "GPU 0 (" + p.gpu + ") has compute capability " + std::to_string(p.ccMajor) + "." + std::to_string(p.ccMinor) +
               " but the cuda binary runs on 8.0 (Ampere) and newer; use an A100, H100 or newer GPU";
    return p;
  }
  lt::Api api;
  std::string why;
  if (!lt::load(extraLibDirs, &api, &why)) {
    p.code = "no-cublaslt";
    p.reason = "cuBLASLt could not be loaded: " + why +
               "; install the CUDA toolkit's cuBLAS or `pip install nvidia-cublas`, or add its lib directory to LD_LIBRARY_PATH";
    return p;
  }
  p.cublasLtPath = api.path;
  p.cublasLtVersion = api.getVersion();
  p.code = "ok";
  return p;
}

// ---- caching allocator ----

size_t CachingAllocator::roundUp(size_t bytes) {
  if (bytes <= 4096) return bytes <= 512 ? 512 : (bytes + 511) & ~size_t(511);
  size_t pow = 1;
  while (pow * 2 <= bytes) pow *= 2;
  const size_t step = pow / 4;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::alloc(size_t bytes) {
  const size_t size = roundUp(bytes == 0 ? 1 : bytes);
  void* p = nullptr;
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    stats_.cached -= size;
  } else {
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {  // give the cache back to the driver and try once more
      cudaGetLastError();
      emptyCache();
      err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      size_t freeB = 0, totalB = 0;
      cudaMemGetInfo(&freeB, &totalB);
      const double gib = 1024.0 * 1024.0 * 1024.0;
      char msg[400];
      snprintf(msg, sizeof msg,
               "cuda:%d could not allocate %.3f GiB (%s): %.3f GiB in use by tensors, %.3f GiB free of %.3f GiB on the device",
               device_, size / gib, cudaGetErrorString(err), stats_.inUse / gib, freeB / gib, totalB / gib);
      throw Error(err == cudaErrorMemoryAllocation ? Error::OutOfMemory : Error::Cuda, msg);
    }
    ++stats_.deviceMallocs;
  }
  live_[reinterpret_cast<uintptr_t>(p)] = {size, bytes};
  stats_.inUse += size;
  ++stats_.allocations;
  if (stats_.inUse > stats_.peakInUse) stats_.peakInUse = stats_.inUse;
  return p;
}

void CachingAllocator::release(void* p) {
  auto it = live_.find(reinterpret_cast<uintptr_t>(p));
  if (it == live_.end()) throw Error(Error::BadValue, "free: the address is not a live allocation of this device (freed twice?)");
  const size_t size = it->second.first;
  live_.erase(it);
  // Kernels already queued on the compute stream may still read the block; a later allocation
  // reuses it only through work queued after them on the same stream, so no wait is needed.
  free_[size].push_back(p);
  stats_.inUse -= size;
  stats_.cached += size;
  --stats_.allocations;
}

bool CachingAllocator::owns(const void* p, size_t bytes) const {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = live_.upper_bound(a);
  if (it == live_.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second.second;
}

void CachingAllocator::emptyCache() {
  if (stats_.cached == 0) return;
  cudaDeviceSynchronize();
  for (auto& [size, blocks] : free_) {
    for (void* b : blocks) cudaFree(b);
    blocks.clear();
  }
  free_.clear();
  stats_.cached = 0;
  cudaGetLastError();
}

CachingAllocator::~CachingAllocator() {
  emptyCache();
  for (auto& [addr, sz] : live_) cudaFree(reinterpret_cast<void*>(addr));
}

// ---- device ----

void* Device::scratchFor(size_t bytes) {
  if (bytes <= scratchBytes) return scratch;
  if (scratch) allocator->release(scratch);
  scratchBytes = CachingAllocator::roundUp(bytes < (1u << 20) ? (1u << 20) : bytes);
  scratch = allocator->alloc(scratchBytes);
  return scratch;
}

void waitCompute(Device& d) { DS_CUDA(cudaStreamSynchronize(d.compute)); }

int deviceIndex(const Device& d) { return d.index; }

void activate(Device& d) {
  int cur = -1;
  DS_CUDA(cudaGetDevice(&cur));
  if (cur != d.index) DS_CUDA(cudaSetDevice(d.index));
}

Device* openDevice(int index, const std::vector<std::string>& extraLibDirs) {
  auto d = std::make_unique<Device>();
  d->index = index;
  d->libDirs = extraLibDirs;
  DS_CUDA(cudaSetDevice(index));
  DS_CUDA(cudaGetDeviceProperties(&d->props, index));
  DS_CUDA(cudaStreamCreateWithFlags(&d->compute, cudaStreamNonBlocking));
  DS_CUDA(cudaStreamCreateWithFlags(&d->comm, cudaStreamNonBlocking));
  for (int i = 0; i < 2; ++i) {
    DS_CUDA(cudaHostAlloc(&d->staging[i], Device::kStagingBytes, cudaHostAllocDefault));
    DS_CUDA(cudaEventCreateWithFlags(&d->stagingDone[i], cudaEventDisableTiming));
  }
  DS_CUDA(cudaHostAlloc(&d->hostResult, 256, cudaHostAllocDefault));
  d->allocator = std::make_unique<CachingAllocator>(index);
  d->cublas = createCublas(*d);
  return d.release();
}

void closeDevice(Device* d) {
  if (!d) return;
  cudaSetDevice(d->index);
  cudaDeviceSynchronize();
  destroyCublas(d->cublas);
  d->scratch = nullptr;
  d->allocator.reset();
  for (int i = 0; i < 2; ++i) {
    cudaFreeHost(d->staging[i]);
    cudaEventDestroy(d->stagingDone[i]);
  }
  cudaFreeHost(d->hostResult);
  cudaStreamDestroy(d->compute);
  cudaStreamDestroy(d->comm);
  delete d;
}

std::string describe(Device& d) {
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  char buf[512];
  snprintf(buf, sizeof buf, "cuda:%d %s (sm_%d%d, %d SMs, %.1f GiB), driver CUDA %s, cudart %s (static), %s", d.index,
           d.props.name, d.props.major, d.props.minor, d.props.multiProcessorCount,
           d.props.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), versionText(driver).c_str(), versionText(runtime).c_str(),
           describeCublas(d).c_str());
  return buf;
}

// ---- memory ----

void* alloc(Device& d, size_t bytes, bool zero) {
  void* p = d.allocator->alloc(bytes);
  if (zero && bytes > 0) DS_CUDA(cudaMemsetAsync(p, 0, bytes, d.compute));
  return p;
}
void release(Device& d, void* p) {
  if (p == d.scratch) throw Error(Error::BadValue, "free: the address is the device's own scratch buffer");
  d.allocator->release(p);
}
bool owns(Device& d, const void* p, size_t bytes) { return d.allocator->owns(p, bytes); }
MemoryStats memoryStats(Device& d) { return d.allocator->stats(); }
void emptyCache(Device& d) { d.allocator->emptyCache(); }

// ---- copies ----

void copyToHost(Device& d, const void* src, void* dst, size_t bytes) {
  // Chunk k goes device -> staging[k % 2] on the compute stream (after every queued kernel); the
  // host copies chunk k - 1 out of the other buffer meanwhile.
  const auto* s = static_cast<const unsigned char*>(src);
  auto* out = static_cast<unsigned char*>(dst);
  size_t prevOff = 0, prevLen = 0;
  int prev = -1;
  for (size_t off = 0, k = 0; off < bytes; off += Device::kStagingBytes, ++k) {
    const int i = static_cast<int>(k & 1);
    const size_t len = bytes - off < Device::kStagingBytes ? bytes - off : Device::kStagingBytes;
    DS_CUDA(cudaMemcpyAsync(d.staging[i], s + off, len, cudaMemcpyDeviceToHost, d.compute));
    DS_CUDA(cudaEventRecord(d.stagingDone[i], d.compute));
    if (prev >= 0) {
      DS_CUDA(cudaEventSynchronize(d.stagingDone[prev]));
      std::memcpy(out + prevOff, d.staging[prev], prevLen);
    }
    prev = i;
    prevOff = off;
    prevLen = len;
  }
  if (prev >= 0) {
    DS_CUDA(cudaEventSynchronize(d.stagingDone[prev]));
    std::memcpy(out + prevOff, d.staging[prev], prevLen);
  }
}

void copyFromHost(Device& d, const void* src, void* dst, size_t bytes) {
  // The host bytes are copied into pinned staging before this returns, so the caller may reuse
  // its array at once; the device copy runs in stream order before any later kernel.
  const auto* s = static_cast<const unsigned char*>(src);
  auto* out = static_cast<unsigned char*>(dst);
  for (size_t off = 0, k = 0; off < bytes; off += Device::kStagingBytes, ++k) {
    const int i = static_cast<int>(k & 1);
    const size_t len = bytes - off < Device::kStagingBytes ? bytes - off : Device::kStagingBytes;
    DS_CUDA(cudaEventSynchronize(d.stagingDone[i]));  // the last copy out of this buffer is done
    std::memcpy(d.staging[i], s + off, len);
    DS_CUDA(cudaMemcpyAsync(out + off, d.staging[i], len, cudaMemcpyHostToDevice, d.compute));
    DS_CUDA(cudaEventRecord(d.stagingDone[i], d.compute));
  }
}

void copyDevice(Device& d, const void* src, void* dst, size_t bytes) {
  if (bytes == 0 || src == dst) return;
  DS_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, d.compute));
}

void synchronize(Device& d) {
  DS_CUDA(cudaStreamSynchronize(d.compute));
  DS_CUDA(cudaStreamSynchronize(d.comm));
}

// ---- streams and events (for @ds/comm-nccl: overlap communication with compute) ----

void* streamHandle(Device& d, StreamKind s) { return s == StreamKind::Compute ? d.compute : d.comm; }
void* eventCreate(Device&) {
  cudaEvent_t e;
  DS_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}
void eventRecord(Device& d, void* e, StreamKind s) {
  DS_CUDA(cudaEventRecord(static_cast<cudaEvent_t>(e), static_cast<cudaStream_t>(streamHandle(d, s))));
}
void streamWaitEvent(Device& d, StreamKind s, void* e) {
  DS_CUDA(cudaStreamWaitEvent(static_cast<cudaStream_t>(streamHandle(d, s)), static_cast<cudaEvent_t>(e), 0));
}
void eventSynchronize(Device&, void* e) { DS_CUDA(cudaEventSynchronize(static_cast<cudaEvent_t>(e))); }
bool eventQuery(Device&, void* e) {
  const cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(e));
  if (err == cudaErrorNotReady) return false;
  DS_CUDA(err);
  return true;
}
void eventDestroy(Device&, void* e) { DS_CUDA(cudaEventDestroy(static_cast<cudaEvent_t>(e))); }

}  // namespace cuda
}  // namespace ds
