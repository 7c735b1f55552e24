// The mpi addon's one binding file. Arguments are validated in TypeScript (src/backends/mpi.ts) and
// sizes checked again here; errors become JS exceptions or promise rejections, never aborts.
// Loading the addon never touches MPI: libmpi is dlopened on the first call to init().
#include <napi.h>

#include <memory>
#include <unordered_map>

#include "ds/mpi/engine.h"

namespace {

using ds::mpi::DType;
using ds::mpi::Engine;
using ds::mpi::ErrKind;
using ds::mpi::Op;
using ds::mpi::OpKind;

struct Pending {
  Op op;
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference inRef, outRef;
  uint32_t id = 0;
  explicit Pending(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

/** Per-environment state: the ops in flight, their completion channel, orphaned buffers. */
struct AddonState {
  Napi::ThreadSafeFunction tsfn;
  int inFlight = 0;
  uint32_t nextId = 1;
  bool engineStarted = false;
  std::unordered_map<uint32_t, Pending*> live;
  // Buffers of ops that failed while MPI still held them: kept alive for the rest of the process.
  std::vector<std::unique_ptr<Pending>> orphans;
};

uint8_t kEmpty[64];

struct Span {
  uint8_t* data = nullptr;
  size_t bytes = 0;
};

Span spanOf(const Napi::Value& v, const char* what) {
  if (v.IsUndefined() || v.IsNull()) return {};
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a typed array");
  auto ta = v.As<Napi::TypedArray>();
  auto ab = ta.ArrayBuffer();
  if (ta.ByteLength() == 0 || ab.Data() == nullptr) return {kEmpty, 0};
  return {static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset(), ta.ByteLength()};
}

Napi::Object errorRecord(Napi::Env env, const Op& op) {
  Napi::Object e = Napi::Object::New(env);
  e.Set("kind", static_cast<int>(op.err));
  e.Set("message", op.message);
  Napi::Array missing = Napi::Array::New(env, op.missing.size());
  for (size_t i = 0; i < op.missing.size(); i++) missing.Set(i, op.missing[i]);
  e.Set("missing", missing);
  return e;
}

void complete(Napi::Env env, Pending* raw) {
  auto* s = env.GetInstanceData<AddonState>();
  std::unique_ptr<Pending> p(raw);
  s->live.erase(p->id);
  if (--s->inFlight == 0) s->tsfn.Unref(env);
  const Op& op = p->op;
  if (op.err == ErrKind::None) {
    if (op.kind == OpKind::CreateComm) p->deferred.Resolve(Napi::Number::New(env, op.result));
    else p->deferred.Resolve(Napi::Number::New(env, op.execMs));
  } else {
    p->deferred.Reject(errorRecord(env, op));
  }
  if (op.orphaned) s->orphans.push_back(std::move(p));
}

Engine& engineOf(Napi::Env env, const std::string& library = "") {
  auto* s = env.GetInstanceData<AddonState>();
  Engine& e = Engine::get(library);
  std::string why;
  if (!e.ready(why)) throw Napi::Error::New(env, why);
  s->engineStarted = true;
  return e;
}

// Returns [promise, id].
Napi::Value enqueue(Napi::Env env, std::unique_ptr<Pending> p) {
  auto* s = env.GetInstanceData<AddonState>();
  Engine& engine = engineOf(env);
  Napi::Promise promise = p->deferred.Promise();
  if (s->inFlight++ == 0) s->tsfn.Ref(env);
  Pending* raw = p.release();
  raw->id = s->nextId++;
  s->live[raw->id] = raw;
  auto tsfn = s->tsfn;
  raw->op.done = [raw, tsfn](Op*) mutable {
    tsfn.NonBlockingCall(raw, [](Napi::Env env, Napi::Function, Pending* done) { complete(env, done); });
  };
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, promise);
  out.Set(1u, Napi::Number::New(env, raw->id));
  engine.submit(&raw->op);
  return out;
}

// init(library?): loads libmpi (the given path, else libmpi.so.40 from the usual places) and initialises MPI (first call); returns {rank, size, version, library}
// or throws one sentence saying what is missing.
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool first = !env.GetInstanceData<AddonState>()->engineStarted;
  Engine& e = engineOf(env, info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "");
  Napi::Object o = Napi::Object::New(env);
  o.Set("rank", e.worldRank());
  o.Set("size", e.worldSize());
  o.Set("version", e.version());
  o.Set("library", e.libraryPath());
  o.Set("first", first);
  return o;
}

// createComm(worldRanks, pids, tag, timeoutMs) -> [promise<commId>, id]. Collective over the members.
Napi::Value CreateComm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = std::make_unique<Pending>(env);
  Napi::Array ranks = info[0].As<Napi::Array>();
  Napi::Array pids = info[1].As<Napi::Array>();
  if (ranks.Length() == 0 || ranks.Length() != pids.Length()) throw Napi::RangeError::New(env, "createComm: one pid per rank expected");
  for (uint32_t i = 0; i < ranks.Length(); i++) {
    p->op.ranks.push_back(ranks.Get(i).As<Napi::Number>().Int32Value());
    p->op.pids.push_back(pids.Get(i).As<Napi::Number>().Int32Value());
  }
  p->op.kind = OpKind::CreateComm;
  p->op.tag = info[2].As<Napi::Number>().Int32Value() & 0x7fff;
  p->op.timeoutUs = static_cast<int64_t>(info[3].As<Napi::Number>().DoubleValue() * 1000.0);
  return enqueue(env, std::move(p));
}

Napi::Value FreeComm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = std::make_unique<Pending>(env);
  p->op.kind = OpKind::FreeComm;
  p->op.comm = info[0].As<Napi::Number>().Int32Value();
  p->op.timeoutUs = 1000000;
  return enqueue(env, std::move(p));
}

