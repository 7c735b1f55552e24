// The cuda addon's one binding file (compiled by g++; the CUDA half is behind api.h). Arguments
// are validated in TypeScript (src/devices/cuda.ts) and checked again here: sizes are safe
// non-negative integers, and every device operand is a BigInt address whose extent (the elements
// the sizes imply) lies inside one live allocation of the device's allocator, so a wrong view
// fails with a RangeError instead of corrupting device memory. C++ failures become JS errors
// carrying `dsKind`: 'oom', 'unsupported', 'cuda' (RangeError for bad values).
#include <napi.h>

#include <cmath>
#include <string>

#include "binding.h"

namespace ds {
namespace cuda {
namespace {



Napi::Value dispatch(const Napi::CallbackInfo& info) {
  auto* entry = static_cast<std::pair<const char*, Handler>*>(info.Data());
  Args args(info, entry->first, *info.Env().GetInstanceData<AddonState>());
  try {
    return entry->second(info, args);
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    const std::string msg = std::string(entry->first) + ": " + e.what();
    if (e.kind() == Error::BadValue) throw Napi::RangeError::New(info.Env(), msg);
    Napi::Error err = Napi::Error::New(info.Env(), msg);
    err.Set("dsKind", e.kind() == Error::OutOfMemory ? "oom" : e.kind() == Error::Unsupported ? "unsupported" : "cuda");
    throw err;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string(entry->first) + ": " + e.what());
  }
}

Napi::Value undef(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }
Napi::BigInt big(const Napi::CallbackInfo& info, const void* p) {
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
}

// ---- device ----
Napi::Value ProbeFn(const Napi::CallbackInfo& info, Args& a) {
  const Probe p = probe(a.strings(0));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("code", p.code);
  o.Set("reason", p.reason);
  o.Set("deviceCount", p.deviceCount);
  o.Set("gpu", p.gpu);
  o.Set("computeCapability", std::to_string(p.ccMajor) + "." + std::to_string(p.ccMinor));
  o.Set("totalMemory", static_cast<double>(p.totalMemory));
  o.Set("driverVersion", p.driverVersion);
  o.Set("runtimeVersion", p.runtimeVersion);
  o.Set("cublasLt", p.cublasLtPath);
  o.Set("cublasLtVersion", static_cast<double>(p.cublasLtVersion));
  return o;
}
Napi::Value OpenDevice(const Napi::CallbackInfo& info, Args& a) {
  const int64_t index = a.size(0);
  auto* s = info.Env().GetInstanceData<AddonState>();
  if (s->device) {
    if (deviceIndex(*s->device) != index) a.rangeError("cuda:" + std::to_string(deviceIndex(*s->device)) + " is already open in this process; one process drives one GPU");
    return undef(info);
  }
  s->device = openDevice(static_cast<int>(index), a.strings(1));
  return undef(info);
}
Napi::Value Describe(const Napi::CallbackInfo& info, Args& a) { return Napi::String::New(info.Env(), describe(a.device())); }
Napi::Value Alloc(const Napi::CallbackInfo& info, Args& a) { return big(info, alloc(a.device(), static_cast<size_t>(a.size(0)), a.boolean(1))); }
Napi::Value Free(const Napi::CallbackInfo& info, Args& a) {
  release(a.device(), reinterpret_cast<void*>(a.address(0)));
  return undef(info);
}
Napi::Value Stats(const Napi::CallbackInfo& info, Args& a) {
  const MemoryStats m = memoryStats(a.device());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("inUse", static_cast<double>(m.inUse));
  o.Set("cached", static_cast<double>(m.cached));
  o.Set("peakInUse", static_cast<double>(m.peakInUse));
  o.Set("allocations", static_cast<double>(m.allocations));
  o.Set("deviceMallocs", static_cast<double>(m.deviceMallocs));
  return o;
}
Napi::Value EmptyCache(const Napi::CallbackInfo& info, Args& a) {
  emptyCache(a.device());
  return undef(info);
}
// copyToHost(src, dst: TypedArray, bytes), copyFromHost(src: TypedArray, dst, bytes), copyDevice(src, dst, bytes)
Napi::Value CopyToHost(const Napi::CallbackInfo& info, Args& a) {
  const int64_t bytes = a.size(2);
  copyToHost(a.device(), a.ptr(0, DType::U8, bytes, "src"), a.hostBytes(1, bytes), static_cast<size_t>(bytes));
  return undef(info);
}
Napi::Value CopyFromHost(const Napi::CallbackInfo& info, Args& a) {
  const int64_t bytes = a.size(2);
  copyFromHost(a.device(), a.hostBytes(0, bytes), a.ptr(1, DType::U8, bytes, "dst"), static_cast<size_t>(bytes));
  return undef(info);
}
Napi::Value CopyDevice(const Napi::CallbackInfo& info, Args& a) {
  const int64_t bytes = a.size(2);
  copyDevice(a.device(), a.ptr(0, DType::U8, bytes, "src"), a.ptr(1, DType::U8, bytes, "dst"), static_cast<size_t>(bytes));
  return undef(info);
}
Napi::Value Synchronize(const Napi::CallbackInfo& info, Args& a) {
  synchronize(a.device());
  return undef(info);
}
Napi::Value StreamHandle(const Napi::CallbackInfo& info, Args& a) { return big(info, streamHandle(a.device(), a.stream(0))); }
Napi::Value EventCreate(const Napi::CallbackInfo& info, Args& a) { return big(info, eventCreate(a.device())); }
void* event(Args& a, size_t i) { return reinterpret_cast<void*>(a.address(i)); }
Napi::Value EventRecord(const Napi::CallbackInfo& info, Args& a) {
  eventRecord(a.device(), event(a, 0), a.stream(1));
  return undef(info);
}
Napi::Value StreamWaitEvent(const Napi::CallbackInfo& info, Args& a) {
  streamWaitEvent(a.device(), a.stream(0), event(a, 1));
  return undef(info);
}
Napi::Value EventSynchronize(const Napi::CallbackInfo& info, Args& a) {
  eventSynchronize(a.device(), event(a, 0));
  return undef(info);
}
Napi::Value EventQuery(const Napi::CallbackInfo& info, Args& a) { return Napi::Boolean::New(info.Env(), eventQuery(a.device(), event(a, 0))); }
Napi::Value EventDestroy(const Napi::CallbackInfo& info, Args& a) {
  eventDestroy(a.device(), event(a, 0));
  return undef(info);
}

// ---- data movement and elementwise: same argument order as the cpu addon, addresses for arrays ----
Napi::Value Cast(const Napi::CallbackInfo& info, Args& a) {
  const DType st = a.dtype(0), dt = a.dtype(2);
  const int64_t n = a.size(4);
  cast(a.device(), st, a.ptr(1, st, n, "src"), dt, a.ptr(3, dt, n, "dst"), n);
  return undef(info);
}
Napi::Value Copy(const Napi::CallbackInfo& info, Args& a) {
  const DType d = a.dtype(0);
  const int64_t n = a.size(3);
  copyDevice(a.device(), a.ptr(1, d, n, "src"), a.ptr(2, d, n, "dst"), static_cast<size_t>(n) * dtypeBytes(d));
  return undef(info);
}
Napi::Value Fill(const Napi::CallbackInfo& info, Args& a) {
  const DType d = a.dtype(0);
  const int64_t n = a.size(2);
  fill(a.device(), d, a.ptr(1, d, n, "x"), n, a.number(3));
  return undef(info);
}
// gather(dtype, src, offset, shape: Float64Array, strides: Float64Array, dst)
Napi::Value Gather(const Napi::CallbackInfo& info, Args& a) {
  const DType d = a.dtype(0);
  const int64_t offset = a.size(2);
  if (!info[3].IsTypedArray() || !info[4].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    a.typeError(3, "shape and strides must be Float64Arrays");
  auto shapeArr = info[3].As<Napi::Float64Array>(), strideArr = info[4].As<Napi::Float64Array>();
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
  if (total > 0) {
    for (size_t i = 0; i < rank; ++i) {
      const int64_t span = a.mul(shape[i] - 1, strides[i] < 0 ? -strides[i] : strides[i]);
      (strides[i] < 0 ? lo : hi) += strides[i] < 0 ? -span : span;
    }
    if (lo < 0) a.rangeError("the strided view reaches before the start of src");
  }
  void* src = a.ptr(1, d, total > 0 ? hi + 1 : 0, "src");
  void* dst = a.ptr(5, d, total, "dst");
  if (total > 0) gather(a.device(), dtypeBytes(d), src, offset, static_cast<int>(rank), shape, strides, dst);
  return undef(info);
}
Napi::Value Unary(const Napi::CallbackInfo& info, Args& a) {
  const int64_t op = a.size(0);
  if (op > 10) a.typeError(0, "must be a unary op code 0..10");
  const DType d = a.floatDtype(1);
  const int64_t n = a.size(4);
  unary(a.device(), static_cast<UnaryOp>(op), d, a.ptr(2, d, n, "x"), a.ptr(3, d, n, "out"), n);
  return undef(info);
}
Napi::Value Binary(const Napi::CallbackInfo& info, Args& a) {
  const int64_t op = a.size(0);
  if (op > 5) a.typeError(0, "must be a binary op code 0..5");
  const DType d = a.floatDtype(1);
  const int64_t n = a.size(5), bn = a.size(6);
  if (n > 0 && (bn == 0 || n % bn != 0)) a.rangeError("n (" + std::to_string(n) + ") must be a multiple of bn (" + std::to_string(bn) + ")");
  binary(a.device(), static_cast<BinaryOp>(op), d, a.ptr(2, d, n, "a"), a.ptr(3, d, n > 0 ? bn : 0, "b"), a.ptr(4, d, n, "out"), n, bn);
  return undef(info);
}
Napi::Value Scale(const Napi::CallbackInfo& info, Args& a) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(3);
  scale(a.device(), d, a.ptr(1, d, n, "x"), a.ptr(2, d, n, "out"), n, static_cast<float>(a.number(4)), static_cast<float>(a.number(5)));
  return undef(info);
}
Napi::Value Axpy(const Napi::CallbackInfo& info, Args& a) {
  const DType xd = a.floatDtype(0), yd = a.floatDtype(2);
  const int64_t n = a.size(4);
  if (yd != DType::F32 && yd != xd) a.typeError(2, "y must be f32 or the dtype of x");
  axpy(a.device(), xd, a.ptr(1, xd, n, "x"), yd, a.ptr(3, yd, n, "y"), n, static_cast<float>(a.number(5)));
  return undef(info);
}

// ---- reductions ----
Napi::Value Sum(const Napi::CallbackInfo& info, Args& a) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(2);
  return Napi::Number::New(info.Env(), sum(a.device(), d, a.ptr(1, d, n, "x"), n));
}
Napi::Value SumSquares(const Napi::CallbackInfo& info, Args& a) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(2);
  return Napi::Number::New(info.Env(), sumSquares(a.device(), d, a.ptr(1, d, n, "x"), n));
}
Napi::Value HasInfNan(const Napi::CallbackInfo& info, Args& a) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(2);
  return Napi::Boolean::New(info.Env(), hasInfNan(a.device(), d, a.ptr(1, d, n, "x"), n));
}
Napi::Value SumRows(const Napi::CallbackInfo& info, Args& a) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(2), cols = a.size(3);
  sumRows(a.device(), d, a.ptr(1, d, a.mul(rows, cols), "x"), rows, cols, a.f32(4, cols, "out"), a.boolean(5));
  return undef(info);
}
Napi::Value SumLastDim(const Napi::CallbackInfo& info, Args& a) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(2), cols = a.size(3);
  sumLastDim(a.device(), d, a.ptr(1, d, a.mul(rows, cols), "x"), rows, cols, a.ptr(4, d, rows, "out"));
  return undef(info);
}
// gemm(dtype, outDtype, transA, transB, batch, m, n, k, alpha, beta, a, strideA, b, strideB, c, strideC)
Napi::Value Gemm(const Napi::CallbackInfo& info, Args& a) {
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
  auto need = [&](int64_t stride, int64_t elems) { return p.batch == 0 || elems == 0 ? 0 : a.mul(p.batch - 1, stride) + elems; };
  p.a = a.ptr(10, p.dtype, need(p.strideA, a.mul(p.m, p.k)), "a");
  p.b = a.ptr(12, p.dtype, need(p.strideB, a.mul(p.k, p.n)), "b");
  p.c = a.ptr(14, p.outDtype, need(p.strideC, a.mul(p.m, p.n)), "c");
  if (p.batch > 1 && p.strideC < a.mul(p.m, p.n)) a.rangeError("strideC must be at least m * n (outputs may not overlap)");
  if (p.m > 2147483647 || p.n > 2147483647 || p.k > 2147483647 || p.batch > 2147483647) a.rangeError("gemm sizes must be below 2^31");
  gemm(a.device(), p);
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
  env.SetInstanceData<AddonState>(new AddonState());
  const std::pair<const char*, Handler> fns[] = {
      {"probe", ProbeFn}, {"openDevice", OpenDevice}, {"describe", Describe}, {"alloc", Alloc}, {"free", Free},
      {"memoryStats", Stats}, {"emptyCache", EmptyCache}, {"copyToHost", CopyToHost}, {"copyFromHost", CopyFromHost},
      {"copyDevice", CopyDevice}, {"synchronize", Synchronize}, {"streamHandle", StreamHandle}, {"eventCreate", EventCreate},
      {"eventRecord", EventRecord}, {"streamWaitEvent", StreamWaitEvent}, {"eventSynchronize", EventSynchronize},
      {"eventQuery", EventQuery}, {"eventDestroy", EventDestroy}, {"cast", Cast}, {"copy", Copy}, {"fill", Fill},
      {"gather", Gather}, {"unary", Unary}, {"binary", Binary}, {"scale", Scale}, {"axpy", Axpy}, {"sum", Sum},
      {"sumSquares", SumSquares}, {"hasInfNan", HasInfNan}, {"sumRows", SumRows}, {"sumLastDim", SumLastDim}, {"gemm", Gemm},
  };
  for (const auto& [name, h] : fns) add(env, exports, name, h);
  registerNnBindings(env, exports, add);
  return exports;
}

}  // namespace
}  // namespace cuda
}  // namespace ds

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return ds::cuda::Init(env, exports); }

NODE_API_MODULE(ds_tensor_cuda, InitAddon)
