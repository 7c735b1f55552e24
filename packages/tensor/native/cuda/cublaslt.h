// The part of the cuBLASLt API the addon uses, declared here because the library is dlopened at run
// time and its headers are not needed (nor present) where the addon is built. Types, enum values and
// function signatures are those of NVIDIA's public headers `cublasLt.h` and `cublas_api.h` (CUDA
// 12/13) and `library_types.h` (cudaDataType_t); only the members used here are listed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ds {
namespace cuda {
namespace lt {

using Status = int;  // cublasStatus_t
constexpr Status kSuccess = 0;
constexpr Status kNotSupported = 15;

// cudaDataType_t (library_types.h)
constexpr int kR32F = 0;
constexpr int kR16BF = 14;
// cublasComputeType_t (cublas_api.h): f32 accumulation, no TF32 shortcut.
constexpr int kCompute32F = 68;
// cublasOperation_t
constexpr int kOpN = 0;
constexpr int kOpT = 1;
// cublasLtMatmulDescAttributes_t
constexpr int kDescTransA = 3;
constexpr int kDescTransB = 4;
// cublasLtMatrixLayoutAttribute_t
constexpr int kLayoutBatchCount = 5;
constexpr int kLayoutStridedBatchOffset = 6;
// cublasLtMatmulPreferenceAttributes_t
constexpr int kPrefMaxWorkspaceBytes = 1;
constexpr int kPrefMinAlignmentA = 5;
constexpr int kPrefMinAlignmentB = 6;
constexpr int kPrefMinAlignmentC = 7;
constexpr int kPrefMinAlignmentD = 8;

using Handle = void*;      // cublasLtHandle_t
using MatmulDesc = void*;  // cublasLtMatmulDesc_t
using Layout = void*;      // cublasLtMatrixLayout_t
using Preference = void*;  // cublasLtMatmulPreference_t
struct Algo {              // cublasLtMatmulAlgo_t
  uint64_t data[8];
};
struct HeuristicResult {   // cublasLtMatmulHeuristicResult_t
  Algo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

// The entry points, looked up with dlsym.
struct Api {
  void* lib = nullptr;
  Status (*create)(Handle*) = nullptr;
  Status (*destroy)(Handle) = nullptr;
  size_t (*getVersion)() = nullptr;
  const char* (*statusString)(Status) = nullptr;
  Status (*descCreate)(MatmulDesc*, int computeType, int scaleType) = nullptr;
  Status (*descDestroy)(MatmulDesc) = nullptr;
  Status (*descSetAttribute)(MatmulDesc, int attr, const void* buf, size_t size) = nullptr;
  Status (*layoutCreate)(Layout*, int type, uint64_t rows, uint64_t cols, int64_t ld) = nullptr;
  Status (*layoutDestroy)(Layout) = nullptr;
  Status (*layoutSetAttribute)(Layout, int attr, const void* buf, size_t size) = nullptr;
  Status (*prefCreate)(Preference*) = nullptr;
  Status (*prefDestroy)(Preference) = nullptr;
  Status (*prefSetAttribute)(Preference, int attr, const void* buf, size_t size) = nullptr;
  Status (*heuristic)(Handle, MatmulDesc, Layout a, Layout b, Layout c, Layout d, Preference, int requested,
                      HeuristicResult* results, int* returned) = nullptr;
  Status (*matmul)(Handle, MatmulDesc, const void* alpha, const void* a, Layout, const void* b, Layout,
                   const void* beta, const void* c, Layout, void* d, Layout, const Algo*, void* workspace,
                   size_t workspaceBytes, void* stream) = nullptr;
  std::string path;
};

// Finds and loads libcublasLt (.so.13, then .so.12, then .so): first through the dynamic loader's
// own search (LD_LIBRARY_PATH, rpath, ld.so.cache), then in `extraDirs`, /usr/local/cuda*/lib64
// and Python's nvidia-* wheels (site-packages/nvidia/{cublas,cu13,cu12}/lib). Returns false with
// `why` set (every place tried) when none loads; never throws.
bool load(const std::vector<std::string>& extraDirs, Api* api, std::string* why);

}  // namespace lt
}  // namespace cuda
}  // namespace ds