// submit(comm, size, rank, kind, seq, dtype, redop, count, root, timeoutMs, input, output) -> [promise<ms>, id]
Napi::Value Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto p = std::make_unique<Pending>(env);
  Op& op = p->op;
  op.comm = info[0].As<Napi::Number>().Int32Value();
  const int size = info[1].As<Napi::Number>().Int32Value();
  const int rank = info[2].As<Napi::Number>().Int32Value();
  const int kind = info[3].As<Napi::Number>().Int32Value();
  const int dtype = info[5].As<Napi::Number>().Int32Value();
  const int redop = info[6].As<Napi::Number>().Int32Value();
  if (kind < 0 || kind > 7 || dtype < 0 || dtype > 4 || redop < 0 || redop > 3 || size < 1 || rank < 0 || rank >= size) {
    throw Napi::RangeError::New(env, "submit: bad op, dtype, reduce op or rank");
  }
  op.kind = static_cast<OpKind>(kind);
  op.seq = info[4].As<Napi::Number>().Uint32Value();
  op.dtype = static_cast<DType>(dtype);
  op.redop = static_cast<ds::mpi::RedOp>(redop);
  const double count = info[7].As<Napi::Number>().DoubleValue();
  if (!(count >= 0 && count < 9.0e15)) throw Napi::RangeError::New(env, "submit: bad element count");
  op.count = static_cast<uint64_t>(count);
  op.root = info[8].As<Napi::Number>().Int32Value();
  op.timeoutUs = static_cast<int64_t>(info[9].As<Napi::Number>().DoubleValue() * 1000.0);
  const Span in = spanOf(info[10], "input"), out = spanOf(info[11], "output");
  const size_t n = static_cast<size_t>(size);
  const size_t bytes = op.count * ds::mpi::dtypeSize(op.dtype);
  auto need = [&](bool ok, const char* what) {
    if (!ok) throw Napi::RangeError::New(env, std::string("submit: ") + what);
  };
  need(op.root >= 0 && op.root < size, "root/peer out of range");
  switch (op.kind) {
    case OpKind::AllReduce:
    case OpKind::Broadcast: need(in.data && in.data == out.data && in.bytes == bytes, "buffer size does not match the count"); break;
    case OpKind::Send: need(in.data && in.bytes == bytes, "input size does not match the count"); break;
    case OpKind::Recv: need(out.data && out.bytes == bytes, "output size does not match the count"); break;
    case OpKind::ReduceScatter: need(in.data && out.data && in.bytes == n * bytes && out.bytes == bytes, "reduceScatter sizes"); break;
    case OpKind::AllGather: need(in.data && out.data && in.bytes == bytes && out.bytes == n * bytes, "allGather sizes"); break;
    case OpKind::AllToAll: need(in.data && out.data && in.bytes == bytes && out.bytes == bytes && op.count % n == 0, "allToAll sizes"); break;
    default: break;
  }
  op.in = in.data;
  op.out = out.data;
  if (info[10].IsObject()) p->inRef = Napi::Persistent(info[10].As<Napi::Object>());
  if (info[11].IsObject()) p->outRef = Napi::Persistent(info[11].As<Napi::Object>());
  return enqueue(env, std::move(p));
}

Napi::Value IsDone(const Napi::CallbackInfo& info) {
  auto* s = info.Env().GetInstanceData<AddonState>();
  auto it = s->live.find(info[0].As<Napi::Number>().Uint32Value());
  return Napi::Boolean::New(info.Env(), it == s->live.end() || it->second->op.finished.load());
}

// waitSync(id, timeoutMs): null on success (or already delivered), else the error record.
Napi::Value WaitSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* s = env.GetInstanceData<AddonState>();
  auto it = s->live.find(info[0].As<Napi::Number>().Uint32Value());
  if (it == s->live.end()) return env.Null();
  const Op& op = it->second->op;
  const double ms = info[1].As<Napi::Number>().DoubleValue();
  if (!Engine::get().waitFinished(&op, static_cast<int64_t>(ms * 1000.0))) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("kind", static_cast<int>(ErrKind::Timeout));
    e.Set("message", "waitSync gave up after " + std::to_string(static_cast<int64_t>(ms)) + " ms; the op is still running");
    e.Set("missing", Napi::Array::New(env, 0));
    return e;
  }
  return op.err == ErrKind::None ? env.Null() : errorRecord(env, op);
}

// shutdown(clean): called from process 'exit'; a clean (code 0) exit finalises MPI.
Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  auto* s = info.Env().GetInstanceData<AddonState>();
  if (s->engineStarted) Engine::get().shutdown(info[0].ToBoolean().Value());
  return info.Env().Undefined();
}

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  auto* s = new AddonState();
  s->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "ds-mpi", 0, 1);
  s->tsfn.Unref(env);
  env.SetInstanceData<AddonState>(s);
  env.AddCleanupHook([s] {
    // Environment teardown without the 'exit' event (a worker thread): stop without MPI_Finalize.
    if (s->engineStarted) Engine::get().shutdown(false);
    s->tsfn.Release();
  });
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  exports.Set("createComm", Napi::Function::New(env, CreateComm, "createComm"));
  exports.Set("freeComm", Napi::Function::New(env, FreeComm, "freeComm"));
  exports.Set("submit", Napi::Function::New(env, Submit, "submit"));
  exports.Set("isDone", Napi::Function::New(env, IsDone, "isDone"));
  exports.Set("waitSync", Napi::Function::New(env, WaitSync, "waitSync"));
  return exports;
}

}  // namespace

NODE_API_MODULE(ds_comm_mpi, InitAddon)
