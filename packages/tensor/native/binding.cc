// The cpu addon's one binding file. Arguments are validated in TypeScript (src/backends/cpu.ts) and
// checked again here (ArgReader: element types, lengths against the sizes, integer sizes), throwing
// JS TypeError/RangeError, never aborting. Dtypes cross as codes: 0 f32, 1 bf16, 2 f16, 3 i32, 4 u8.
#include <napi.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include "ds/binding.h"
#include "ds/kernels.h"

namespace ds {
namespace {

Napi::Value dispatch(const Napi::CallbackInfo& info) {
  auto* entry = static_cast<std::pair<const char*, Handler>*>(info.Data());
  auto* s = info.Env().GetInstanceData<AddonState>();
  ArgReader args(info, entry->first);
  try {
    return entry->second(info, args, *s);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), std::string(entry->first) + ": out of memory for kernel scratch");
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string(entry->first) + ": " + e.what());
  }
}

Napi::Value undef(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }

// ---- native memory for the sim device ----
// The sim device (src/devices/sim.ts) keeps its memory outside the JavaScript heap: 64-byte aligned
// native blocks handed back as external ArrayBuffers that the sim backend keeps private, plus the
// block's address (what a DLPack handle carries). The block is freed when the buffer is collected.
Napi::Value NativeAlloc(const Napi::CallbackInfo& info, ArgReader& a, AddonState&) {
  const int64_t bytes = a.size(0);
  const size_t rounded = (static_cast<size_t>(bytes) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) a.rangeError("cannot allocate " + std::to_string(bytes) + " bytes of native memory");
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(info.Env(), p, static_cast<size_t>(bytes), [](Napi::Env, void* data) { std::free(data); });
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("buffer", buf);
  out.Set("address", Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p))));
  return out;
}

// ---- machine ----
Napi::Value CpuInfo(const Napi::CallbackInfo& info, ArgReader&, AddonState& s) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("avx2", s.features.avx2);
  o.Set("avx512f", s.features.avx512f);
  o.Set("avx512bf16", s.features.avx512bf16);
  o.Set("amx", s.features.amxTile);
  o.Set("isa", isaName(s.isa));
  o.Set("threads", s.pool->size());
  o.Set("cores", static_cast<double>(std::max(1u, std::thread::hardware_concurrency())));
  return o;
}
Napi::Value SetIsa(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  if (info.Length() < 1 || !info[0].IsString()) a.typeError(0, "must be a string");
  s.isa = selectIsa(s.features, info[0].As<Napi::String>().Utf8Value().c_str());
  return Napi::String::New(info.Env(), isaName(s.isa));
}
Napi::Value SetNumThreads(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const int64_t n = a.size(0);
  if (n < 1 || n > 1024) a.rangeError("thread count must be in [1, 1024], got " + std::to_string(n));
  if (n != s.pool->size()) {
    s.pool.reset();
    s.pool = std::make_unique<ThreadPool>(static_cast<int>(n), s.poolSpinUs);
  }
  return undef(info);
}
Napi::Value SetPoolSpin(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const int64_t us = a.size(0);
  if (us > 1000000) a.rangeError("spin must be at most 1000000 microseconds, got " + std::to_string(us));
  s.poolSpinUs = us;
  s.pool->setSpinUs(us);
  return undef(info);
}

// The duration argument of the probes: (0, 10] seconds.
double probeSeconds(ArgReader& a) {
  const double seconds = a.number(0);
  if (!(seconds > 0 && seconds <= 10)) a.rangeError("seconds must be in (0, 10]");
  return seconds;
}

Napi::Value ProbePeak(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const PeakProbe p = probePeak(s.ctx(), probeSeconds(a));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("f32FmaGflops", p.f32FmaGflops);
  o.Set("bf16DotGflops", p.bf16DotGflops);
  return o;
}

Napi::Value ProbeCores(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const CoresProbe p = probeCores(s.ctx(), probeSeconds(a));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("meanGflopsPerCore", p.meanGflopsPerCore);
  o.Set("bestGflopsPerCore", p.bestGflopsPerCore);
  o.Set("threads", p.threads);
  o.Set("calls", p.calls);
  return o;
}

Napi::Value StreamProbe(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const int64_t n = a.size(4);
  auto f32 = [&](size_t i, const char* name) { return static_cast<float*>(a.array(i, DType::F32, n, name)); };
  streamProbe(s.ctx(), f32(0, "p"), f32(1, "g"), f32(2, "m"), f32(3, "v"), n);
  return undef(info);
}

