// The I/O threads. An io_uring worker keeps up to queue_depth chunks in flight on its own ring:
// with overlap_events it tops the ring up as completions arrive, without it it submits a batch and
// reaps all of it before the next; single_submit makes one io_uring_enter per chunk instead of one
// per batch. A thread worker (the fallback) transfers one chunk at a time with pread/pwrite.
#include "ds/aio/engine.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "ds/aio/ring.h"

namespace ds::aio {

File::~File() {
  if (fdDirect >= 0) close(fdDirect);
  if (fdBuffered >= 0) close(fdBuffered);
}

void Request::fail(int e, uint64_t at, const char* what) {
  std::lock_guard<std::mutex> lock(mu);
  if (err != 0) return;
  err = e;
  errOffset = at;
  errWhat = what;
}

void chunkDone(Chunk* c) {
  Request* r = c->req;
  delete c;
  if (r->left.fetch_sub(1, std::memory_order_acq_rel) == 1) r->onDone(r);
}

namespace {

int fdOf(const Chunk* c) { return c->direct ? c->req->file->fdDirect : c->req->file->fdBuffered; }

bool aligned(const void* p) { return (reinterpret_cast<uintptr_t>(p) & (kAlign - 1)) == 0; }

uint8_t* alignedAlloc(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, kAlign, bytes) != 0) return nullptr;
  return static_cast<uint8_t*>(p);
}

}  // namespace

