// The nccl addon's one binding file. Arguments are validated in TypeScript (src/backends/) and
// checked again here; failures become JS exceptions or promise rejections, never aborts. Loading
// the addon touches neither CUDA nor NCCL: both are dlopened by probe().
//
// Why a cpu-target binary (g++, prebuilds/linux-x64) rather than the nvcc-built cuda target: this
// addon runs no kernel of its own. Everything it does on the GPU goes through host calls of the CUDA
// runtime (streams, events, pointer attributes, copies) and of NCCL, and both are dlopened, so the
// binary needs neither nvcc nor a CUDA toolkit to build, ships in the package itself, loads on every
// x86-64 Linux machine, and fails with one sentence only when `nccl` is asked for where a GPU, the
// driver or libnccl is missing.
#include <napi.h>

#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>

#include "ds/nccl/api.h"
#include "ds/nccl/comm.h"

namespace {

using ds::nccl::Api;
using ds::nccl::Comm;
using ds::nccl::ErrKind;
using ds::nccl::Op;
using ds::nccl::OpKind;

struct Pending {
  Op op;
  Napi::Promise::Deferred deferred;
  uint32_t id = 0;
  int comm = 0;
  explicit Pending(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

/** Per-environment state: the libraries, the communicators, the ops in flight and their completion channel. */
struct AddonState {
  Api api;
  bool usable = false;
  bool exitHookClaimed = false;
  Napi::ThreadSafeFunction tsfn;
  int inFlight = 0;
  uint32_t nextId = 1;
  int nextComm = 1;
  std::unordered_map<uint32_t, Pending*> live;
  std::map<int, std::unique_ptr<Comm>> comms;

  void shutdown() {
    // Aborts every communicator and joins its worker; ops in flight fail ("the process is exiting").
    comms.clear();
  }
};

AddonState& state(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }

// Core's codes (validate.ts: DTYPE_CODE f32 0, bf16 1, f16 2, i32 3, u8 4; REDUCE_CODE sum 0, avg 1,
// max 2, min 3) to NCCL's, and the element sizes.
constexpr int kNcclDType[] = {ds::nccl::ncclFloat32, ds::nccl::ncclBfloat16, ds::nccl::ncclFloat16, ds::nccl::ncclInt32, ds::nccl::ncclUint8};
constexpr size_t kElemSize[] = {4, 2, 2, 4, 1};
constexpr int kNcclRedOp[] = {ds::nccl::ncclSum, ds::nccl::ncclAvg, ds::nccl::ncclMax, ds::nccl::ncclMin};

std::vector<std::string> strings(const Napi::Value& v) {
  std::vector<std::string> out;
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).ToString().Utf8Value());
  return out;
}

uint64_t bigint(const Napi::Value& v, const char* what) {
  if (!v.IsBigInt()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a bigint");
  bool lossless = true;
  return v.As<Napi::BigInt>().Uint64Value(&lossless);
}

Api& usableApi(Napi::Env env) {
  AddonState& s = state(env);
  if (!s.usable) throw Napi::Error::New(env, "NCCL is not loaded: call probe() first and check that it reports usable");
  return s.api;
}

Comm& commOf(Napi::Env env, const Napi::Value& v) {
  AddonState& s = state(env);
  auto it = s.comms.find(v.As<Napi::Number>().Int32Value());
  if (it == s.comms.end()) throw Napi::Error::New(env, "this communicator was destroyed");
  return *it->second;
}

Napi::Object errorRecord(Napi::Env env, const Op& op) {
  Napi::Object e = Napi::Object::New(env);
  e.Set("kind", static_cast<int>(op.err));
  e.Set("message", op.message);
  return e;
}

void complete(Napi::Env env, Pending* raw) {
  AddonState& s = state(env);
  std::unique_ptr<Pending> p(raw);
  s.live.erase(p->id);
  if (--s.inFlight == 0) s.tsfn.Unref(env);
  const Op& op = p->op;
  if (op.err != ErrKind::None) p->deferred.Reject(errorRecord(env, op));
  else if (op.kind == OpKind::Create) p->deferred.Resolve(Napi::Number::New(env, p->comm));
  else p->deferred.Resolve(Napi::Number::New(env, op.execMs));
  // A communicator that failed to come up, or was closed, is released here (its worker has returned).
  if (op.kind == OpKind::Close || (op.kind == OpKind::Create && op.err != ErrKind::None)) s.comms.erase(p->comm);
}

/** Registers the op for completion and returns [promise, id]; `start` hands it to its communicator. */
template <typename Start>
Napi::Value track(Napi::Env env, std::unique_ptr<Pending> p, Start start) {
  AddonState& s = state(env);
  Napi::Promise promise = p->deferred.Promise();
  if (s.inFlight++ == 0) s.tsfn.Ref(env);
  Pending* raw = p.release();
  raw->id = s.nextId++;
  s.live[raw->id] = raw;
  auto tsfn = s.tsfn;
  raw->op.deliver = [raw, tsfn](Op*) mutable {
    tsfn.NonBlockingCall(raw, [](Napi::Env env, Napi::Function, Pending* done) { complete(env, done); });
  };
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, promise);
  out.Set(1u, Napi::Number::New(env, raw->id));
  start(raw);
  return out;
}

// probe(cudartCandidates, ncclCandidates) -> what was found (libraries, versions, devices, errors).
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& s = state(env);
  const ds::nccl::Probe p = ds::nccl::loadApi(s.api, strings(info[0]), strings(info[1]));
  s.usable = p.usable();
  Napi::Object o = Napi::Object::New(env);
  auto orNull = [&](bool ok, const std::string& v) { return ok ? Napi::Value(Napi::String::New(env, v)) : env.Null(); };
  o.Set("cudart", orNull(p.cudartLoaded, s.api.cudartPath));
  o.Set("cudartError", p.cudartError);
  o.Set("runtimeVersion", s.api.runtimeVersion);
  o.Set("driverVersion", s.api.driverVersion);
  o.Set("devices", s.api.deviceCount);
  o.Set("driverError", p.driverError);
  o.Set("nccl", orNull(p.ncclLoaded, s.api.ncclPath));
  o.Set("ncclError", p.ncclError);
  o.Set("ncclVersion", s.api.ncclVersion);
  o.Set("usable", p.usable());
  return o;
}

