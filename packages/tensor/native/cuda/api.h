// The interface between the cuda addon's N-API binding (binding.cc, compiled by g++) and its CUDA
// half (*.cu, compiled by nvcc). Nothing here needs a CUDA header: device memory crosses as plain
// pointers, the device as an opaque `Device`. Every function throws `ds::cuda::Error` (or one of
// its kinds) on failure; the binding turns that into a JS error. Dtype codes match the cpu addon's:
// 0 f32, 1 bf16, 2 f16, 3 i32, 4 u8.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ds {
namespace cuda {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, U8 = 4 };
enum class UnaryOp : int { Neg, Exp, Log, Sqrt, Rsqrt, Tanh, Relu, Abs, Square, Sigmoid, Sign };
enum class BinaryOp : int { Add, Sub, Mul, Div, Max, Min };
enum class StreamKind : int { Compute = 0, Comm = 1 };

inline int dtypeBytes(DType d) { return d == DType::F32 || d == DType::I32 ? 4 : d == DType::U8 ? 1 : 2; }

// What failed, sorted so that the binding can pick the JS error: Cuda (a CUDA or cuBLASLt call),
// OutOfMemory (the device is full even after the cache was emptied), BadValue (data a kernel was
// given is out of range: an id or a target), Unsupported (a shape this backend does not run).
class Error : public std::runtime_error {
 public:
  enum Kind { Cuda, OutOfMemory, BadValue, Unsupported };
  Error(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// The outcome of the test-load: never throws. `code` is "ok", "no-driver", "no-gpu" or
// "no-cublaslt"; `reason` is one sentence naming what is missing and how to fix it.
struct Probe {
  std::string code;
  std::string reason;
  int deviceCount = 0;
  std::string gpu;            // name of device 0
  int ccMajor = 0, ccMinor = 0;
  uint64_t totalMemory = 0;
  int driverVersion = 0;      // e.g. 13000
  int runtimeVersion = 0;     // the statically linked cudart
  std::string cublasLtPath;   // the library dlopen found
  uint64_t cublasLtVersion = 0;
};
Probe probe(const std::vector<std::string>& extraLibDirs);

struct MemoryStats {
  uint64_t inUse = 0;       // bytes handed out (rounded to the size class)
  uint64_t cached = 0;      // bytes kept in the free lists
  uint64_t peakInUse = 0;
  uint64_t allocations = 0; // live allocations
  uint64_t deviceMallocs = 0;  // cudaMalloc calls so far (cache misses)
};

struct Device;
// Opens device `index` (idempotent per index): its streams, caching allocator, pinned staging and
// cuBLASLt handle. The caller keeps the pointer for the life of the environment.
Device* openDevice(int index, const std::vector<std::string>& extraLibDirs);
void closeDevice(Device* d);
// Makes the device current on the calling thread (cudaSetDevice when it is not).
void activate(Device& d);
int deviceIndex(const Device& d);
std::string describe(Device& d);

// ---- memory ----
void* alloc(Device& d, size_t bytes, bool zero);
void release(Device& d, void* p);
// True when [p, p + bytes) lies inside one live allocation of this device.
bool owns(Device& d, const void* p, size_t bytes);
MemoryStats memoryStats(Device& d);
void emptyCache(Device& d);

// ---- copies and streams ----
void copyToHost(Device& d, const void* src, void* dst, size_t bytes);
void copyFromHost(Device& d, const void* src, void* dst, size_t bytes);
void copyDevice(Device& d, const void* src, void* dst, size_t bytes);
void synchronize(Device& d);
void* streamHandle(Device& d, StreamKind s);
void* eventCreate(Device& d);
void eventRecord(Device& d, void* event, StreamKind s);
void streamWaitEvent(Device& d, StreamKind s, void* event);
void eventSynchronize(Device& d, void* event);
bool eventQuery(Device& d, void* event);
void eventDestroy(Device& d, void* event);

// ---- kernels (all queued on the compute stream; see src/kernels/table.ts for the semantics) ----
void cast(Device& d, DType st, const void* src, DType dt, void* dst, int64_t n);
void fill(Device& d, DType dt, void* x, int64_t n, double value);
constexpr int kMaxGatherRank = 8;
void gather(Device& d, int elemBytes, const void* src, int64_t offset, int rank, const int64_t* shape,
            const int64_t* strides, void* dst);
void unary(Device& d, UnaryOp op, DType dt, const void* x, void* out, int64_t n);
void binary(Device& d, BinaryOp op, DType dt, const void* a, const void* b, void* out, int64_t n, int64_t bn);
void scale(Device& d, DType dt, const void* x, void* out, int64_t n, float alpha, float beta);
void axpy(Device& d, DType xd, const void* x, DType yd, void* y, int64_t n, float alpha);

double sum(Device& d, DType dt, const void* x, int64_t n);
double sumSquares(Device& d, DType dt, const void* x, int64_t n);
bool hasInfNan(Device& d, DType dt, const void* x, int64_t n);
void sumRows(Device& d, DType dt, const void* x, int64_t rows, int64_t cols, float* out, bool accumulate);
void sumLastDim(Device& d, DType dt, const void* x, int64_t rows, int64_t cols, void* out);

struct GemmParams {
  DType dtype, outDtype;  // F32 or BF16 each
  bool transA, transB;
  int64_t batch, m, n, k;
  float alpha, beta;
  const void* a;
  int64_t strideA;
  const void* b;
  int64_t strideB;
  void* c;
  int64_t strideC;
};
void gemm(Device& d, const GemmParams& p);

void layerNormForward(Device& d, DType dt, const void* x, const void* w, const void* b, void* y, float* mean,
                      float* rstd, int64_t rows, int64_t cols, float eps);
void layerNormBackward(Device& d, DType dt, const void* dy, const void* x, const void* w, const float* mean,
                       const float* rstd, void* dx, float* dw, float* db, int64_t rows, int64_t cols);
void layerNormResidualForward(Device& d, DType dt, const void* x, const void* r, const void* w, const void* b,
                              void* sum, void* y, float* mean, float* rstd, int64_t rows, int64_t cols, float eps);
void geluForward(Device& d, DType dt, const void* x, void* y, int64_t n);
void geluBackward(Device& d, DType dt, const void* dy, const void* x, void* dx, int64_t n);
void softmaxForward(Device& d, DType dt, const void* x, void* y, int64_t rows, int64_t cols);
void softmaxBackward(Device& d, DType dt, const void* dy, const void* y, void* dx, int64_t rows, int64_t cols);
// Both check every id first (one small kernel and a wait) and throw Error::BadValue naming the
// first id outside [0, vocab) before anything is written, as the cpu kernels do.
void embeddingForward(Device& d, DType dt, const int32_t* ids, const void* table, void* out, int64_t n, int64_t vocab,
                      int64_t dim);
void embeddingBackward(Device& d, DType dt, const void* dout, const int32_t* ids, float* dtable, int64_t n,
                       int64_t vocab, int64_t dim);
// Targets must be -1 (ignored) or in [0, vocab); checked the same way.
void crossEntropyForward(Device& d, DType dt, const void* logits, const int32_t* targets, float* losses, float* lse,
                         int64_t rows, int64_t vocab);
void crossEntropyBackward(Device& d, DType dt, const void* logits, const int32_t* targets, const float* lse,
                          const float* dloss, void* dlogits, int64_t rows, int64_t vocab);
constexpr int64_t kMaxHeadDim = 128;
void attentionForward(Device& d, DType dt, const void* q, const void* k, const void* v, void* out, float* lse,
                      int64_t bh, int64_t t, int64_t hd, float scale);
void attentionBackward(Device& d, DType dt, const void* dout, const void* q, const void* k, const void* v,
                       const void* out, const float* lse, void* dq, void* dk, void* dv, int64_t bh, int64_t t,
                       int64_t hd, float scale);
void dropoutForward(Device& d, DType dt, const void* x, void* out, uint8_t* mask, int64_t n, double p, uint32_t seed,
                    uint32_t offset);

struct AdamWParams {
  float* param;
  const void* grad;
  DType gradDtype;
  float* expAvg;
  float* expAvgSq;
  int64_t n;
  double lr, beta1, beta2, eps, weightDecay, step;
  bool biasCorrection, decoupled;
  double gradScale;
  void* out16;  // nullptr when absent
  DType out16Dtype;
};
void adamw(Device& d, const AdamWParams& p);

}  // namespace cuda
}  // namespace ds