void transferSync(Chunk* c, size_t from, uint8_t* bounce) {
  Request* r = c->req;
  const bool write = r->kind == Kind::Write;
  const bool viaBounce = c->direct && !aligned(c->data);
  if (viaBounce && bounce == nullptr) {
    r->fail(ENOMEM, c->offset, "aligned bounce buffer");
    return;
  }
  // A direct transfer resumed mid-chunk may be unaligned: finish it through the buffered descriptor.
  const bool direct = c->direct && from % kAlign == 0;
  const int fd = direct ? r->file->fdDirect : r->file->fdBuffered;
  uint8_t* mem = viaBounce && direct ? bounce : c->data;
  if (viaBounce && direct && write) std::memcpy(bounce + from, c->data + from, c->bytes - from);
  size_t done = from;
  while (done < c->bytes) {
    const ssize_t n = write ? pwrite(fd, mem + done, c->bytes - done, static_cast<off_t>(c->offset + done))
                            : pread(fd, mem + done, c->bytes - done, static_cast<off_t>(c->offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      r->fail(errno, c->offset + done, write ? "pwrite" : "pread");
      return;
    }
    if (n == 0) {
      r->fail(write ? EIO : ENODATA, c->offset + done, write ? "pwrite wrote nothing" : "short read at end of file");
      return;
    }
    done += static_cast<size_t>(n);
    if (direct && done % kAlign != 0 && done < c->bytes) {
      // A short direct transfer: the rest is unaligned, go on buffered from the caller's memory.
      if (viaBounce && !write) std::memcpy(c->data + from, bounce + from, done - from);
      transferSync(c, done, nullptr);
      return;
    }
  }
  if (viaBounce && direct && !write) std::memcpy(c->data + from, bounce + from, c->bytes - from);
}

class Worker {
 public:
  virtual ~Worker() = default;
  void push(Chunk* c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(c);
    }
    cv_.notify_one();
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 protected:
  /** Takes up to `most` queued chunks; blocks while none is queued and `block` holds; empty at stop. */
  std::vector<Chunk*> take(size_t most, bool block) {
    std::unique_lock<std::mutex> lock(mu_);
    if (block) cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    std::vector<Chunk*> out;
    while (!queue_.empty() && out.size() < most) {
      out.push_back(queue_.front());
      queue_.pop_front();
    }
    return out;
  }
  bool stopping() {
    std::lock_guard<std::mutex> lock(mu_);
    return stop_ && queue_.empty();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Chunk*> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

/** The fallback: `n` threads sharing one queue, each with its own bounce buffer. */
class ThreadWorker : public Worker {
 public:
  ThreadWorker(size_t blockSize, unsigned n) {
    for (unsigned i = 0; i < n; i++) threads_.emplace_back([this, blockSize] { run(blockSize); });
  }

 private:
  void run(size_t blockSize) {
    uint8_t* bounce = alignedAlloc(blockSize);
    for (;;) {
      std::vector<Chunk*> got = take(1, true);
      if (got.empty()) {
        if (stopping()) break;
        continue;
      }
      transferSync(got[0], 0, bounce);
      chunkDone(got[0]);
    }
    free(bounce);
  }
};

/** One io_uring with queue_depth chunks in flight. */
class UringWorker : public Worker {
 public:
  /** Returns nullptr and sets *err when the ring cannot be set up. */
  static std::unique_ptr<UringWorker> make(const Config& cfg, int* err) {
    std::unique_ptr<UringWorker> w(new UringWorker(cfg));
    *err = w->ring_.init(cfg.queueDepth);
    if (*err != 0) return nullptr;
    for (unsigned i = 0; i < cfg.queueDepth; i++) {
      uint8_t* b = alignedAlloc(cfg.blockSize);
      if (b == nullptr) {
        *err = -ENOMEM;
        return nullptr;
      }
      w->free_.push_back(b);
    }
    w->all_ = w->free_;
    w->threads_.emplace_back([p = w.get()] { p->run(); });
    return w;
  }
  ~UringWorker() override {
    for (uint8_t* b : all_) free(b);
  }

 private:
  struct Slot {
    Chunk* chunk;
    uint8_t* bounce;  // aligned buffer in use, or nullptr
    iovec iov;
  };

  explicit UringWorker(const Config& cfg) : cfg_(cfg) {}

  void prepare(Chunk* c) {
    Slot* s = new Slot{c, nullptr, {c->data, c->bytes}};
    if (c->direct && !aligned(c->data)) {
      s->bounce = free_.back();
      free_.pop_back();
      if (c->req->kind == Kind::Write) std::memcpy(s->bounce, c->data, c->bytes);
      s->iov.iov_base = s->bounce;
    }
    io_uring_sqe* sqe = ring_.next();  // never null: in-flight <= queue_depth = ring size
    sqe->opcode = c->req->kind == Kind::Write ? IORING_OP_WRITEV : IORING_OP_READV;
    sqe->fd = fdOf(c);
    sqe->addr = reinterpret_cast<uint64_t>(&s->iov);
    sqe->len = 1;
    sqe->off = c->offset;
    sqe->user_data = reinterpret_cast<uint64_t>(s);
    inflight_++;
    unsent_.push_back(s);
    if (cfg_.singleSubmit) submit(0);
  }

  /** Hands prepared entries to the kernel (waiting for `waitMin` completions); records a fatal errno. */
  void submit(unsigned waitMin) {
    const int took = ring_.enter(ring_.pending(), waitMin);
    if (took >= 0) {
      unsent_.erase(unsent_.begin(), unsent_.begin() + (took < static_cast<int>(unsent_.size()) ? took : static_cast<int>(unsent_.size())));
    } else if (took != -EAGAIN && took != -EBUSY) {
      fatal_ = -took;
    }
  }

  void finish(Slot* s) {
    Chunk* c = s->chunk;
    inflight_--;
    if (s->bounce) free_.push_back(s->bounce);
    delete s;
    chunkDone(c);
  }

  void complete(const io_uring_cqe& cqe) {
    Slot* s = reinterpret_cast<Slot*>(cqe.user_data);
    Chunk* c = s->chunk;
    const bool write = c->req->kind == Kind::Write;
    if (cqe.res == -EAGAIN || cqe.res == -EINTR) {
      // The kernel gave the request back: do it synchronously on this thread instead.
      transferSync(c, 0, s->bounce);
    } else if (cqe.res < 0) {
      c->req->fail(-cqe.res, c->offset, write ? "io_uring write" : "io_uring read");
    } else {
      const size_t got = static_cast<size_t>(cqe.res);
      if (s->bounce && !write) std::memcpy(c->data, s->bounce, got < c->bytes ? got : c->bytes);
      if (got == 0 && c->bytes > 0) {
        c->req->fail(write ? EIO : ENODATA, c->offset, write ? "io_uring write wrote nothing" : "short read at end of file");
      } else if (got < c->bytes) {
        // A short transfer: finish the rest synchronously on this thread.
        transferSync(c, got, s->bounce);
      }
    }
    finish(s);
  }

  /** Completes what is ready, waiting until `waitFor` completions have arrived. */
  void reap(unsigned waitFor) {
    io_uring_cqe cqe;
    unsigned got = 0;
    for (;;) {
      if (ring_.pop(&cqe)) {
        complete(cqe);
        got++;
        continue;
      }
      if (got >= waitFor || fatal_ != 0) return;
      submit(1);
    }
  }

  /** The ring refused work (io_uring_enter failed): fail what it never took, and whatever comes next. */
  void failUnsent() {
    for (Slot* s : unsent_) {
      s->chunk->req->fail(fatal_, s->chunk->offset, "io_uring_enter");
      finish(s);
    }
    unsent_.clear();
  }

  void run() {
    for (;;) {
      const size_t room = cfg_.queueDepth - inflight_;
      // Idle: block for work. Busy: take what is queued now, then wait for a completion.
      std::vector<Chunk*> got = (cfg_.overlapEvents || inflight_ == 0) && room > 0 ? take(room, inflight_ == 0) : std::vector<Chunk*>{};
      if (got.empty() && inflight_ == 0) {
        if (stopping()) break;
        continue;
      }
      if (fatal_ != 0) {
        for (Chunk* c : got) {
          c->req->fail(fatal_, c->offset, "io_uring_enter");
          chunkDone(c);
        }
        // Submitted entries still belong to the kernel: poll for their completions.
        reap(0);
        if (inflight_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      for (Chunk* c : got) prepare(c);
      if (!cfg_.singleSubmit && ring_.pending() > 0) submit(0);
      if (fatal_ != 0) {
        failUnsent();
        continue;
      }
      // overlap_events: reap one and top up; otherwise drain the whole batch first.
      reap(cfg_.overlapEvents ? 1 : inflight_);
    }
  }

  Config cfg_;
  Ring ring_;
  unsigned inflight_ = 0;
  int fatal_ = 0;
  std::vector<Slot*> unsent_;
  std::vector<uint8_t*> free_;
  std::vector<uint8_t*> all_;
};

Engine::Engine(const Config& cfg, int* uringErr) : cfg_(cfg) {
  *uringErr = 0;
  if (cfg_.useUring) {
    for (unsigned i = 0; i < cfg_.threads; i++) {
      int err = 0;
      auto w = UringWorker::make(cfg_, &err);
      if (!w) {
        *uringErr = err;
        for (auto& made : workers_) made->stop();
        workers_.clear();
        break;
      }
      workers_.push_back(std::move(w));
    }
    uring_ = !workers_.empty();
  }
  if (!uring_) {
    // Each of the intra_op threads keeps queue_depth transfers going: that many blocking threads.
    const unsigned n = cfg_.threads * cfg_.queueDepth;
    workers_.push_back(std::make_unique<ThreadWorker>(cfg_.blockSize, n > 64 ? 64 : n));
  }
}

Engine::~Engine() { shutdown(); }

void Engine::shutdown() {
  if (down_) return;
  down_ = true;
  for (auto& w : workers_) w->stop();
}

void Engine::submit(Request* r) {
  // Chunks of block_size from the request's start; a 4096-aligned span goes direct, an unaligned tail buffered.
  std::vector<Chunk*> chunks;
  const bool canDirect = r->file->fdDirect >= 0 && r->offset % kAlign == 0;
  for (size_t at = 0; at < r->bytes;) {
    const size_t n = r->bytes - at < cfg_.blockSize ? r->bytes - at : cfg_.blockSize;
    const size_t head = canDirect ? n - n % kAlign : 0;
    if (head > 0) chunks.push_back(new Chunk{r, r->data + at, head, r->offset + at, true});
    if (n > head) chunks.push_back(new Chunk{r, r->data + at + head, n - head, r->offset + at + head, false});
    at += n;
  }
  if (chunks.empty()) {
    r->left.store(1);
    chunkDone(new Chunk{r, nullptr, 0, r->offset, false});
    return;
  }
  r->left.store(chunks.size());
  const size_t start = rotate_.fetch_add(1);
  for (size_t i = 0; i < chunks.size(); i++) workers_[(start + i) % workers_.size()]->push(chunks[i]);
}

}  // namespace ds::aio
