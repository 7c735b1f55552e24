// dlopen of the CUDA runtime and NCCL, and the symbol table of api.h. RTLD_LOCAL for both: nothing
// else needs their symbols in the global scope (NCCL's network plugins resolve nothing from it).
#include "ds/nccl/api.h"

#include <dlfcn.h>

namespace ds::nccl {

namespace {

template <typename F>
void sym(void* lib, F& slot, const char* name, std::string& missing) {
  void* p = dlsym(lib, name);
  if (!p && missing.empty()) missing = name;
  slot = reinterpret_cast<F>(p);
}

/** The first candidate that dlopens; `error` gets the first candidate's dlerror when none does. */
void* openFirst(const std::vector<std::string>& candidates, std::string& path, std::string& error) {
  for (const std::string& c : candidates) {
    void* lib = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib) {
      path = c;
      return lib;
    }
    const char* e = dlerror();
    if (error.empty()) error = e ? e : (c + ": not found");
  }
  if (error.empty()) error = "no candidate file to load";
  return nullptr;
}

std::string versionText(int v) {
  // NCCL_VERSION(X, Y, Z) is X*10000 + Y*100 + Z since 2.9 (X*1000 + Y*100 + Z before).
  const int major = v >= 10000 ? v / 10000 : v / 1000;
  const int minor = v >= 10000 ? (v / 100) % 100 : (v / 100) % 10;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(v % 100);
}

bool loadCudart(Api& api, const std::vector<std::string>& candidates, Probe& p) {
  if (api.cudart) return true;
  std::string path, error;
  void* lib = openFirst(candidates, path, error);
  if (!lib) {
    p.cudartError = error;
    return false;
  }
  std::string missing;
  sym(lib, api.cudaGetDeviceCount, "cudaGetDeviceCount", missing);
  sym(lib, api.cudaSetDevice, "cudaSetDevice", missing);
  sym(lib, api.cudaDriverGetVersion, "cudaDriverGetVersion", missing);
  sym(lib, api.cudaRuntimeGetVersion, "cudaRuntimeGetVersion", missing);
  sym(lib, api.cudaGetErrorString, "cudaGetErrorString", missing);
  sym(lib, api.cudaGetLastError, "cudaGetLastError", missing);
  sym(lib, api.cudaStreamCreateWithFlags, "cudaStreamCreateWithFlags", missing);
  sym(lib, api.cudaStreamDestroy, "cudaStreamDestroy", missing);
  sym(lib, api.cudaStreamSynchronize, "cudaStreamSynchronize", missing);
  sym(lib, api.cudaStreamWaitEvent, "cudaStreamWaitEvent", missing);
  sym(lib, api.cudaEventCreate, "cudaEventCreate", missing);
  sym(lib, api.cudaEventDestroy, "cudaEventDestroy", missing);
  sym(lib, api.cudaEventRecord, "cudaEventRecord", missing);
  sym(lib, api.cudaEventQuery, "cudaEventQuery", missing);
  sym(lib, api.cudaEventElapsedTime, "cudaEventElapsedTime", missing);
  sym(lib, api.cudaPointerGetAttributes, "cudaPointerGetAttributes", missing);
  sym(lib, api.cudaMalloc, "cudaMalloc", missing);
  sym(lib, api.cudaFree, "cudaFree", missing);
  sym(lib, api.cudaMallocAsync, "cudaMallocAsync", missing);
  sym(lib, api.cudaFreeAsync, "cudaFreeAsync", missing);
  sym(lib, api.cudaMemcpy, "cudaMemcpy", missing);
  sym(lib, api.cudaMemcpyAsync, "cudaMemcpyAsync", missing);
  if (!missing.empty()) {
    p.cudartError = path + " lacks " + missing + " (a CUDA runtime of 11.2 or newer is needed)";
    dlclose(lib);
    return false;
  }
  api.cudart = lib;
  api.cudartPath = path;
  api.cudaRuntimeGetVersion(&api.runtimeVersion);
  return true;
}

bool loadNccl(Api& api, const std::vector<std::string>& candidates, Probe& p) {
  if (api.nccl) return true;
  std::string path, error;
  void* lib = openFirst(candidates, path, error);
  if (!lib) {
    p.ncclError = error;
    return false;
  }
  std::string missing;
  sym(lib, api.ncclGetVersion, "ncclGetVersion", missing);
  sym(lib, api.ncclGetUniqueId, "ncclGetUniqueId", missing);
  sym(lib, api.ncclCommInitRankConfig, "ncclCommInitRankConfig", missing);
  sym(lib, api.ncclCommFinalize, "ncclCommFinalize", missing);
  sym(lib, api.ncclCommDestroy, "ncclCommDestroy", missing);
  sym(lib, api.ncclCommAbort, "ncclCommAbort", missing);
  sym(lib, api.ncclCommGetAsyncError, "ncclCommGetAsyncError", missing);
  sym(lib, api.ncclGetErrorString, "ncclGetErrorString", missing);
  sym(lib, api.ncclAllReduce, "ncclAllReduce", missing);
  sym(lib, api.ncclReduceScatter, "ncclReduceScatter", missing);
  sym(lib, api.ncclAllGather, "ncclAllGather", missing);
  sym(lib, api.ncclBroadcast, "ncclBroadcast", missing);
  sym(lib, api.ncclSend, "ncclSend", missing);
  sym(lib, api.ncclRecv, "ncclRecv", missing);
  sym(lib, api.ncclGroupStart, "ncclGroupStart", missing);
  sym(lib, api.ncclGroupEnd, "ncclGroupEnd", missing);
  int version = 0;
  if (api.ncclGetVersion) api.ncclGetVersion(&version);
  if (!missing.empty() || version < kNcclMinVersion) {
    p.ncclError = path + " is NCCL " + versionText(version) + (missing.empty() ? "" : " (it lacks " + missing + ")") +
                  ", but @ds/comm-nccl needs NCCL 2.14 or newer";
    dlclose(lib);
    return false;
  }
  std::string optional;
  sym(lib, api.ncclGetLastError, "ncclGetLastError", optional);
  api.nccl = lib;
  api.ncclPath = path;
  api.ncclVersion = version;
  return true;
}

}  // namespace

