// The thread pool: workers sleep on a condition variable between jobs; a job is published by
// bumping a generation counter, and each worker takes the chunk numbered by its thread id.
#include "ds/pool.h"

#include <algorithm>

namespace ds {

ThreadPool::ThreadPool(int threads) {
  const int n = std::max(1, threads);
  scratch_.resize(static_cast<size_t>(n) * kScratchSlots);
  workers_.reserve(n - 1);
  for (int tid = 1; tid < n; ++tid) workers_.emplace_back([this, tid] { workerLoop(tid); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::runChunk(int chunk) {
  const int64_t begin = jobN_ * chunk / chunks_;
  const int64_t end = jobN_ * (chunk + 1) / chunks_;
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
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (tid >= chunks_) continue;  // this job has fewer chunks than threads
    }
    runChunk(tid);
    std::lock_guard<std::mutex> lock(mu_);
    if (--pending_ == 0) done_.notify_one();
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    jobN_ = n;
    chunks_ = chunks;
    pending_ = chunks - 1;
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  runChunk(0);
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
    err = error_;
    error_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
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
