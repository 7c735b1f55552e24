// The aio addon's one binding file. Arguments are validated in TypeScript (src/engine.ts) and checked
// again here for anything that could touch memory out of bounds; failures come back as errno records
// (TypeScript turns them into DSIOError naming file, offset and errno), never as aborts. Per-environment
// state lives in SetInstanceData; the cleanup hook joins every engine's threads.
#include <napi.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>

#include "ds/aio/engine.h"

namespace {

using ds::aio::Config;
using ds::aio::Engine;
using ds::aio::File;
using ds::aio::Kind;
using ds::aio::Request;

class AioEngine;

struct AddonState {
  std::set<AioEngine*> engines;
};

/** A request in flight plus what keeps its JS buffer alive and settles its promise. */
struct Pending {
  Request req;
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference bufRef;
  AioEngine* owner = nullptr;
  uint32_t id = 0;
  bool done = false;  // guarded by the owner's mutex
  explicit Pending(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

Napi::Object errorRecord(Napi::Env env, const Request& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("errno", Napi::Number::New(env, r.err));
  o.Set("code", Napi::String::New(env, std::strerror(r.err)));
  o.Set("offset", Napi::Number::New(env, static_cast<double>(r.errOffset)));
  o.Set("what", Napi::String::New(env, r.errWhat));
  o.Set("path", Napi::String::New(env, r.file ? r.file->path : std::string()));
  return o;
}

class AioEngine : public Napi::ObjectWrap<AioEngine> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "AioEngine",
                       {InstanceMethod("open", &AioEngine::Open), InstanceMethod("reserve", &AioEngine::Reserve),
                        InstanceMethod("closeFile", &AioEngine::CloseFile), InstanceMethod("submit", &AioEngine::Submit),
                        InstanceMethod("isDone", &AioEngine::IsDone), InstanceMethod("waitSync", &AioEngine::WaitSync),
                        InstanceMethod("backend", &AioEngine::Backend), InstanceMethod("uringErrno", &AioEngine::UringErrno),
                        InstanceMethod("close", &AioEngine::CloseJs)});
  }

