// The slice of the CUDA runtime and of NCCL that this addon calls, declared here and resolved with
// dlopen/dlsym at run time, so the binary builds with g++ alone (no CUDA toolkit, no NCCL headers)
// and loads on machines without a GPU.
//
// NCCL declarations follow `src/nccl.h.in` of NVIDIA/nccl (master at commit 021e8045, whose config
// struct is ncclConfig_v23100). Every value used here has been stable since NCCL 2.14, the oldest
// release accepted: 2.14 brought ncclCommInitRankConfig and non-blocking communicators, which the
// watchdog relies on. ncclComm_t is an opaque pointer, ncclUniqueId 128 bytes passed by value,
// ncclResult_t / ncclDataType_t / ncclRedOp_t C enums (int-sized).
//
// CUDA runtime declarations follow cuda_runtime_api.h and driver_types.h of CUDA 13.0
// (CUDART_VERSION 13000); the calls and constants used are the same in CUDA 11.2 and 12.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ds::nccl {

// ---- NCCL ----
using ncclComm_t = void*;
using ncclResult_t = int;
constexpr ncclResult_t ncclSuccess = 0;
constexpr ncclResult_t ncclInProgress = 7;

struct ncclUniqueId {
  char internal[128];
};

// ncclDataType_t values used (nccl.h.in: ncclUint8 = 1, ncclInt32 = 2, ncclFloat16 = 6, ncclFloat32 = 7, ncclBfloat16 = 9).
constexpr int ncclUint8 = 1, ncclInt32 = 2, ncclFloat16 = 6, ncclFloat32 = 7, ncclBfloat16 = 9;
// ncclRedOp_t values used (nccl.h.in: ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4).
constexpr int ncclSum = 0, ncclMax = 2, ncclMin = 3, ncclAvg = 4;

/**
 * The communicator config as NCCL 2.14 defined it. NCCL reads `size` bytes of it over its defaults
 * and resets every field newer than `version`, so this prefix of today's ncclConfig_t is accepted
 * by every release since 2.14. Only `blocking` is set (0: calls return ncclInProgress instead of
 * blocking the thread, so that the watchdog can give up and abort).
 */
struct ncclConfigV21400 {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
};
constexpr unsigned int kNcclApiMagic = 0xcafebeef;
constexpr unsigned int kNcclVersion21400 = 21400;  // NCCL_VERSION(2, 14, 0)
constexpr int kNcclMinVersion = 21400;

// ---- CUDA runtime ----
using cudaError_t = int;
using cudaStream_t = void*;
using cudaEvent_t = void*;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorNotReady = 600;
constexpr unsigned int cudaStreamNonBlocking = 0x01;
constexpr int cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3;
constexpr int cudaMemoryTypeDevice = 2, cudaMemoryTypeManaged = 3;

/** cudaPointerAttributes (CUDA 11+ layout; CUDA 12.x/13 append `long reserved[8]`, so the tail is padding). */
struct cudaPointerAttributes {
  int type;
  int device;
  void* devicePointer;
  void* hostPointer;
  long reserved[16];
};

/** The resolved entry points and what was found. One per Node environment. */
struct Api {
  void* cudart = nullptr;
  void* nccl = nullptr;
  std::string cudartPath, ncclPath;
  int runtimeVersion = 0, driverVersion = 0, ncclVersion = 0, deviceCount = 0;

  cudaError_t (*cudaGetDeviceCount)(int*) = nullptr;
  cudaError_t (*cudaSetDevice)(int) = nullptr;
  cudaError_t (*cudaDriverGetVersion)(int*) = nullptr;
  cudaError_t (*cudaRuntimeGetVersion)(int*) = nullptr;
  const char* (*cudaGetErrorString)(cudaError_t) = nullptr;
  cudaError_t (*cudaGetLastError)() = nullptr;
  cudaError_t (*cudaStreamCreateWithFlags)(cudaStream_t*, unsigned int) = nullptr;
  cudaError_t (*cudaStreamDestroy)(cudaStream_t) = nullptr;
  cudaError_t (*cudaStreamSynchronize)(cudaStream_t) = nullptr;
  cudaError_t (*cudaStreamWaitEvent)(cudaStream_t, cudaEvent_t, unsigned int) = nullptr;
  cudaError_t (*cudaEventCreate)(cudaEvent_t*) = nullptr;
  cudaError_t (*cudaEventDestroy)(cudaEvent_t) = nullptr;
  cudaError_t (*cudaEventRecord)(cudaEvent_t, cudaStream_t) = nullptr;
  cudaError_t (*cudaEventQuery)(cudaEvent_t) = nullptr;
  cudaError_t (*cudaEventElapsedTime)(float*, cudaEvent_t, cudaEvent_t) = nullptr;
  cudaError_t (*cudaPointerGetAttributes)(cudaPointerAttributes*, const void*) = nullptr;
  cudaError_t (*cudaMalloc)(void**, size_t) = nullptr;
  cudaError_t (*cudaFree)(void*) = nullptr;
  cudaError_t (*cudaMallocAsync)(void**, size_t, cudaStream_t) = nullptr;
  cudaError_t (*cudaFreeAsync)(void*, cudaStream_t) = nullptr;
  cudaError_t (*cudaMemcpy)(void*, const void*, size_t, int) = nullptr;
  cudaError_t (*cudaMemcpyAsync)(void*, const void*, size_t, int, cudaStream_t) = nullptr;

  ncclResult_t (*ncclGetVersion)(int*) = nullptr;
  ncclResult_t (*ncclGetUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*ncclCommInitRankConfig)(ncclComm_t*, int, ncclUniqueId, int, ncclConfigV21400*) = nullptr;
  ncclResult_t (*ncclCommFinalize)(ncclComm_t) = nullptr;
  ncclResult_t (*ncclCommDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*ncclCommAbort)(ncclComm_t) = nullptr;
  ncclResult_t (*ncclCommGetAsyncError)(ncclComm_t, ncclResult_t*) = nullptr;
  const char* (*ncclGetErrorString)(ncclResult_t) = nullptr;
  /** Optional (NCCL 2.13+ has it): the last error's detail, e.g. "Duplicate GPU detected". */
  const char* (*ncclGetLastError)(ncclComm_t) = nullptr;
  ncclResult_t (*ncclAllReduce)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*ncclReduceScatter)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*ncclAllGather)(const void*, void*, size_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*ncclBroadcast)(const void*, void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*ncclSend)(const void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*ncclRecv)(void*, size_t, int, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*ncclGroupStart)() = nullptr;
  ncclResult_t (*ncclGroupEnd)() = nullptr;

  /** CUDA's text for an error code ("no CUDA-capable device is detected"). */
  std::string cudaText(cudaError_t e) const;
  /** NCCL's text for a result, plus the communicator's last-error detail when there is one. */
  std::string ncclText(ncclResult_t r, ncclComm_t comm = nullptr) const;
};

/** What a probe found, piece by piece, for the TypeScript side to turn into one sentence. */
struct Probe {
  std::string cudartError, driverError, ncclError;
  bool cudartLoaded = false, ncclLoaded = false;
  bool usable() const { return cudartLoaded && ncclLoaded && driverError.empty() && ncclError.empty(); }
};

/**
 * Loads the CUDA runtime (first candidate that dlopens), asks it for the driver and the device
 * count, then loads NCCL and checks its version. Never throws; safe without any of them.
 */
Probe loadApi(Api& api, const std::vector<std::string>& cudartCandidates, const std::vector<std::string>& ncclCandidates);

}  // namespace ds::nccl
