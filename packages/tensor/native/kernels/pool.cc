// The thread pool. A job is published by storing (generation, chunk count) in one atomic word, and
// each worker takes the chunk numbered by its thread id. Between jobs a worker spins on that word for
// up to spinUs microseconds (DS_POOL_SPIN_US; env.ts's default is 5 ms when the host's ranks' threads
// fit its cores, else 200 us) before it sleeps on a condition variable, and the caller spins the same
// way for the workers to finish: a training step issues hundreds of kernels back to back, and waking
// a sleeping thread costs a futex call and, on a VM, an interrupt to a virtual CPU the hypervisor may
// have descheduled while it was idle (measured on a 2-vCPU VM: the reference GPT step went from
// 611 to 500 ms when the spin went from 200 us to 5 ms, the worker's sleeps from 72 a step to 0-2).
// OpenMP runtimes spin for the same reason (Intel's for 200 ms by default). A spin of 0 always sleeps.
#include "ds/pool.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>

namespace ds {
namespace {

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Spins until done() or until spinNs have passed; true if done() held.
template <class Done>
bool spinUntil(int64_t spinNs, Done done) {
  if (done()) return true;
  if (spinNs <= 0) return false;
  const int64_t end = nowNs() + spinNs;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      _mm_pause();
      if (done()) return true;
    }
    if (nowNs() >= end) return done();
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads, int64_t spinUs) : spin_ns_(spinUs * 1000) {
  const int n = std::max(1, threads);
  scratch_.resize(static_cast<size_t>(n) * kScratchSlots);
  workers_.reserve(n - 1);
  for (int tid = 1; tid < n; ++tid) workers_.emplace_back([this, tid] { workerLoop(tid); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::runChunk(int chunk, int chunks) {
  const int64_t begin = jobN_ * chunk / chunks;
  const int64_t end = jobN_ * (chunk + 1) / chunks;
  try {
    if (begin < end) (*job_)(begin, end, chunk);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::workerLoop(int tid) {
  uint64_t seen = 0;
  for (;;) {
    auto published = [&] { return stop_.load() || job_state_.load() >> 16 != seen >> 16; };
    if (!spinUntil(spin_ns_.load(std::memory_order_relaxed), published)) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1);
      wake_.wait(lock, published);
      sleepers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    // One load gives the generation and its chunk count together. A worker whose id is past the
    // count is not waited for, so by its next load the caller may have published a later job; one
    // whose id is within it is, so job_ and jobN_ stay this job's until it has counted down.
    seen = job_state_.load();
    const int chunks = static_cast<int>(seen & 0xffff);
    if (tid >= chunks) continue;
    runChunk(tid, chunks);
    if (pending_.fetch_sub(1) == 1 && caller_asleep_.load()) {
      std::lock_guard<std::mutex> lock(mu_);
      done_.notify_one();
    }
  }
}

void ThreadPool::parallelFor(int64_t n, int64_t grain, const Body& fn) {
  if (n <= 0) return;
  const int64_t g = std::max<int64_t>(1, grain);
  const int chunks = static_cast<int>(std::min<int64_t>(size(), (n + g - 1) / g));
  if (chunks <= 1) {
    fn(0, n, 0);
    return;
  }
  job_ = &fn;
  jobN_ = n;
  error_ = nullptr;
  pending_.store(chunks - 1);
  const uint64_t gen = (job_state_.load() >> 16) + 1;
  job_state_.store((gen << 16) | static_cast<uint64_t>(chunks));
  if (sleepers_.load() > 0) {
    // Taking the lock orders this notify after any sleeper's check of job_state_ under it.
    { std::lock_guard<std::mutex> lock(mu_); }
    wake_.notify_all();
  }
  runChunk(0, chunks);
  auto finished = [&] { return pending_.load() == 0; };
  if (!spinUntil(spin_ns_.load(std::memory_order_relaxed), finished)) {
    std::unique_lock<std::mutex> lock(mu_);
    caller_asleep_.store(true);
    done_.wait(lock, finished);
    caller_asleep_.store(false);
  }
  std::exception_ptr err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = nullptr;
    err = error_;
    error_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

void ThreadPool::parallelForDynamic(int64_t n, const Body& fn) {
  if (n <= 0) return;
  std::atomic<int64_t> next{0};
  // One chunk per thread (chunk == tid); each keeps taking indices until none is left.
  parallelFor(std::min<int64_t>(n, size()), 1, [&](int64_t, int64_t, int tid) {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i, i + 1, tid);
  });
}
void* ThreadPool::scratch(int tid, int slot, size_t bytes) {
  Buffer& b = scratch_.at(static_cast<size_t>(tid) * kScratchSlots + slot);
  if (b.bytes < bytes) {
    const size_t want = std::max(bytes, b.bytes + b.bytes / 2);
    b.raw.reset(new unsigned char[want + 64]);
    b.bytes = want;
    const auto addr = reinterpret_cast<uintptr_t>(b.raw.get());
    b.aligned = b.raw.get() + ((64 - (addr & 63)) & 63);
  }
  return b.aligned;
}

}  // namespace ds
