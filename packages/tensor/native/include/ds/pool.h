// A persistent thread pool: a statically chunked parallel-for, and a dynamic one built on it. The
// calling thread runs chunk 0 itself, so a pool of size 1 owns no threads. One pool per Node
// environment (held in the addon's instance data); kernels never start threads of their own and
// never nest parallelFor.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ds/cpu.h"

namespace ds {

class ThreadPool {
 public:
  // fn(begin, end, tid): one contiguous chunk of [0, n); tid in [0, size()) names the thread, for scratch.
  using Body = std::function<void(int64_t begin, int64_t end, int tid)>;
  static constexpr int kScratchSlots = 4;

  // spinUs: how long a thread spins waiting for the next job (or for a job's end) before it sleeps.
  ThreadPool(int threads, int64_t spinUs);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  void setSpinUs(int64_t us) { spin_ns_.store(us * 1000); }

  // Splits [0, n) into min(size(), ceil(n / grain)) near-equal contiguous chunks and runs them
  // concurrently; returns when all are done, rethrowing the first exception a chunk threw.
  void parallelFor(int64_t n, int64_t grain, const Body& fn);

  // Runs fn(i, i + 1, tid) for every i in [0, n), each index taken by whichever thread is free next
  // (in increasing order, from one atomic counter), so a thread the machine slows down (a core shared
  // with another VM) takes fewer of them instead of holding the others up at the end. fn may run
  // several times on one tid.
  void parallelForDynamic(int64_t n, const Body& fn);

  // A 64-byte aligned buffer of at least `bytes` owned by thread `tid`, kept between calls.
  void* scratch(int tid, int slot, size_t bytes);

 private:
  struct Buffer {
    std::unique_ptr<unsigned char[]> raw;
    size_t bytes = 0;
    unsigned char* aligned = nullptr;
  };
  void workerLoop(int tid);
  void runChunk(int chunk, int chunks);

  std::vector<std::thread> workers_;
  std::vector<Buffer> scratch_;  // size() * kScratchSlots
  // Waiting: a thread first spins on the atomics below for up to spinNs_, then sleeps on a condition
  // variable (mu_); the sleeper counts let the other side skip the futex call when nobody sleeps.
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::atomic<uint64_t> job_state_{0};  // (generation << 16) | chunks of the published job
  std::atomic<int> pending_{0};         // chunks of the current job the workers have not finished
  std::atomic<int> sleepers_{0};        // workers asleep on wake_
  std::atomic<bool> caller_asleep_{false};
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> spin_ns_;
  const Body* job_ = nullptr;
  int64_t jobN_ = 0;
  std::exception_ptr error_;
};

// What every kernel entry point receives: the ISA to run at and the pool to run on.
struct Ctx {
  Isa isa;
  ThreadPool* pool;
  bool bf16Dot;  // AVX512_BF16 present (vdpbf16ps); used by bf16 GEMM when isa >= Avx512
};

}  // namespace ds