std::string Api::cudaText(cudaError_t e) const {
  const char* s = cudaGetErrorString ? cudaGetErrorString(e) : nullptr;
  return (s ? std::string(s) : "CUDA error") + " (cudaError " + std::to_string(e) + ")";
}

std::string Api::ncclText(ncclResult_t r, ncclComm_t comm) const {
  const char* s = ncclGetErrorString ? ncclGetErrorString(r) : nullptr;
  std::string text = (s ? std::string(s) : "NCCL error") + " (ncclResult " + std::to_string(r) + ")";
  const char* last = ncclGetLastError ? ncclGetLastError(comm) : nullptr;
  if (last && *last) text += ": " + std::string(last);
  return text;
}

Probe loadApi(Api& api, const std::vector<std::string>& cudartCandidates, const std::vector<std::string>& ncclCandidates) {
  Probe p;
  p.cudartLoaded = loadCudart(api, cudartCandidates, p);
  if (p.cudartLoaded) {
    api.cudaDriverGetVersion(&api.driverVersion);
    int count = 0;
    const cudaError_t e = api.cudaGetDeviceCount(&count);
    // The runtime keeps this error sticky for the thread; clear it so that later calls do not see it.
    if (e != cudaSuccess) api.cudaGetLastError();
    api.deviceCount = e == cudaSuccess ? count : 0;
    if (e != cudaSuccess) p.driverError = api.cudaText(e);
    else if (count == 0) p.driverError = "the CUDA runtime sees no GPU";
  }
  p.ncclLoaded = loadNccl(api, ncclCandidates, p);
  return p;
}

}  // namespace ds::nccl
