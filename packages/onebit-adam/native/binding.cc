// The 1-bit addon's one binding file. Arguments are validated in TypeScript (src/native/load.ts)
// and checked again here for anything that could touch memory out of bounds; a bad call becomes a
// JS exception, never an abort. No per-process state: the ISA is an argument of every call.
#include <napi.h>

#include <cstdint>
#include <string>

#include "ds/onebit/signs.h"
#include "ds/onebit/update.h"

namespace {

using ds::onebit::Isa;

template <typename T>
T* dataOf(const Napi::Value& v, size_t& length, const char* what, napi_typedarray_type type) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(v.Env(), std::string("onebit: ") + what + " has the wrong typed-array type");
  }
  auto ta = v.As<Napi::TypedArray>();
  length = ta.ElementLength();
  static uint8_t empty[64];
  if (length == 0 || ta.ArrayBuffer().Data() == nullptr) return reinterpret_cast<T*>(empty);
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

Isa isaArg(const Napi::Value& v) {
  const int32_t i = v.As<Napi::Number>().Int32Value();
  return i == 1 ? Isa::Avx2 : Isa::Scalar;
}

void check(Napi::Env env, bool ok, const std::string& message) {
  if (!ok) throw Napi::RangeError::New(env, "onebit: " + message);
}

Napi::Value SelectIsa(const Napi::CallbackInfo& info) {
  const std::string requested = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "auto";
  const Isa isa = ds::onebit::selectIsa(requested.c_str());
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("id", static_cast<int>(isa));
  out.Set("name", ds::onebit::isaName(isa));
  return out;
}

// addErrorSumSquares(isa, x: Float32Array, err: Float32Array) -> number
Napi::Value AddErrorSumSquares(const Napi::CallbackInfo& info) {
  size_t nx = 0, ne = 0;
  float* x = dataOf<float>(info[1], nx, "x", napi_float32_array);
  const float* err = dataOf<float>(info[2], ne, "err", napi_float32_array);
  check(info.Env(), ne >= nx, "the error buffer is shorter than x");
  return Napi::Number::New(info.Env(), ds::onebit::addErrorSumSquares(isaArg(info[0]), x, err, static_cast<int64_t>(nx)));
}

// compressSigns(isa, x: Float32Array, scale, bits: Uint8Array, err: Float32Array)
Napi::Value CompressSigns(const Napi::CallbackInfo& info) {
  size_t nx = 0, nb = 0, ne = 0;
  const float* x = dataOf<float>(info[1], nx, "x", napi_float32_array);
  const float scale = info[2].As<Napi::Number>().FloatValue();
  uint8_t* bits = dataOf<uint8_t>(info[3], nb, "bits", napi_uint8_array);
  float* err = dataOf<float>(info[4], ne, "err", napi_float32_array);
  check(info.Env(), nx % 8 == 0, "x's length must be a multiple of 8");
  check(info.Env(), nb >= nx / 8 && ne >= nx, "bits or err is shorter than x needs");
  ds::onebit::compressSigns(isaArg(info[0]), x, static_cast<int64_t>(nx), scale, bits, err);
  return info.Env().Undefined();
}

// unpackSigns(isa, bits: Uint8Array, scale, out: Float32Array, accumulate)
Napi::Value UnpackSigns(const Napi::CallbackInfo& info) {
  size_t nb = 0, no = 0;
  const uint8_t* bits = dataOf<uint8_t>(info[1], nb, "bits", napi_uint8_array);
  const float scale = info[2].As<Napi::Number>().FloatValue();
  float* out = dataOf<float>(info[3], no, "out", napi_float32_array);
  const bool accumulate = info[4].ToBoolean().Value();
  check(info.Env(), no % 8 == 0, "out's length must be a multiple of 8");
  check(info.Env(), nb >= no / 8, "bits is shorter than out needs");
  ds::onebit::unpackSigns(isaArg(info[0]), bits, static_cast<int64_t>(no), scale, out, accumulate);
  return info.Env().Undefined();
}

// momentumUpdate(isa, m: Float32Array, g: Float32Array, beta1, gradScale)
Napi::Value MomentumUpdate(const Napi::CallbackInfo& info) {
  size_t nm = 0, ng = 0;
  float* m = dataOf<float>(info[1], nm, "m", napi_float32_array);
  const float* g = dataOf<float>(info[2], ng, "g", napi_float32_array);
  check(info.Env(), ng >= nm, "the gradient is shorter than the momentum");
  ds::onebit::momentumUpdate(isaArg(info[0]), m, g, static_cast<int64_t>(nm), info[3].As<Napi::Number>().FloatValue(), info[4].As<Napi::Number>().FloatValue());
  return info.Env().Undefined();
}

// frozenAdamUpdate(isa, p, m, v: Float32Array, lr, eps, weightDecay)
Napi::Value FrozenAdamUpdate(const Napi::CallbackInfo& info) {
  size_t np = 0, nm = 0, nv = 0;
  float* p = dataOf<float>(info[1], np, "p", napi_float32_array);
  const float* m = dataOf<float>(info[2], nm, "m", napi_float32_array);
  const float* v = dataOf<float>(info[3], nv, "v", napi_float32_array);
  check(info.Env(), nm >= np && nv >= np, "the momentum or variance is shorter than the parameters");
  const auto f = [&](int i) { return info[i].As<Napi::Number>().FloatValue(); };
  ds::onebit::frozenAdamUpdate(isaArg(info[0]), p, m, v, static_cast<int64_t>(np), f(4), f(5), f(6));
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("momentumUpdate", Napi::Function::New(env, MomentumUpdate));
  exports.Set("frozenAdamUpdate", Napi::Function::New(env, FrozenAdamUpdate));
  exports.Set("selectIsa", Napi::Function::New(env, SelectIsa));
  exports.Set("addErrorSumSquares", Napi::Function::New(env, AddErrorSumSquares));
  exports.Set("compressSigns", Napi::Function::New(env, CompressSigns));
  exports.Set("unpackSigns", Napi::Function::New(env, UnpackSigns));
  return exports;
}

}  // namespace

NODE_API_MODULE(onebit, Init)
