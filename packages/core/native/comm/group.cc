// Group lifetime: mapping the segment, the executor threads, failure state and registrations.
#include "ds/comm/group.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds/comm/sync.h"
#include "runner.h"
#include "tcp.h"

namespace ds::comm {

Executor::Executor() : thread_([this] { loop(); }) {}
Executor::~Executor() { stop(); }

void Executor::post(std::function<void()> job) {
  queued_.fetch_add(1, std::memory_order_acq_rel);
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void Executor::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Executor::loop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping and drained
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
    queued_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

namespace {
std::string sysError(const std::string& what, const std::string& name, int err) {
  return what + " '" + name + "': " + std::strerror(err);
}
}  // namespace

Group::Group(const std::string& name, int rank, int size, bool create, size_t chunkBytes, size_t p2pBytes, int spin)
    : rank_(rank), size_(size), chunkBytes_(chunkBytes), p2pBytes_(p2pBytes), spin_(spin) {
  const int fd = shm_open(name.c_str(), create ? (O_CREAT | O_EXCL | O_RDWR) : O_RDWR, 0600);
  if (fd < 0) throw std::runtime_error(sysError(create ? "cannot create shared memory" : "cannot open shared memory", name, errno));
  size_t total = 0;
  if (create) {
    total = segmentBytes(size, chunkBytes, p2pBytes);
    // Reserve the pages now: a tmpfs that runs out later would kill us with SIGBUS on first touch.
    int rc = ftruncate(fd, static_cast<off_t>(total)) == 0 ? posix_fallocate(fd, 0, static_cast<off_t>(total)) : errno;
    if (rc != 0) {
      close(fd);
      shm_unlink(name.c_str());
      throw std::runtime_error(sysError("cannot reserve " + std::to_string(total) + " bytes (is /dev/shm full?) for", name, rc));
    }
  } else {
    struct stat st;
    if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < kPage) {
      close(fd);
      throw std::runtime_error("shared memory '" + name + "' is too small to be a ds comm segment");
    }
    total = static_cast<size_t>(st.st_size);
  }
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int mapErr = errno;
  close(fd);
  if (p == MAP_FAILED) throw std::runtime_error(sysError("cannot map shared memory", name, mapErr));
  base_ = static_cast<uint8_t*>(p);
  bytes_ = total;
  auto* h = reinterpret_cast<SegHeader*>(base_);
  if (create) {
    h->nranks = static_cast<uint32_t>(size);
    h->chunkBytes = chunkBytes;
    h->p2pBytes = p2pBytes;
    h->totalBytes = total;
    std::atomic_thread_fence(std::memory_order_release);
    h->magic = kMagic;
  } else {
    if (h->magic != kMagic || h->nranks != static_cast<uint32_t>(size) || h->totalBytes != total) {
      munmap(base_, bytes_);
      base_ = nullptr;
      throw std::runtime_error("shared memory '" + name + "' does not hold a ds comm segment for " + std::to_string(size) + " ranks");
    }
    chunkBytes_ = h->chunkBytes;
    p2pBytes_ = h->p2pBytes;
  }
  channelStride_ = alignUp(kPage + 2 * (sizeof(ChunkHeader) + p2pBytes_), kPage);
  slots_ = base_ + kPage + static_cast<size_t>(size) * kPage;
  channels_ = slots_ + alignUp(static_cast<size_t>(size) * kSlotBufs * chunkBytes_, kPage);
  ctl(rank)->pid = static_cast<int32_t>(getpid());
  sendChunks_.assign(size, 0);
  recvChunks_.assign(size, 0);
  fullSends_.reset(new std::atomic<int>[size]());
  coll_ = std::make_unique<Executor>();
}

Group::Group(int rank, int size, size_t chunkBytes, const std::string& bindHost)
    : rank_(rank), size_(size), chunkBytes_(chunkBytes), p2pBytes_(chunkBytes), channelStride_(0), spin_(0), tcp_(true) {
  listenFd_ = tcpListen(bindHost, &port_);
  collFd_.assign(size, -1);
  p2pOut_.assign(size, -1);
  p2pIn_.assign(size, -1);
  tcpHdr_.resize(size);
  tcpTmp_.resize(static_cast<size_t>(size) * chunkBytes);
  sendChunks_.assign(size, 0);
  recvChunks_.assign(size, 0);
  fullSends_.reset(new std::atomic<int>[size]());
  coll_ = std::make_unique<Executor>();
}

Group::~Group() { shutdown(); }

Executor* Group::executorFor(const Op* op) {
  if (op->kind != OpKind::Send && op->kind != OpKind::Recv) return coll_.get();
  // Each direction to each peer gets its own thread, so a send never waits behind a recv (the
  // pattern of pipeline stages exchanging activations and gradients at once).
  const int key = op->root * 2 + (op->kind == OpKind::Send ? 0 : 1);
  std::lock_guard<std::mutex> lock(execMu_);
  auto& slot = p2p_[key];
  if (!slot) slot = std::make_unique<Executor>();
  return slot.get();
}

bool Group::channelIdle(const Op* op) {
  const int key = op->root * 2 + (op->kind == OpKind::Send ? 0 : 1);
  std::lock_guard<std::mutex> lock(execMu_);
  auto it = p2p_.find(key);
  return it == p2p_.end() || it->second->idle();
}

bool Group::sendEager(Op* op) {
  if (tcp_ || op->kind != OpKind::Send || failed_.load() || stopping_.load()) return false;
  if (fullSends_[op->root].load(std::memory_order_acquire) != 0) return false;
  return Runner(*this, *op).sendEager();
}

bool Group::recvHere(Op* op, int64_t pollUs) {
  if (tcp_ || op->kind != OpKind::Recv || !channelIdle(op)) return false;
  const int64_t t0 = nowUs();
  Runner runner(*this, *op);
  if (pollUs > 0) runner.pollFirst(pollUs);
  runner.run();
  op->execMs = static_cast<double>(nowUs() - t0) / 1000.0;
  op->finished.store(true);
  return true;
}

void Group::submit(Op* op, std::function<void(Op*)> done) {
  const bool writes = !tcp_ && op->kind == OpKind::Send && !op->ackOnly;
  if (writes) fullSends_[op->root].fetch_add(1, std::memory_order_acq_rel);
  executorFor(op)->post([this, op, done, writes] {
    const int64_t t0 = nowUs();
    run(op);
    if (writes) fullSends_[op->root].fetch_sub(1, std::memory_order_acq_rel);
    op->execMs = static_cast<double>(nowUs() - t0) / 1000.0;
    {
      std::lock_guard<std::mutex> lock(doneMu_);
      op->finished.store(true);
    }
    doneCv_.notify_all();
    done(op);
  });
}

bool Group::waitFinished(const Op* op, int64_t timeoutUs) {
  std::unique_lock<std::mutex> lock(doneMu_);
  return doneCv_.wait_for(lock, std::chrono::microseconds(timeoutUs), [op] { return op->finished.load(); });
}

void Group::abortGroup(const std::string& reason, ErrKind kind) {
  {
    std::lock_guard<std::mutex> lock(failMu_);
    if (failed_.load()) return;
    failure_ = reason;
    failed_.store(true);
  }
  if (tcp_) {
    // Peers learn of the failure when their sockets to us reach end of file.
    for (auto* fds : {&collFd_, &p2pOut_, &p2pIn_})
      for (int fd : *fds)
        if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    return;
  }
  if (!base_) return;
  RankCtl* me = ctl(rank_);
  std::strncpy(me->reason, reason.c_str(), sizeof me->reason - 1);
  me->reason[sizeof me->reason - 1] = 0;
  me->abort.store(static_cast<uint32_t>(kind), std::memory_order_seq_cst);
}

void Group::shutdown() {
  if (stopping_.exchange(true)) return;
  coll_->stop();
  {
    std::lock_guard<std::mutex> lock(execMu_);
    for (auto& [key, ex] : p2p_) ex->stop();
  }
  {
    std::lock_guard<std::mutex> lock(regMu_);
    for (auto& reg : regs_)
      for (int q = 0; q < size_; q++)
        if (q != rank_ && reg.peers[q]) munmap(reg.peers[q], reg.bytes);
    regs_.clear();
  }
  if (base_) munmap(base_, bytes_);
  base_ = nullptr;
  for (auto* fds : {&collFd_, &p2pOut_, &p2pIn_}) {
    for (int fd : *fds)
      if (fd >= 0) close(fd);
    fds->assign(fds->size(), -1);
  }
  if (listenFd_ >= 0) close(listenFd_);
  listenFd_ = -1;
}

void Group::addRegistration(Registration reg) {
  std::lock_guard<std::mutex> lock(regMu_);
  regs_.push_back(std::move(reg));
}

void Group::dropRegistration(int64_t id) {
  std::lock_guard<std::mutex> lock(regMu_);
  for (auto it = regs_.begin(); it != regs_.end(); ++it) {
    if (it->id != id) continue;
    for (int q = 0; q < size_; q++)
      if (q != rank_ && it->peers[q]) munmap(it->peers[q], it->bytes);
    regs_.erase(it);
    return;
  }
}

}  // namespace ds::comm