// claimExitHook() -> true the first time in this environment (the caller then installs the 'exit' handler).
Napi::Value ClaimExitHook(const Napi::CallbackInfo& info) {
  AddonState& s = state(info.Env());
  const bool first = !s.exitHookClaimed;
  s.exitHookClaimed = true;
  return Napi::Boolean::New(info.Env(), first);
}

// uniqueId() -> Uint8Array(128): rank 0's bootstrap handle, which every member passes to createComm.
Napi::Value UniqueId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Api& api = usableApi(env);
  ds::nccl::ncclUniqueId id{};
  const ds::nccl::ncclResult_t r = api.ncclGetUniqueId(&id);
  if (r != ds::nccl::ncclSuccess) throw Napi::Error::New(env, "ncclGetUniqueId failed: " + api.ncclText(r));
  Napi::Uint8Array out = Napi::Uint8Array::New(env, sizeof id);
  std::memcpy(out.Data(), &id, sizeof id);
  return out;
}

// createComm(id, nranks, rank, device, timeoutMs) -> [promise<commId>, id]. Collective over the members.
Napi::Value CreateComm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Api& api = usableApi(env);
  AddonState& s = state(env);
  if (!info[0].IsTypedArray() || info[0].As<Napi::Uint8Array>().ByteLength() != sizeof(ds::nccl::ncclUniqueId)) {
    throw Napi::TypeError::New(env, "createComm: the id must be the 128 bytes of an ncclUniqueId");
  }
  ds::nccl::ncclUniqueId id{};
  std::memcpy(&id, info[0].As<Napi::Uint8Array>().Data(), sizeof id);
  const int nranks = info[1].As<Napi::Number>().Int32Value();
  const int rank = info[2].As<Napi::Number>().Int32Value();
  const int device = info[3].As<Napi::Number>().Int32Value();
  if (nranks < 1 || rank < 0 || rank >= nranks) throw Napi::RangeError::New(env, "createComm: bad rank or size");
  if (device < 0 || device >= api.deviceCount) throw Napi::RangeError::New(env, "createComm: no CUDA device " + std::to_string(device));
  auto p = std::make_unique<Pending>(env);
  p->op.kind = OpKind::Create;
  p->op.timeoutUs = static_cast<int64_t>(info[4].As<Napi::Number>().DoubleValue() * 1000.0);
  p->comm = s.nextComm++;
  return track(env, std::move(p), [&](Pending* raw) { s.comms[raw->comm] = std::make_unique<Comm>(api, device, nranks, rank, id, &raw->op); });
}

const char* describeMemory(int type) {
  switch (type) {
    case 0: return "memory CUDA does not know (ordinary host memory)";
    case 1: return "pinned host memory";
    default: return "memory of another device";
  }
}

