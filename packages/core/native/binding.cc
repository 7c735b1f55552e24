// The comm addon's one binding file. Arguments are validated in TypeScript (src/comm/backends/cpu.ts)
// and checked again here for anything that could touch memory out of bounds; errors become JS
// exceptions or promise rejections, never aborts. Per-environment state lives in SetInstanceData.
#include <napi.h>

#include <cstring>
#include <fcntl.h>
#include <memory>
#include <set>
#include <unordered_map>
#include <sys/mman.h>
#include <unistd.h>

#include "ds/comm/group.h"

namespace {

using ds::comm::DType;
using ds::comm::ErrKind;
using ds::comm::Group;
using ds::comm::Op;
using ds::comm::OpKind;

class NativeGroup;

struct AddonState {
  std::set<NativeGroup*> groups;
  Napi::FunctionReference ctor;
};

/** An op in flight: what the executor runs plus what keeps its JS buffers alive. */
struct Pending {
  Op op;
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference inRef, outRef;
  NativeGroup* owner;
  uint32_t id = 0;
  explicit Pending(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)), owner(nullptr) {}
};

struct Span {
  uint8_t* data = nullptr;
  size_t bytes = 0;
};

// Empty arrays may have no backing store at all; give them a harmless non-null address.
uint8_t kEmpty[64];

Span spanOf(const Napi::Value& v, const char* what) {
  if (v.IsUndefined() || v.IsNull()) return {};
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a typed array");
  auto ta = v.As<Napi::TypedArray>();
  auto ab = ta.ArrayBuffer();
  if (ta.ByteLength() == 0 || ab.Data() == nullptr) return {kEmpty, 0};
  return {static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset(), ta.ByteLength()};
}

bool disjoint(const Span& a, const Span& b) { return a.data + a.bytes <= b.data || b.data + b.bytes <= a.data; }