// ---- data movement ----
Napi::Value Cast(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType st = a.dtype(0), dt = a.dtype(2);
  const int64_t n = a.size(4);
  castKernel(s.ctx(), st, a.array(1, st, n, "src"), dt, a.array(3, dt, n, "dst"), n);
  return undef(info);
}
Napi::Value Copy(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.dtype(0);
  const int64_t n = a.size(3);
  copyKernel(s.ctx(), a.array(1, d, n, "src"), a.array(2, d, n, "dst"), n * dtypeBytes(d));
  return undef(info);
}
Napi::Value Fill(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.dtype(0);
  const int64_t n = a.size(2);
  fillKernel(s.ctx(), d, a.array(1, d, n, "x"), n, a.number(3));
  return undef(info);
}
// gather(dtype, src, offset, shape: Float64Array, strides: Float64Array, dst)
Napi::Value Gather(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.dtype(0);
  const int64_t offset = a.size(2);
  if (!info[3].IsTypedArray() || !info[4].IsTypedArray()) a.typeError(3, "shape and strides must be Float64Arrays");
  auto shapeArr = info[3].As<Napi::Float64Array>(), strideArr = info[4].As<Napi::Float64Array>();
  if (shapeArr.TypedArrayType() != napi_float64_array || strideArr.TypedArrayType() != napi_float64_array)
    a.typeError(3, "shape and strides must be Float64Arrays");
  const size_t rank = shapeArr.ElementLength();
  if (rank != strideArr.ElementLength() || rank > 16) a.rangeError("shape and strides must have the same rank (at most 16)");
  int64_t shape[16], strides[16];
  int64_t total = 1, lo = offset, hi = offset;
  for (size_t i = 0; i < rank; ++i) {
    const double sh = shapeArr[i], st = strideArr[i];
    if (!(sh >= 0) || sh != std::floor(sh) || std::fabs(st) > 9007199254740991.0 || st != std::floor(st))
      a.rangeError("shape entries must be non-negative integers and strides integers");
    shape[i] = static_cast<int64_t>(sh);
    strides[i] = static_cast<int64_t>(st);
    total = a.mul(total, shape[i]);
  }
  if (total > 0) {  // every address the walk reaches lies in [lo, hi]
    for (size_t i = 0; i < rank; ++i) {
      const int64_t span = a.mul(shape[i] - 1, strides[i] < 0 ? -strides[i] : strides[i]);
      (strides[i] < 0 ? lo : hi) += strides[i] < 0 ? -span : span;
    }
    if (lo < 0) a.rangeError("the strided view reaches before the start of src");
  }
  void* src = a.array(1, d, total > 0 ? hi + 1 : 0, "src");
  void* dst = a.array(5, d, total, "dst");
  if (total > 0) gatherKernel(s.ctx(), dtypeBytes(d), src, offset, static_cast<int>(rank), shape, strides, dst);
  return undef(info);
}

// ---- elementwise ----
Napi::Value Unary(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const int64_t op = a.size(0);
  if (op > 10) a.typeError(0, "must be a unary op code 0..10");
  const DType d = a.floatDtype(1);
  const int64_t n = a.size(4);
  unaryKernel(s.ctx(), static_cast<UnaryOp>(op), d, a.array(2, d, n, "x"), a.array(3, d, n, "out"), n);
  return undef(info);
}
Napi::Value Binary(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const int64_t op = a.size(0);
  if (op > 5) a.typeError(0, "must be a binary op code 0..5");
  const DType d = a.floatDtype(1);
  const int64_t n = a.size(5), bn = a.size(6);
  if (n > 0 && (bn == 0 || n % bn != 0)) a.rangeError("n (" + std::to_string(n) + ") must be a multiple of bn (" + std::to_string(bn) + ")");
  binaryKernel(s.ctx(), static_cast<BinaryOp>(op), d, a.array(2, d, n, "a"), a.array(3, d, n > 0 ? bn : 0, "b"), a.array(4, d, n, "out"), n, bn);
  return undef(info);
}
Napi::Value Scale(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(3);
  scaleKernel(s.ctx(), d, a.array(1, d, n, "x"), a.array(2, d, n, "out"), n, static_cast<float>(a.number(4)), static_cast<float>(a.number(5)));
  return undef(info);
}
Napi::Value Axpy(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType xd = a.floatDtype(0), yd = a.floatDtype(2);
  const int64_t n = a.size(4);
  if (yd != DType::F32 && yd != xd) a.typeError(2, "y must be f32 or the dtype of x");
  axpyKernel(s.ctx(), xd, a.array(1, xd, n, "x"), yd, a.array(3, yd, n, "y"), n, static_cast<float>(a.number(5)));
  return undef(info);
}

