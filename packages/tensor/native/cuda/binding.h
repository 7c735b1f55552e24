// Shared by the two halves of the cuda binding (binding.cc: device, memory, data movement,
// elementwise, reductions, gemm; binding_nn.cc: nn kernels and the optimizer): the argument reader
// that checks sizes and device operands, and the handler type every JS function is run through.
#pragma once
#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "api.h"

namespace ds {
namespace cuda {

// Per Node environment: the opened device (one per process in practice: a rank owns one GPU).
struct AddonState {
  Device* device = nullptr;
  ~AddonState() { closeDevice(device); }
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* op, AddonState& s) : info_(info), op_(op), s_(s) {}
  Napi::Env env() const { return info_.Env(); }
  [[noreturn]] void typeError(size_t i, const std::string& what) const {
    throw Napi::TypeError::New(env(), std::string(op_) + ": argument " + std::to_string(i) + " " + what);
  }
  [[noreturn]] void rangeError(const std::string& what) const { throw Napi::RangeError::New(env(), std::string(op_) + ": " + what); }

  Device& device() const {
    if (!s_.device) throw Napi::Error::New(env(), std::string(op_) + ": no cuda device is open (call openDevice first)");
    activate(*s_.device);
    return *s_.device;
  }
  double number(size_t i) const {
    if (i >= info_.Length() || !info_[i].IsNumber()) typeError(i, "must be a number");
    return info_[i].As<Napi::Number>().DoubleValue();
  }
  bool boolean(size_t i) const {
    if (i >= info_.Length() || !info_[i].IsBoolean()) typeError(i, "must be a boolean");
    return info_[i].As<Napi::Boolean>().Value();
  }
  int64_t size(size_t i) const {
    const double v = number(i);
    if (!(v >= 0) || v != std::floor(v) || v > 9007199254740991.0) typeError(i, "must be a non-negative integer");
    return static_cast<int64_t>(v);
  }
  DType dtype(size_t i) const {
    const int64_t v = size(i);
    if (v > 4) typeError(i, "must be a dtype code 0..4 (f32, bf16, f16, i32, u8)");
    return static_cast<DType>(v);
  }
  DType floatDtype(size_t i) const {
    const DType d = dtype(i);
    if (d != DType::F32 && d != DType::BF16 && d != DType::F16) typeError(i, "must be a float dtype (f32, bf16, f16)");
    return d;
  }
  uint64_t address(size_t i) const {
    if (i >= info_.Length() || !info_[i].IsBigInt()) typeError(i, "must be a device address (BigInt)");
    bool lossless = false;
    const uint64_t a = info_[i].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) typeError(i, "must be a device address in [0, 2^64)");
    return a;
  }
  // A device operand of `need` elements of dtype `dt`, checked against the live allocations.
  void* ptr(size_t i, DType dt, int64_t need, const char* name) const {
    void* p = reinterpret_cast<void*>(address(i));
    if (need > 0 && !owns(device(), p, static_cast<size_t>(need) * dtypeBytes(dt))) {
      rangeError(std::string(name) + " (0x" + hex(p) + ") is not inside a live cuda allocation holding the " + std::to_string(need) +
                 " elements the sizes need");
    }
    return p;
  }
  float* f32(size_t i, int64_t need, const char* name) const { return static_cast<float*>(ptr(i, DType::F32, need, name)); }
  int64_t mul(int64_t a, int64_t b, int64_t c = 1) const {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r) || r > 9007199254740991LL) rangeError("sizes overflow (product above 2^53)");
    return r;
  }
  // A host typed array (of any element type) holding at least `bytes` bytes.
  void* hostBytes(size_t i, int64_t bytes) const {
    if (i >= info_.Length() || !info_[i].IsTypedArray()) typeError(i, "must be a typed array");
    auto ta = info_[i].As<Napi::TypedArray>();
    if (static_cast<int64_t>(ta.ByteLength()) < bytes) rangeError("the host array has " + std::to_string(ta.ByteLength()) + " bytes, " + std::to_string(bytes) + " are needed");
    return static_cast<unsigned char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  }
  StreamKind stream(size_t i) const {
    const int64_t v = size(i);
    if (v > 1) typeError(i, "must be 0 (compute) or 1 (comm)");
    return static_cast<StreamKind>(v);
  }
  std::vector<std::string> strings(size_t i) const {
    std::vector<std::string> out;
    if (i >= info_.Length() || info_[i].IsUndefined()) return out;
    if (!info_[i].IsArray()) typeError(i, "must be an array of strings");
    auto arr = info_[i].As<Napi::Array>();
    for (uint32_t k = 0; k < arr.Length(); ++k) {
      Napi::Value v = arr.Get(k);
      if (!v.IsString()) typeError(i, "must be an array of strings");
      out.push_back(v.As<Napi::String>().Utf8Value());
    }
    return out;
  }
  static std::string hex(const void* p) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(p)));
    return buf;
  }

  const Napi::CallbackInfo& info_;
  const char* op_;
  AddonState& s_;
};

using Handler = Napi::Value (*)(const Napi::CallbackInfo&, Args&);
using AddBinding = void (*)(Napi::Env, Napi::Object, const char* name, Handler);
void registerNnBindings(Napi::Env env, Napi::Object exports, AddBinding add);

}  // namespace cuda
}  // namespace ds