class NativeGroup : public Napi::ObjectWrap<NativeGroup> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeGroup",
                       {InstanceMethod("submit", &NativeGroup::Submit), InstanceMethod("destroy", &NativeGroup::Destroy),
                        InstanceMethod("abort", &NativeGroup::Abort), InstanceMethod("regCreate", &NativeGroup::RegCreate),
                        InstanceMethod("regAttach", &NativeGroup::RegAttach), InstanceMethod("port", &NativeGroup::Port),
                        InstanceMethod("connect", &NativeGroup::Connect), InstanceMethod("isDone", &NativeGroup::IsDone),
                        InstanceMethod("waitSync", &NativeGroup::WaitSync), InstanceMethod("recvHere", &NativeGroup::RecvHere)});
  }

  NativeGroup(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeGroup>(info) {
    Napi::Env env = info.Env();
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    const int rank = info[1].As<Napi::Number>().Int32Value();
    const int size = info[2].As<Napi::Number>().Int32Value();
    const bool create = info[3].As<Napi::Boolean>().Value();
    const double chunk = info[4].As<Napi::Number>().DoubleValue();
    const double p2p = info[5].As<Napi::Number>().DoubleValue();
    const int spin = info[6].As<Napi::Number>().Int32Value();
    if (size < 1 || size > 1024 || rank < 0 || rank >= size) throw Napi::RangeError::New(env, "NativeGroup: rank/size out of range");
    if (chunk < 4096 || chunk > (1 << 30) || p2p < 4096 || p2p > (1 << 30)) throw Napi::RangeError::New(env, "NativeGroup: chunk sizes out of range");
    const bool tcp = info.Length() > 7 && info[7].IsString() && info[7].As<Napi::String>().Utf8Value() == "tcp";
    try {
      if (tcp) group_ = std::make_shared<Group>(rank, size, static_cast<size_t>(chunk), info[8].As<Napi::String>().Utf8Value());
      else group_ = std::make_shared<Group>(name, rank, size, create, static_cast<size_t>(chunk), static_cast<size_t>(p2p), spin);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "ds-comm", 0, 1);
    tsfn_.Unref(env);
    state_ = env.GetInstanceData<AddonState>();
    state_->groups.insert(this);
  }

  ~NativeGroup() override { Close(); }

  /** Stops the group's threads and unmaps it; also run from the environment cleanup hook. */
  void Close() {
    if (closed_) return;
    closed_ = true;
    group_->shutdown();
    tsfn_.Release();
    if (state_) state_->groups.erase(this);
  }

 private:
  Napi::Value Port(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), group_->port()); }

  // connect(addrs, timeoutMs): TCP groups build their socket mesh on the executor thread, so the
  // JS thread (which may serve the rendezvous store) stays free meanwhile.
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || !group_->tcp()) throw Napi::Error::New(env, "connect: not an open TCP group");
    Napi::Array addrs = info[0].As<Napi::Array>();
    if (addrs.Length() != static_cast<uint32_t>(group_->size())) throw Napi::RangeError::New(env, "connect: one address per rank expected");
    auto p = std::make_unique<Pending>(env);
    p->op.kind = OpKind::Connect;
    p->op.timeoutUs = static_cast<int64_t>(info[1].As<Napi::Number>().DoubleValue() * 1000.0);
    for (uint32_t i = 0; i < addrs.Length(); i++) p->op.addrs.push_back(addrs.Get(i).As<Napi::String>().Utf8Value());
    return Enqueue(env, std::move(p));
  }

  // Returns [promise, id]; the id names the op for isDone() and waitSync() until it is delivered.
  Napi::Value Enqueue(Napi::Env env, std::unique_ptr<Pending> p) {
    p->owner = this;
    Napi::Promise promise = p->deferred.Promise();
    if (inFlight_++ == 0) tsfn_.Ref(env);
    Pending* raw = p.release();
    const uint32_t id = nextId_++;
    raw->id = id;
    live_[id] = raw;
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, promise);
    out.Set(1u, Napi::Number::New(env, id));
    auto tsfn = tsfn_;
    group_->submit(&raw->op, [raw, tsfn](Op*) mutable {
      // Runs on the executor thread: hand the finished op to the JS thread.
      tsfn.NonBlockingCall(raw, [](Napi::Env env, Napi::Function, Pending* done) { done->owner->Complete(env, done); });
    });
    return out;
  }

  // isDone(id): whether the executor has finished the op, even if the JS thread has not yet run
  // its completion (code that cannot yield to the event loop polls this).
  Napi::Value IsDone(const Napi::CallbackInfo& info) {
    auto it = live_.find(info[0].As<Napi::Number>().Uint32Value());
    return Napi::Boolean::New(info.Env(), it == live_.end() || it->second->op.finished.load());
  }

  // waitSync(id, timeoutMs): blocks this thread until the op finished; returns null on success,
  // the error record on failure, or a timeout record. The promise still settles later as usual.
  Napi::Value WaitSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto it = live_.find(info[0].As<Napi::Number>().Uint32Value());
    if (it == live_.end()) return env.Null();
    const Op& op = it->second->op;
    const double ms = info[1].As<Napi::Number>().DoubleValue();
    if (!group_->waitFinished(&op, static_cast<int64_t>(ms * 1000.0))) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("kind", static_cast<int>(ErrKind::Timeout));
      e.Set("message", "waitSync gave up after " + std::to_string(static_cast<int64_t>(ms)) + " ms; the op is still running");
      e.Set("missing", Napi::Array::New(env, 0));
      return e;
    }
    return op.err == ErrKind::None ? env.Null() : ErrorRecord(env, op);
  }

  static Napi::Object ErrorRecord(Napi::Env env, const Op& op) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("kind", static_cast<int>(op.err));
    e.Set("message", op.message);
    Napi::Array missing = Napi::Array::New(env, op.missing.size());
    for (size_t i = 0; i < op.missing.size(); i++) missing.Set(i, op.missing[i]);
    e.Set("missing", missing);
    return e;
  }

  // Reads submit()'s arguments into `op` (the typed arrays' bytes checked against the count).
  void ReadOp(const Napi::CallbackInfo& info, Op& op) {
    Napi::Env env = info.Env();
    const int kind = info[0].As<Napi::Number>().Int32Value();
    const int dtype = info[2].As<Napi::Number>().Int32Value();
    const int redop = info[3].As<Napi::Number>().Int32Value();
    if (kind < 0 || kind > 7 || !ds::comm::validDType(dtype) || !ds::comm::validRedOp(redop)) throw Napi::RangeError::New(env, "submit: bad op, dtype or reduce op");
    op.kind = static_cast<OpKind>(kind);
    op.seq = info[1].As<Napi::Number>().Uint32Value();
    op.dtype = static_cast<DType>(dtype);
    op.redop = static_cast<ds::comm::RedOp>(redop);
    const double count = info[4].As<Napi::Number>().DoubleValue();
    if (!(count >= 0 && count < 9.0e15)) throw Napi::RangeError::New(env, "submit: bad element count");
    op.count = static_cast<uint64_t>(count);
    op.root = info[5].As<Napi::Number>().Int32Value();
    op.timeoutUs = static_cast<int64_t>(info[6].As<Napi::Number>().DoubleValue() * 1000.0);
    const Span in = spanOf(info[7], "input"), out = spanOf(info[8], "output");
    CheckSizes(env, op, in, out);
    op.in = in.data;
    op.out = out.data;
  }

  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, "the process group was destroyed");
    auto p = std::make_unique<Pending>(env);
    Op& op = p->op;
    ReadOp(info, op);
    if (info[7].IsObject()) p->inRef = Napi::Persistent(info[7].As<Napi::Object>());
    if (info[8].IsObject()) p->outRef = Napi::Persistent(info[8].As<Napi::Object>());
    // A send that fits the channel now is written from here; the executor only waits for its ack.
    if (op.kind == OpKind::Send) group_->sendEager(&op);
    return Enqueue(env, std::move(p));
  }

  // recvHere(...submit's arguments, pollUs): runs a recv on this thread, blocking until it is over (polling up to pollUs first): null on
  // success, its error record on failure, undefined when the channel's executor is busy (nothing
  // done: submit it instead).
  Napi::Value RecvHere(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, "the process group was destroyed");
    Op op;
    ReadOp(info, op);
    if (op.kind != OpKind::Recv) throw Napi::RangeError::New(env, "recvHere: not a recv");
    const double pollUs = info[9].As<Napi::Number>().DoubleValue();
    if (!(pollUs >= 0 && pollUs <= 1e7)) throw Napi::RangeError::New(env, "recvHere: poll time out of range");
    if (!group_->recvHere(&op, static_cast<int64_t>(pollUs))) return env.Undefined();
    return op.err == ErrKind::None ? env.Null() : ErrorRecord(env, op);
  }

  void Complete(Napi::Env env, Pending* raw) {
    std::unique_ptr<Pending> p(raw);
    live_.erase(p->id);
    if (--inFlight_ == 0 && !closed_) tsfn_.Unref(env);
    const Op& op = p->op;
    if (op.err == ErrKind::None) {
      p->deferred.Resolve(Napi::Number::New(env, op.execMs));
      return;
    }
    p->deferred.Reject(ErrorRecord(env, op));
  }

  void CheckSizes(Napi::Env env, const Op& op, const Span& in, const Span& out) {
    const size_t n = static_cast<size_t>(group_->size());
    const size_t bytes = op.count * ds::comm::dtypeSize(op.dtype);
    auto need = [&](bool ok, const char* what) {
      if (!ok) throw Napi::RangeError::New(env, std::string("submit: ") + what);
    };
    const bool peerOp = op.kind == OpKind::Send || op.kind == OpKind::Recv;
    need(op.root >= 0 && op.root < static_cast<int>(n) && !(peerOp && op.root == group_->rank()), "root/peer out of range");
    switch (op.kind) {
      case OpKind::Barrier:
      case OpKind::Connect: break;
      case OpKind::AllReduce:
      case OpKind::Broadcast:
      case OpKind::Send: need(in.data && in.bytes == bytes, "input size does not match the count"); break;
      case OpKind::Recv: need(out.data && out.bytes == bytes, "output size does not match the count"); break;
      case OpKind::ReduceScatter:
        need(in.data && out.data && in.bytes == n * bytes && out.bytes == bytes, "reduceScatter sizes");
        need(disjoint(in, out) || out.data == in.data + group_->rank() * bytes, "reduceScatter output overlaps the input");
        break;
      case OpKind::AllGather:
        need(in.data && out.data && in.bytes == bytes && out.bytes == n * bytes, "allGather sizes");
        need(disjoint(in, out) || in.data == out.data + group_->rank() * bytes, "allGather input overlaps the output");
        break;
      case OpKind::AllToAll:
        need(in.data && out.data && in.bytes == bytes && out.bytes == bytes && op.count % n == 0, "allToAll sizes");
        need(disjoint(in, out) || in.data == out.data, "allToAll input and output overlap");
        break;
    }
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Close();
    return info.Env().Undefined();
  }

  Napi::Value Abort(const Napi::CallbackInfo& info) {
    group_->abortGroup(info[0].As<Napi::String>().Utf8Value());
    return info.Env().Undefined();
  }

  // regCreate(name, bytes, id): this rank's part of a registered region, as an ArrayBuffer over
  // shared memory that peers will map. The mapping lives as long as the ArrayBuffer.
  Napi::Value RegCreate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (group_->tcp()) throw Napi::Error::New(env, "regCreate: registered regions need the shared-memory transport");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    const double bytesD = info[1].As<Napi::Number>().DoubleValue();
    const int64_t id = info[2].As<Napi::Number>().Int64Value();
    if (!(bytesD >= 1 && bytesD <= 9.0e15)) throw Napi::RangeError::New(env, "regCreate: bad size");
    const size_t bytes = static_cast<size_t>(bytesD);
    const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) throw Napi::Error::New(env, "cannot create shared memory '" + name + "': " + std::strerror(errno));
    int rc = ftruncate(fd, static_cast<off_t>(bytes)) == 0 ? posix_fallocate(fd, 0, static_cast<off_t>(bytes)) : errno;
    void* p = rc == 0 ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (rc == 0 && p == MAP_FAILED) rc = errno;
    close(fd);
    if (rc != 0) {
      shm_unlink(name.c_str());
      throw Napi::Error::New(env, "cannot reserve " + std::to_string(bytes) + " bytes of shared memory (is /dev/shm full?): " + std::strerror(rc));
    }
    own_[id] = {static_cast<uint8_t*>(p), bytes};
    struct Hint {
      std::shared_ptr<Group> group;
      int64_t id;
      size_t bytes;
    };
    auto* hint = new Hint{group_, id, bytes};
    return Napi::ArrayBuffer::New(env, p, bytes, [](Napi::Env, void* data, Hint* h) {
      h->group->dropRegistration(h->id);
      munmap(data, h->bytes);
      delete h;
    }, hint);
  }

  // regAttach(id, names): maps every peer's part (names indexed by group rank) and enables the
  // zero-copy paths for buffers inside region `id`.
  Napi::Value RegAttach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int64_t id = info[0].As<Napi::Number>().Int64Value();
    Napi::Array names = info[1].As<Napi::Array>();
    auto it = own_.find(id);
    if (it == own_.end() || names.Length() != static_cast<uint32_t>(group_->size())) throw Napi::RangeError::New(env, "regAttach: unknown region or wrong name count");
    ds::comm::Registration reg{id, it->second.second, it->second.first, std::vector<uint8_t*>(group_->size(), nullptr)};
    reg.peers[group_->rank()] = reg.own;
    for (int q = 0; q < group_->size(); q++) {
      if (q == group_->rank()) continue;
      const std::string name = names.Get(q).As<Napi::String>().Utf8Value();
      const int fd = shm_open(name.c_str(), O_RDWR, 0600);
      void* p = fd >= 0 ? mmap(nullptr, reg.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
      const int err = errno;
      if (fd >= 0) close(fd);
      if (p == MAP_FAILED) {
        for (int k = 0; k < q; k++)
          if (k != group_->rank() && reg.peers[k]) munmap(reg.peers[k], reg.bytes);
        throw Napi::Error::New(env, "cannot map rank " + std::to_string(q) + "'s registered region '" + name + "': " + std::strerror(err));
      }
      reg.peers[q] = static_cast<uint8_t*>(p);
    }
    own_.erase(it);
    group_->addRegistration(std::move(reg));
    return env.Undefined();
  }

  std::shared_ptr<Group> group_;
  Napi::ThreadSafeFunction tsfn_;
  AddonState* state_ = nullptr;
  int inFlight_ = 0;
  uint32_t nextId_ = 1;
  std::unordered_map<uint32_t, Pending*> live_;
  bool closed_ = false;
  std::map<int64_t, std::pair<uint8_t*, size_t>> own_;
};

Napi::Value ShmUnlink(const Napi::CallbackInfo& info) {
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  return Napi::Boolean::New(info.Env(), shm_unlink(name.c_str()) == 0);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* s = new AddonState();
  env.SetInstanceData<AddonState>(s);
  env.AddCleanupHook([s] {
    // Copy: Close() erases from the set.
    std::set<NativeGroup*> live = s->groups;
    for (NativeGroup* g : live) g->Close();
  });
  exports.Set("NativeGroup", NativeGroup::Define(env));
  exports.Set("shmUnlink", Napi::Function::New(env, ShmUnlink, "shmUnlink"));
  return exports;
}

}  // namespace

NODE_API_MODULE(ds_core_comm, Init)