// ---- reductions ----
Napi::Value Sum(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(2);
  return Napi::Number::New(info.Env(), sumKernel(s.ctx(), d, a.array(1, d, n, "x"), n));
}
Napi::Value SumSquares(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(2);
  return Napi::Number::New(info.Env(), sumSquaresKernel(s.ctx(), d, a.array(1, d, n, "x"), n));
}
Napi::Value HasInfNan(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(2);
  return Napi::Boolean::New(info.Env(), hasInfNanKernel(s.ctx(), d, a.array(1, d, n, "x"), n));
}
Napi::Value SumRows(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(2), cols = a.size(3), n = a.mul(rows, cols);
  sumRowsKernel(s.ctx(), d, a.array(1, d, n, "x"), rows, cols,
                static_cast<float*>(a.array(4, DType::F32, cols, "out")), a.boolean(5));
  return undef(info);
}
Napi::Value SumLastDim(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(2), cols = a.size(3), n = a.mul(rows, cols);
  sumLastDimKernel(s.ctx(), d, a.array(1, d, n, "x"), rows, cols, a.array(4, d, rows, "out"));
  return undef(info);
}

// gemm(dtype, outDtype, transA, transB, batch, m, n, k, alpha, beta, a, strideA, b, strideB, c, strideC[, bias])
Napi::Value Gemm(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  GemmParams p;
  p.dtype = a.floatDtype(0);
  p.outDtype = a.floatDtype(1);
  if (p.dtype == DType::F16 || p.outDtype == DType::F16) a.typeError(0, "gemm supports f32 and bf16 only");
  p.transA = a.boolean(2);
  p.transB = a.boolean(3);
  p.batch = a.size(4);
  p.m = a.size(5);
  p.n = a.size(6);
  p.k = a.size(7);
  p.alpha = static_cast<float>(a.number(8));
  p.beta = static_cast<float>(a.number(9));
  p.strideA = a.size(11);
  p.strideB = a.size(13);
  p.strideC = a.size(15);
  // Operand i starts at i * stride; the last one must fit.
  auto need = [&](int64_t stride, int64_t elems) {
    return p.batch == 0 || elems == 0 ? 0 : a.mul(p.batch - 1, stride) + elems;
  };
  p.a = a.array(10, p.dtype, need(p.strideA, a.mul(p.m, p.k)), "a");
  p.b = a.array(12, p.dtype, need(p.strideB, a.mul(p.k, p.n)), "b");
  p.c = a.array(14, p.outDtype, need(p.strideC, a.mul(p.m, p.n)), "c");
  if (p.batch > 1 && p.strideC < a.mul(p.m, p.n)) a.rangeError("strideC must be at least m * n (outputs may not overlap)");
  if (info.Length() > 16 && !info[16].IsNull() && !info[16].IsUndefined()) {
    if (p.beta != 0.0f) a.rangeError("a gemm with a bias starts C from the bias: beta must be 0");
    p.bias = a.array(16, p.outDtype, p.n, "bias");
  }
  gemmKernel(s.ctx(), p);
  return undef(info);
}

void add(Napi::Env env, Napi::Object exports, const char* name, Handler h) {
  // The (name, handler) pair lives as long as the environment: freed by the function's finalizer.
  auto* entry = new std::pair<const char*, Handler>(name, h);
  Napi::Function f = Napi::Function::New(env, dispatch, name, entry);
  f.AddFinalizer([](Napi::Env, std::pair<const char*, Handler>* e) { delete e; }, entry);
  exports.Set(name, f);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* s = new AddonState();
  s->features = detectCpu();
  s->isa = selectIsa(s->features, "auto");
  s->pool = std::make_unique<ThreadPool>(1, s->poolSpinUs);  // the TypeScript side sets the size from env.ts
  env.SetInstanceData<AddonState>(s);
  add(env, exports, "cpuInfo", CpuInfo);
  add(env, exports, "nativeAlloc", NativeAlloc);
  add(env, exports, "setIsa", SetIsa);
  add(env, exports, "setNumThreads", SetNumThreads);
  add(env, exports, "setPoolSpin", SetPoolSpin);
  add(env, exports, "probePeak", ProbePeak);
  add(env, exports, "probeCores", ProbeCores);
  add(env, exports, "streamProbe", StreamProbe);
  add(env, exports, "cast", Cast);
  add(env, exports, "copy", Copy);
  add(env, exports, "fill", Fill);
  add(env, exports, "gather", Gather);
  add(env, exports, "unary", Unary);
  add(env, exports, "binary", Binary);
  add(env, exports, "scale", Scale);
  add(env, exports, "axpy", Axpy);
  add(env, exports, "sum", Sum);
  add(env, exports, "sumSquares", SumSquares);
  add(env, exports, "hasInfNan", HasInfNan);
  add(env, exports, "sumRows", SumRows);
  add(env, exports, "sumLastDim", SumLastDim);
  add(env, exports, "gemm", Gemm);
  registerNnBindings(env, exports, add);
  return exports;
}

}  // namespace
}  // namespace ds

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return ds::Init(env, exports); }

NODE_API_MODULE(ds_tensor_cpu, InitAddon)
