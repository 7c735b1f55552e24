// One NCCL communicator and the thread that owns it.
//
// Each group gets its own worker thread, its own non-blocking CUDA stream (the communication stream)
// and a non-blocking NCCL communicator (config.blocking = 0). The worker is the only thread that
// calls NCCL for its communicator: it issues the ops in submission order, polls their completion
// events, polls ncclCommGetAsyncError, enforces each op's deadline and, when something fails or a
// deadline passes, calls ncclCommAbort. Because the communicator is non-blocking, no NCCL call can
// hold the worker past a deadline (a call that must wait for peers returns ncclInProgress and the
// worker polls it), so the watchdog and the issuer can safely be one thread and no other thread
// ever touches a communicator that may have been aborted.
//
// Ordering against compute: when an op is submitted (on the JS thread) an event is recorded on the
// compute stream; the communication stream waits for it before the NCCL kernel, so the kernel reads
// what the compute work before it wrote, while later compute runs on. A second event after the
// kernel marks completion; the Work resolves when the worker sees it, and compute that reads the
// result is queued only after that (host-side ordering).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ds/nccl/api.h"

namespace ds::nccl {

/** The op codes shared with TypeScript (core's OP_CODE), then the two lifecycle ops of a communicator. */
enum class OpKind : int { Barrier = 0, AllReduce = 1, ReduceScatter = 2, AllGather = 3, Broadcast = 4, AllToAll = 5, Send = 6, Recv = 7, Create = 8, Close = 9 };

/** How an op failed; the TypeScript side maps Timeout to DSTimeoutError and the rest to DSCommError. */
enum class ErrKind : int { None = 0, Timeout = 1, Nccl = 2, Aborted = 3, Cuda = 4, Setup = 5 };

struct Op {
  OpKind kind = OpKind::Barrier;
  uint32_t seq = 0;
  int dtype = ncclFloat32;  // NCCL's code
  size_t elemSize = 4;
  int redop = ncclSum;  // NCCL's code
  /**
   * allReduce, broadcast, send, recv: elements of the buffer; reduceScatter: of the output (one
   * block); allGather: of the input (one block); allToAll: of the whole input.
   */
  uint64_t count = 0;
  int peer = 0;  // broadcast root, send dst, recv src
  int64_t timeoutUs = 0;
  uintptr_t in = 0, out = 0;  // device pointers
  cudaEvent_t ready = nullptr, start = nullptr, done = nullptr;

  // Filled as the op runs.
  int64_t submitUs = 0, deadlineUs = 0;
  std::atomic<bool> finished{false};
  ErrKind err = ErrKind::None;
  std::string message;
  double execMs = 0;
  /** Called once on the worker (or the submitting thread) when the op is over; hands it back to JavaScript. */
  std::function<void(Op*)> deliver;
};

class Comm {
 public:
  /** Starts the worker, which sets the device, creates the stream and initialises the communicator; `create` reports how that went. */
  Comm(const Api& api, int device, int nranks, int rank, const ncclUniqueId& id, Op* create);
  ~Comm();
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  int device() const { return device_; }
  int size() const { return nranks_; }

  /**
   * JS thread, before submit(): takes the op's three events and records `ready` on `compute`, the
   * stream whose work produced the inputs (0: the legacy default stream). Returns "" or what failed.
   */
  std::string prepare(Op* op, cudaStream_t compute);
  void submit(Op* op);
  /**
   * Closes the communicator. With no op in flight: ncclCommFinalize, then ncclCommDestroy (bounded by
   * `op->timeoutUs`, else ncclCommAbort). With ops in flight: they fail and the communicator is aborted.
   */
  void close(Op* op);
  /** The process is exiting: abort the communicator, fail what is in flight, stop the worker. */
  void shutdown();
  /** Blocks until `op` is over or `timeoutUs` passed; true when it is over. */
  bool waitFinished(const Op* op, int64_t timeoutUs);

 private:
  void run(Op* create);
  void init(Op* create);
  void issue(Op* op);
  ncclResult_t launch(Op* op, void** staging);
  /** Polls a non-blocking call until it settles; -1 when `deadlineUs` passed first. */
  ncclResult_t settle(int64_t deadlineUs, int64_t pollUs);
  void poll();
  /** ncclCommFinalize + ncclCommDestroy by `deadlineUs` (else ncclCommAbort); then frees the stream and scratch. */
  void finalize(int64_t deadlineUs);
  void fail(Op* op, ErrKind kind, const std::string& message);
  void finish(Op* op);
  /** Aborts the communicator; every op in flight fails with `reason`, and so does every later one. */
  void abortComm(const std::string& reason);
  std::string opText(const Op* op) const;

  const Api& api_;
  const int device_, nranks_, rank_;
  const ncclUniqueId id_;

  std::mutex mu_;
  std::condition_variable cv_, doneCv_;
  std::deque<Op*> queue_;
  Op* closeOp_ = nullptr;
  bool exiting_ = false;
  std::atomic<bool> exitFlag_{false};  // exiting_, readable without the lock by settle()
  std::string deadReason_;  // set once the communicator is unusable (read by submit under mu_)

  std::mutex poolMu_;
  std::vector<cudaEvent_t> pool_;

  // Owned by the worker.
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;  // one float for barrier()
  std::deque<Op*> active_;
  std::thread thread_;
};

int64_t nowUs();

}  // namespace ds::nccl