  // new AioEngine(blockSize, queueDepth, threads, singleSubmit, overlapEvents, useUring)
  AioEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AioEngine>(info) {
    Napi::Env env = info.Env();
    Config cfg;
    const double block = info[0].As<Napi::Number>().DoubleValue();
    const double qd = info[1].As<Napi::Number>().DoubleValue();
    const double threads = info[2].As<Napi::Number>().DoubleValue();
    if (block < ds::aio::kAlign || block > (1 << 30) || static_cast<size_t>(block) % ds::aio::kAlign != 0) throw Napi::RangeError::New(env, "AioEngine: block size out of range");
    if (qd < 1 || qd > 1024 || threads < 1 || threads > 64) throw Napi::RangeError::New(env, "AioEngine: queue depth or threads out of range");
    cfg.blockSize = static_cast<size_t>(block);
    cfg.queueDepth = static_cast<unsigned>(qd);
    cfg.threads = static_cast<unsigned>(threads);
    cfg.singleSubmit = info[3].As<Napi::Boolean>().Value();
    cfg.overlapEvents = info[4].As<Napi::Boolean>().Value();
    cfg.useUring = info[5].As<Napi::Boolean>().Value();
    engine_ = std::make_unique<Engine>(cfg, &uringErr_);
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "ds-aio", 0, 1);
    tsfn_.Unref(env);
    state_ = env.GetInstanceData<AddonState>();
    state_->engines.insert(this);
  }

  ~AioEngine() override { Close(); }

  /** Joins the I/O threads (queued work finishes first); also run from the environment cleanup hook. */
  void Close() {
    if (closed_) return;
    closed_ = true;
    engine_->shutdown();
    tsfn_.Release();
    if (state_) state_->engines.erase(this);
  }

 private:
  Napi::Value Backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), engine_->usesUring() ? "io_uring" : "threads"); }
  Napi::Value UringErrno(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), -uringErr_); }

  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    Close();
    return info.Env().Undefined();
  }

  // open(path, write, create, direct) -> [id, openErrno, directErrno]; id -1 when the file could not be opened.
  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    const bool write = info[1].As<Napi::Boolean>().Value();
    const bool create = info[2].As<Napi::Boolean>().Value();
    const bool direct = info[3].As<Napi::Boolean>().Value();
    const int flags = (write ? O_RDWR : O_RDONLY) | (create ? O_CREAT : 0) | O_CLOEXEC;
    auto f = std::make_shared<File>();
    f->path = path;
    f->fdBuffered = ::open(path.c_str(), flags, 0600);
    Napi::Array out = Napi::Array::New(env, 3);
    if (f->fdBuffered < 0) {
      out.Set(0u, Napi::Number::New(env, -1));
      out.Set(1u, Napi::Number::New(env, errno));
      out.Set(2u, Napi::Number::New(env, 0));
      return out;
    }
    int directErr = 0;
    if (direct) {
      f->fdDirect = ::open(path.c_str(), (flags & ~O_CREAT) | O_DIRECT, 0600);
      if (f->fdDirect < 0) directErr = errno;
    }
    const uint32_t id = nextFile_++;
    files_[id] = f;
    out.Set(0u, Napi::Number::New(env, id));
    out.Set(1u, Napi::Number::New(env, 0));
    out.Set(2u, Napi::Number::New(env, directErr));
    return out;
  }

  std::shared_ptr<File> file(Napi::Env env, const Napi::Value& v) {
    auto it = files_.find(v.As<Napi::Number>().Uint32Value());
    if (it == files_.end()) throw Napi::Error::New(env, "aio: no such open file");
    return it->second;
  }

  // reserve(id, bytes) -> errno: the file gets `bytes` of allocated space (posix_fallocate; ftruncate
  // where the file system has no fallocate), so a full disk fails here rather than mid-swap.
  Napi::Value Reserve(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto f = file(env, info[0]);
    const double bytes = info[1].As<Napi::Number>().DoubleValue();
    if (bytes < 0 || bytes > 9.0e15) throw Napi::RangeError::New(env, "reserve: size out of range");
    int e = posix_fallocate(f->fdBuffered, 0, static_cast<off_t>(bytes));
    if (e == EOPNOTSUPP || e == EINVAL) e = ftruncate(f->fdBuffered, static_cast<off_t>(bytes)) == 0 ? 0 : errno;
    return Napi::Number::New(env, e);
  }

  Napi::Value CloseFile(const Napi::CallbackInfo& info) {
    // In-flight requests hold the File; its descriptors close when the last one finishes.
    files_.erase(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }

  // submit(kind 0 read / 1 write, fileId, typedArray, fileOffset) -> [promise, id]
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, "aio: engine is closed");
    const int kind = info[0].As<Napi::Number>().Int32Value();
    auto f = file(env, info[1]);
    if (!info[2].IsTypedArray()) throw Napi::TypeError::New(env, "submit: buffer must be a typed array");
    auto ta = info[2].As<Napi::TypedArray>();
    const double offset = info[3].As<Napi::Number>().DoubleValue();
    if (offset < 0 || offset > 9.0e15) throw Napi::RangeError::New(env, "submit: offset out of range");
    auto p = std::make_unique<Pending>(env);
    p->owner = this;
    p->req.kind = kind == 1 ? Kind::Write : Kind::Read;
    p->req.file = f;
    p->req.offset = static_cast<uint64_t>(offset);
    p->req.bytes = ta.ByteLength();
    p->req.data = ta.ByteLength() == 0 ? nullptr : static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    p->bufRef = Napi::Persistent(info[2].As<Napi::Object>());
    Napi::Promise promise = p->deferred.Promise();
    if (inFlight_++ == 0) tsfn_.Ref(env);
    Pending* raw = p.release();
    raw->id = nextReq_++;
    {
      std::lock_guard<std::mutex> lock(mu_);
      live_[raw->id] = raw;
    }
    auto tsfn = tsfn_;
    raw->req.onDone = [raw, tsfn](Request*) mutable {
      // Runs on an I/O thread: mark it done for waitSync, then hand it to the JS thread.
      AioEngine* self = raw->owner;
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        raw->done = true;
      }
      self->cv_.notify_all();
      tsfn.NonBlockingCall(raw, [](Napi::Env env, Napi::Function, Pending* done) { done->owner->Deliver(env, done); });
    };
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, promise);
    out.Set(1u, Napi::Number::New(env, raw->id));
    engine_->submit(&raw->req);
    return out;
  }

  void Deliver(Napi::Env env, Pending* raw) {
    std::unique_ptr<Pending> p(raw);
    {
      std::lock_guard<std::mutex> lock(mu_);
      live_.erase(p->id);
    }
    if (--inFlight_ == 0 && !closed_) tsfn_.Unref(env);
    if (p->req.err == 0) p->deferred.Resolve(env.Undefined());
    else p->deferred.Reject(errorRecord(env, p->req));
  }

  Napi::Value IsDone(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(info[0].As<Napi::Number>().Uint32Value());
    return Napi::Boolean::New(info.Env(), it == live_.end() || it->second->done);
  }

  // waitSync(id, timeoutMs) -> null (done, or already delivered), an error record, or "timeout".
  Napi::Value WaitSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint32_t id = info[0].As<Napi::Number>().Uint32Value();
    const double ms = info[1].As<Napi::Number>().DoubleValue();
    std::unique_lock<std::mutex> lock(mu_);
    auto it = live_.find(id);
    if (it == live_.end()) return env.Null();
    Pending* p = it->second;
    const bool ok = cv_.wait_for(lock, std::chrono::milliseconds(static_cast<int64_t>(ms)), [&] { return p->done; });
    if (!ok) return Napi::String::New(env, "timeout");
    if (p->req.err == 0) return env.Null();
    return errorRecord(env, p->req);
  }

  std::unique_ptr<Engine> engine_;
  int uringErr_ = 0;
  Napi::ThreadSafeFunction tsfn_;
  AddonState* state_ = nullptr;
  bool closed_ = false;
  int inFlight_ = 0;
  uint32_t nextReq_ = 1;
  uint32_t nextFile_ = 1;
  std::map<uint32_t, std::shared_ptr<File>> files_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint32_t, Pending*> live_;
};

