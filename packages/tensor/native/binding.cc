// The cpu addon's one binding file. Arguments are validated in TypeScript (src/native/) and checked
// again here for what would otherwise corrupt memory (lengths), throwing JS errors, never aborting.
#include <napi.h>

#include "ds/cpu.h"
#include "ds/kernels.h"

namespace {

struct AddonState {
  ds::CpuFeatures features;
  ds::Isa isa = ds::Isa::Scalar;
};

AddonState* state(const Napi::CallbackInfo& info) { return static_cast<AddonState*>(info.Data()); }

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  const AddonState* s = state(info);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("avx2", s->features.avx2);
  o.Set("avx512f", s->features.avx512f);
  o.Set("avx512bf16", s->features.avx512bf16);
  o.Set("amx", s->features.amxTile);
  o.Set("isa", ds::isaName(s->isa));
  return o;
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  AddonState* s = state(info);
  const std::string requested = info[0].As<Napi::String>().Utf8Value();
  s->isa = ds::selectIsa(s->features, requested.c_str());
  return Napi::String::New(info.Env(), ds::isaName(s->isa));
}

Napi::Value AxpyF32(const Napi::CallbackInfo& info) {
  const auto alpha = info[0].As<Napi::Number>().FloatValue();
  auto x = info[1].As<Napi::Float32Array>();
  auto y = info[2].As<Napi::Float32Array>();
  if (x.ElementLength() != y.ElementLength()) {
    throw Napi::RangeError::New(info.Env(), "axpyF32: x and y lengths differ");
  }
  ds::axpyF32(state(info)->isa, static_cast<int64_t>(y.ElementLength()), alpha, x.Data(), y.Data());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* s = new AddonState();
  s->features = ds::detectCpu();
  s->isa = ds::selectIsa(s->features, "auto");
  env.SetInstanceData<AddonState>(s);
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfo, "cpuInfo", s));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa, "setIsa", s));
  exports.Set("axpyF32", Napi::Function::New(env, AxpyF32, "axpyF32", s));
  return exports;
}

}  // namespace

NODE_API_MODULE(ds_tensor_cpu, Init)
