// Argument checking for the binding: every typed array is checked for its element type and for
// holding at least the elements the sizes imply, every size for being a safe non-negative integer.
// Failures throw JS TypeError / RangeError naming the op and the argument; nothing reaches a kernel
// unchecked.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "ds/simd.h"

namespace ds {

class ArgReader {
 public:
  ArgReader(const Napi::CallbackInfo& info, const char* op) : info_(info), op_(op) {}

  Napi::Env env() const { return info_.Env(); }

  [[noreturn]] void typeError(size_t i, const std::string& what) const {
    throw Napi::TypeError::New(env(), std::string(op_) + ": argument " + std::to_string(i) + " " + what);
  }
  [[noreturn]] void rangeError(const std::string& what) const {
    throw Napi::RangeError::New(env(), std::string(op_) + ": " + what);
  }

  double number(size_t i) const {
    if (i >= info_.Length() || !info_[i].IsNumber()) typeError(i, "must be a number");
    return info_[i].As<Napi::Number>().DoubleValue();
  }
  bool boolean(size_t i) const {
    if (i >= info_.Length() || !info_[i].IsBoolean()) typeError(i, "must be a boolean");
    return info_[i].As<Napi::Boolean>().Value();
  }
  // A size or count: an integer in [0, 2^53).
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
  // A typed array of the element type `dt` with at least `need` elements.
  void* array(size_t i, DType dt, int64_t need, const char* name) const {
    if (i >= info_.Length() || !info_[i].IsTypedArray()) typeError(i, std::string("(") + name + ") must be a typed array");
    auto ta = info_[i].As<Napi::TypedArray>();
    const napi_typedarray_type want = dt == DType::F32 ? napi_float32_array
                                      : dt == DType::I32 ? napi_int32_array
                                      : dt == DType::U8  ? napi_uint8_array
                                                         : napi_uint16_array;
    if (ta.TypedArrayType() != want) typeError(i, std::string("(") + name + ") has the wrong element type for its dtype");
    if (static_cast<int64_t>(ta.ElementLength()) < need) {
      rangeError(std::string(name) + " has " + std::to_string(ta.ElementLength()) + " elements but the sizes need " +
                 std::to_string(need));
    }
    return static_cast<unsigned char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  }
  // a * b (* c), throwing instead of overflowing.
  int64_t mul(int64_t a, int64_t b, int64_t c = 1) const {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r) || r > 9007199254740991LL) {
      rangeError("sizes overflow (product above 2^53)");
    }
    return r;
  }

 private:
  const Napi::CallbackInfo& info_;
  const char* op_;
};

}  // namespace ds