// allocAligned(bytes) -> ArrayBuffer on 4096-byte-aligned memory (freed when the buffer is collected),
// so O_DIRECT transfers need no bounce copy.
Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double bytes = info[0].As<Napi::Number>().DoubleValue();
  if (bytes < 0 || bytes > 64.0 * (1ull << 30)) throw Napi::RangeError::New(env, "allocAligned: size out of range");
  const size_t n = bytes == 0 ? ds::aio::kAlign : static_cast<size_t>(bytes);
  void* p = nullptr;
  if (posix_memalign(&p, ds::aio::kAlign, (n + ds::aio::kAlign - 1) / ds::aio::kAlign * ds::aio::kAlign) != 0) throw Napi::Error::New(env, "allocAligned: out of memory");
  std::memset(p, 0, n);
  return Napi::ArrayBuffer::New(env, p, static_cast<size_t>(bytes), [](Napi::Env, void* data) { free(data); });
}

// lockMemory(arrayBuffer, lock) -> errno: mlock/munlock of the buffer's pages (pin_memory of the cpu tier).
Napi::Value LockMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "lockMemory: an ArrayBuffer is expected");
  auto ab = info[0].As<Napi::ArrayBuffer>();
  const bool lock = info[1].As<Napi::Boolean>().Value();
  if (ab.ByteLength() == 0 || ab.Data() == nullptr) return Napi::Number::New(env, 0);
  const int r = lock ? mlock(ab.Data(), ab.ByteLength()) : munlock(ab.Data(), ab.ByteLength());
  return Napi::Number::New(env, r == 0 ? 0 : errno);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* s = new AddonState();
  env.SetInstanceData<AddonState>(s);
  env.AddCleanupHook([s] {
    std::set<AioEngine*> live = s->engines;
    for (AioEngine* e : live) e->Close();
  });
  exports.Set("AioEngine", AioEngine::Define(env));
  exports.Set("allocAligned", Napi::Function::New(env, AllocAligned, "allocAligned"));
  exports.Set("lockMemory", Napi::Function::New(env, LockMemory, "lockMemory"));
  return exports;
}

}  // namespace

NODE_API_MODULE(ds_offload_aio, Init)