/** Checks that `ptr` is device (or managed) memory of `device`; throws a TypeError saying what it is otherwise. */
void checkPointer(Napi::Env env, const Api& api, uintptr_t ptr, int device, const char* what) {
  ds::nccl::cudaPointerAttributes a{};
  const ds::nccl::cudaError_t e = api.cudaPointerGetAttributes(&a, reinterpret_cast<void*>(ptr));
  if (e != ds::nccl::cudaSuccess) {
    api.cudaGetLastError();
    throw Napi::TypeError::New(env, std::string(what) + " is not a CUDA allocation (cudaPointerGetAttributes: " + api.cudaText(e) + ")");
  }
  const bool onDevice = a.type == ds::nccl::cudaMemoryTypeDevice || a.type == ds::nccl::cudaMemoryTypeManaged;
  if (!onDevice) throw Napi::TypeError::New(env, std::string(what) + " is " + describeMemory(a.type) + ", not memory of CUDA device " + std::to_string(device));
  if (a.type == ds::nccl::cudaMemoryTypeDevice && a.device != device) {
    throw Napi::TypeError::New(env, std::string(what) + " is memory of CUDA device " + std::to_string(a.device) + " but this group's communicator runs on CUDA device " + std::to_string(device));
  }
}

// submit(comm, kind, seq, dtype, redop, count, peer, timeoutMs, in, out, computeStream) -> [promise<ms>, id]
Napi::Value Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Api& api = usableApi(env);
  Comm& comm = commOf(env, info[0]);
  const int kind = info[1].As<Napi::Number>().Int32Value();
  const int dtype = info[3].As<Napi::Number>().Int32Value();
  const int redop = info[4].As<Napi::Number>().Int32Value();
  const int peer = info[6].As<Napi::Number>().Int32Value();
  if (kind < 0 || kind > 7 || dtype < 0 || dtype > 4 || redop < 0 || redop > 3 || peer < 0 || peer >= comm.size()) {
    throw Napi::RangeError::New(env, "submit: bad op, dtype, reduce op or peer");
  }
  const double count = info[5].As<Napi::Number>().DoubleValue();
  if (!(count >= 0 && count < 9.0e15)) throw Napi::RangeError::New(env, "submit: bad element count");
  auto p = std::make_unique<Pending>(env);
  Op& op = p->op;
  op.kind = static_cast<OpKind>(kind);
  op.seq = info[2].As<Napi::Number>().Uint32Value();
  op.dtype = kNcclDType[dtype];
  op.elemSize = kElemSize[dtype];
  op.redop = kNcclRedOp[redop];
  op.count = static_cast<uint64_t>(count);
  op.peer = peer;
  op.timeoutUs = static_cast<int64_t>(info[7].As<Napi::Number>().DoubleValue() * 1000.0);
  op.in = static_cast<uintptr_t>(bigint(info[8], "input address"));
  op.out = static_cast<uintptr_t>(bigint(info[9], "output address"));
  const auto compute = reinterpret_cast<ds::nccl::cudaStream_t>(static_cast<uintptr_t>(bigint(info[10], "compute stream")));
  if (op.kind == OpKind::AllToAll && op.count % static_cast<uint64_t>(comm.size()) != 0) throw Napi::RangeError::New(env, "submit: allToAll count does not split into equal blocks");
  if (op.count > 0) {
    if (op.in) checkPointer(env, api, op.in, comm.device(), "the input");
    if (op.out && op.out != op.in) checkPointer(env, api, op.out, comm.device(), "the output");
  }
  const std::string why = comm.prepare(&op, compute);
  if (!why.empty()) throw Napi::Error::New(env, why);
  const int commId = info[0].As<Napi::Number>().Int32Value();
  p->comm = commId;
  return track(env, std::move(p), [&](Pending* raw) { comm.submit(&raw->op); });
}

// closeComm(comm, timeoutMs) -> [promise, id]
Napi::Value CloseComm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Comm& comm = commOf(env, info[0]);
  auto p = std::make_unique<Pending>(env);
  p->op.kind = OpKind::Close;
  p->op.timeoutUs = static_cast<int64_t>(info[1].As<Napi::Number>().DoubleValue() * 1000.0);
  p->comm = info[0].As<Napi::Number>().Int32Value();
  return track(env, std::move(p), [&](Pending* raw) { comm.close(&raw->op); });
}

Napi::Value IsDone(const Napi::CallbackInfo& info) {
  AddonState& s = state(info.Env());
  auto it = s.live.find(info[0].As<Napi::Number>().Uint32Value());
  return Napi::Boolean::New(info.Env(), it == s.live.end() || it->second->op.finished.load());
}

