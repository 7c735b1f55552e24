// Shared by the two halves of the binding (binding.cc: machine, data movement, elementwise,
// reductions, gemm; binding_nn.cc: nn kernels and the optimizer). Each JS function is one Handler
// run by a common dispatcher that turns C++ failures into JS errors.
#pragma once
#include <napi.h>

#include <memory>

#include "ds/cpu.h"
#include "ds/napi_args.h"
#include "ds/pool.h"

namespace ds {

// Per Node environment (SetInstanceData): worker threads and Electron windows each get their own.
struct AddonState {
  CpuFeatures features;
  Isa isa = Isa::Scalar;
  std::unique_ptr<ThreadPool> pool;
  int64_t poolSpinUs = 200;  // setPoolSpin (env.ts sets it at load); kept for the pools setNumThreads makes
  Ctx ctx() const { return Ctx{isa, pool.get(), features.avx512bf16}; }
};

using Handler = Napi::Value (*)(const Napi::CallbackInfo&, ArgReader&, AddonState&);
using AddBinding = void (*)(Napi::Env, Napi::Object, const char* name, Handler);

void registerNnBindings(Napi::Env env, Napi::Object exports, AddBinding add);

}  // namespace ds
