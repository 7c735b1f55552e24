// Kernel entry points: the native half of src/kernels/table.ts (see there for exact semantics).
// Each takes a Ctx (ISA + thread pool). Float operands are `void*` of the kernel's DType, computed in
// f32. The binding has checked every pointer's length against the sizes before any call here;
// kernels that index with data (ids, targets) check those values and report the first bad index.
#pragma once
#include <cstdint>

#include "ds/pool.h"
#include "ds/simd.h"

namespace ds {

enum class UnaryOp : int { Neg, Exp, Log, Sqrt, Rsqrt, Tanh, Relu, Abs, Square, Sigmoid, Sign };
enum class BinaryOp : int { Add, Sub, Mul, Div, Max, Min };

// ---- data movement (cast.cc) ----
// Row converters used by every kernel that stores bf16/f16: src/dst float dtypes only.
void toF32(Isa isa, DType src, const void* x, float* y, int64_t n);
void fromF32(Isa isa, DType dst, const float* x, void* y, int64_t n);
void castKernel(const Ctx& c, DType srcType, const void* src, DType dstType, void* dst, int64_t n);
void copyKernel(const Ctx& c, const void* src, void* dst, int64_t bytes);
void fillKernel(const Ctx& c, DType dtype, void* x, int64_t n, double value);
// dst[j] = src[offset + sum_d idx_d * strides[d]]; elemBytes is 1, 2 or 4.
void gatherKernel(const Ctx& c, int elemBytes, const void* src, int64_t offset, int rank, const int64_t* shape,
                  const int64_t* strides, void* dst);

// ---- elementwise (elementwise.cc) ----
void unaryKernel(const Ctx& c, UnaryOp op, DType dtype, const void* x, void* out, int64_t n);
void binaryKernel(const Ctx& c, BinaryOp op, DType dtype, const void* a, const void* b, void* out, int64_t n, int64_t bn);
void scaleKernel(const Ctx& c, DType dtype, const void* x, void* out, int64_t n, float alpha, float beta);
void axpyKernel(const Ctx& c, DType xType, const void* x, DType yType, void* y, int64_t n, float alpha);

// ---- reductions (reduce.cc) ----
double sumKernel(const Ctx& c, DType dtype, const void* x, int64_t n);
double sumSquaresKernel(const Ctx& c, DType dtype, const void* x, int64_t n);
bool hasInfNanKernel(const Ctx& c, DType dtype, const void* x, int64_t n);
void sumRowsKernel(const Ctx& c, DType dtype, const void* x, int64_t rows, int64_t cols, float* out, bool accumulate);
void sumLastDimKernel(const Ctx& c, DType dtype, const void* x, int64_t rows, int64_t cols, void* out);

// ---- gemm (gemm.cc) ----
struct GemmParams {
  DType dtype;     // A and B: F32 or BF16
  DType outDtype;  // C: F32 or BF16
  bool transA, transB;
  int64_t batch, m, n, k;
  float alpha, beta;
  const void* a;
  int64_t strideA;
  const void* b;
  int64_t strideB;
  void* c;
  int64_t strideC;
  // Optional: n elements of outDtype that every row of every C starts from, in place of beta * C
  // (beta must be 0): C = alpha * op(A) op(B) + bias, as beta = 1 onto C filled with the bias.
  const void* bias = nullptr;
};
void gemmKernel(const Ctx& c, const GemmParams& p);

// ---- nn ----
void layerNormForward(const Ctx& c, DType dtype, const void* x, const void* w, const void* b, void* y, float* mean,
                      float* rstd, int64_t rows, int64_t cols, float eps);
void layerNormBackward(const Ctx& c, DType dtype, const void* dy, const void* x, const void* w, const float* mean,
                       const float* rstd, void* dx, float* dw, float* db, int64_t rows, int64_t cols);
void layerNormResidualForward(const Ctx& c, DType dtype, const void* x, const void* r, const void* w, const void* b,
                              void* sum, void* y, float* mean, float* rstd, int64_t rows, int64_t cols, float eps);
void geluForward(const Ctx& c, DType dtype, const void* x, void* y, int64_t n);
void geluBackward(const Ctx& c, DType dtype, const void* dy, const void* x, void* dx, int64_t n);
void softmaxForward(const Ctx& c, DType dtype, const void* x, void* y, int64_t rows, int64_t cols);
void softmaxBackward(const Ctx& c, DType dtype, const void* dy, const void* y, void* dx, int64_t rows, int64_t cols);
// Return the position of the first id outside [0, vocab) (nothing written), or -1.
int64_t embeddingForward(const Ctx& c, DType dtype, const int32_t* ids, const void* table, void* out, int64_t n,
                         int64_t vocab, int64_t dim);
int64_t embeddingBackward(const Ctx& c, DType dtype, const void* dout, const int32_t* ids, float* dtable, int64_t n,
                          int64_t vocab, int64_t dim);
// Return the first row whose target is neither -1 nor in [0, vocab) (nothing written), or -1.
int64_t crossEntropyForward(const Ctx& c, DType dtype, const void* logits, const int32_t* targets, float* losses,
                            float* lse, int64_t rows, int64_t vocab);
int64_t crossEntropyBackward(const Ctx& c, DType dtype, const void* logits, const int32_t* targets, const float* lse,
                             const float* dloss, void* dlogits, int64_t rows, int64_t vocab);
// crossEntropyForward that also writes dlogits for dloss = scale on every counted row.
int64_t crossEntropyForwardGrad(const Ctx& c, DType dtype, const void* logits, const int32_t* targets, float* losses,
                                float* lse, void* dlogits, float scale, int64_t rows, int64_t vocab);
void attentionForward(const Ctx& c, DType dtype, const void* q, const void* k, const void* v, void* out, float* lse,
                      int64_t bh, int64_t t, int64_t d, float scale);
// Where the rows of the bh heads lie: row r of head h starts at element
// (h / heads) * sB + (h % heads) * sH + r * sT and holds d contiguous elements. Contiguous
// [bh, t, d] is {1, t * d, 0, d}; GPT's packed qkv [B, T, 3, H, D] is {H, 3 T C, D, 3 C} from the q, k
// or v column (C = H D), its output [B, T, H, D] {H, T C, D, C}.
struct AttnLayout {
  int64_t heads, sB, sH, sT;
};
// The same with q, k, v, dq, dk, dv in inLayout and out, dout in outLayout (lse stays [bh, t]).
void attentionForward(const Ctx& c, DType dtype, const void* q, const void* k, const void* v, void* out, float* lse,
                      int64_t bh, int64_t t, int64_t d, float scale, const AttnLayout& inLayout, const AttnLayout& outLayout);
void attentionBackward(const Ctx& c, DType dtype, const void* dout, const void* q, const void* k, const void* v,
                       const void* out, const float* lse, void* dq, void* dk, void* dv, int64_t bh, int64_t t,
                       int64_t d, float scale);
void attentionBackward(const Ctx& c, DType dtype, const void* dout, const void* q, const void* k, const void* v,
                       const void* out, const float* lse, void* dq, void* dk, void* dv, int64_t bh, int64_t t,
                       int64_t d, float scale, const AttnLayout& inLayout, const AttnLayout& outLayout);
void dropoutForward(const Ctx& c, DType dtype, const void* x, void* out, uint8_t* mask, int64_t n, double p,
                    uint32_t seed, uint32_t offset);

// ---- optimizer (adamw.cc) ----
struct AdamWParams {
  float* param;
  const void* grad;
  DType gradDtype;
  float* expAvg;
  float* expAvgSq;
  int64_t n;
  double lr, beta1, beta2, eps, weightDecay;
  double step;
  bool biasCorrection, decoupled;
  double gradScale;
  void* out16;  // nullptr when absent
  DType out16Dtype;
};
void adamwKernel(const Ctx& c, const AdamWParams& p);

// ---- benchmarks (probe.cc) ----
// Sustained FMA / bf16-dot throughput of the calling core at the current ISA (0 where it has none),
// best of repeated ~1 ms runs over `seconds`.
struct PeakProbe {
  double f32FmaGflops;
  double bf16DotGflops;
};
PeakProbe probePeak(const Ctx& c, double seconds);
// The f32 FMA chains of probePeak on every pool thread at once, repeated over `seconds`: each call's
// rate is all threads' work over the call's wall time (the slowest thread decides), per core; the
// mean is all calls' work over their total wall time. A mean well below probePeak's single-core
// figure means the cores are not all the process's (a hypervisor or another tenant takes some),
// which the load average does not show.
struct CoresProbe {
  double meanGflopsPerCore;
  double bestGflopsPerCore;
  int threads;
  int calls;
};
CoresProbe probeCores(const Ctx& c, double seconds);
// AdamW's memory traffic without its arithmetic: p += g, m += g, v += g over n f32 elements (reads
// p, g, m, v; writes p, m, v) on the pool; the streaming ceiling the AdamW kernel is judged against.
void streamProbe(const Ctx& c, float* p, const float* g, float* m, float* v, int64_t n);

// Bytes per element of a dtype.
DS_INLINE int dtypeBytes(DType d) { return d == DType::F32 || d == DType::I32 ? 4 : d == DType::U8 ? 1 : 2; }

}  // namespace ds