// waitSync(id, timeoutMs): null once the op is over without error (or was already delivered), else the error record.
Napi::Value WaitSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& s = state(env);
  auto it = s.live.find(info[0].As<Napi::Number>().Uint32Value());
  if (it == s.live.end()) return env.Null();
  const Op& op = it->second->op;
  auto comm = s.comms.find(it->second->comm);
  const double ms = info[1].As<Napi::Number>().DoubleValue();
  const bool over = op.finished.load() || (comm != s.comms.end() && comm->second->waitFinished(&op, static_cast<int64_t>(ms * 1000.0)));
  if (!over) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("kind", static_cast<int>(ErrKind::Timeout));
    e.Set("message", "waitSync gave up after " + std::to_string(static_cast<int64_t>(ms)) + " ms; the op is still running (its own deadline still applies)");
    return e;
  }
  return op.err == ErrKind::None ? env.Null() : errorRecord(env, op);
}

// shutdown(): called from process 'exit'; aborts every communicator and stops the workers. Idempotent.
Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  state(info.Env()).shutdown();
  return info.Env().Undefined();
}

// ---- Device memory for tests and benchmarks (until @ds/tensor's cuda device provides DeviceArrays) ----

void setDevice(Napi::Env env, const Api& api, int device) {
  const ds::nccl::cudaError_t e = api.cudaSetDevice(device);
  if (e != ds::nccl::cudaSuccess) {
    api.cudaGetLastError();
    throw Napi::Error::New(env, "cudaSetDevice(" + std::to_string(device) + ") failed: " + api.cudaText(e));
  }
}

// deviceAlloc(bytes, device) -> bigint address of uninitialised device memory.
Napi::Value DeviceAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Api& api = usableApi(env);
  const double bytes = info[0].As<Napi::Number>().DoubleValue();
  setDevice(env, api, info[1].As<Napi::Number>().Int32Value());
  void* ptr = nullptr;
  ds::nccl::cudaError_t e = api.cudaMalloc(&ptr, static_cast<size_t>(bytes > 0 ? bytes : 1));
  if (e != ds::nccl::cudaSuccess) {
    api.cudaGetLastError();
    throw Napi::Error::New(env, "cudaMalloc of " + std::to_string(static_cast<uint64_t>(bytes)) + " bytes failed: " + api.cudaText(e));
  }
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ptr)));
}

Napi::Value DeviceFree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Api& api = usableApi(env);
  setDevice(env, api, info[1].As<Napi::Number>().Int32Value());
  api.cudaFree(reinterpret_cast<void*>(static_cast<uintptr_t>(bigint(info[0], "address"))));
  return env.Undefined();
}

// copy(address, view, device, toDevice): synchronous cudaMemcpy between a typed array and device memory.
Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Api& api = usableApi(env);
  void* dev = reinterpret_cast<void*>(static_cast<uintptr_t>(bigint(info[0], "address")));
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(env, "copy: the host side must be a typed array");
  Napi::TypedArray view = info[1].As<Napi::TypedArray>();
  setDevice(env, api, info[2].As<Napi::Number>().Int32Value());
  uint8_t* host = static_cast<uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
  const bool toDevice = info[3].ToBoolean().Value();
  if (view.ByteLength() == 0) return env.Undefined();
  const ds::nccl::cudaError_t e = toDevice ? api.cudaMemcpy(dev, host, view.ByteLength(), ds::nccl::cudaMemcpyHostToDevice)
                                           : api.cudaMemcpy(host, dev, view.ByteLength(), ds::nccl::cudaMemcpyDeviceToHost);
  if (e != ds::nccl::cudaSuccess) {
    api.cudaGetLastError();
    throw Napi::Error::New(env, std::string("cudaMemcpy ") + (toDevice ? "to" : "from") + " the device failed: " + api.cudaText(e));
  }
  return env.Undefined();
}

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  auto* s = new AddonState();
  s->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "ds-nccl", 0, 1);
  s->tsfn.Unref(env);
  env.SetInstanceData<AddonState>(s);
  env.AddCleanupHook([s] {
    s->shutdown();
    s->tsfn.Release();
  });
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
  exports.Set("claimExitHook", Napi::Function::New(env, ClaimExitHook, "claimExitHook"));
  exports.Set("uniqueId", Napi::Function::New(env, UniqueId, "uniqueId"));
  exports.Set("createComm", Napi::Function::New(env, CreateComm, "createComm"));
  exports.Set("submit", Napi::Function::New(env, Submit, "submit"));
  exports.Set("closeComm", Napi::Function::New(env, CloseComm, "closeComm"));
  exports.Set("isDone", Napi::Function::New(env, IsDone, "isDone"));
  exports.Set("waitSync", Napi::Function::New(env, WaitSync, "waitSync"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  exports.Set("deviceAlloc", Napi::Function::New(env, DeviceAlloc, "deviceAlloc"));
  exports.Set("deviceFree", Napi::Function::New(env, DeviceFree, "deviceFree"));
  exports.Set("copy", Napi::Function::New(env, Copy, "copy"));
  return exports;
}

}  // namespace

NODE_API_MODULE(ds_comm_nccl, InitAddon)
