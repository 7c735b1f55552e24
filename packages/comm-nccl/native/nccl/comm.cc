// The worker of one communicator: set-up, issue, completion, watchdog, close (see comm.h).
#include "ds/nccl/comm.h"

#include <chrono>
#include <ctime>

namespace ds::nccl {

namespace {

constexpr ncclResult_t kTimedOut = -1;
/** settle() gave up because the process is exiting. */
constexpr ncclResult_t kExiting = -2;
/** How often the worker looks at events and NCCL's error state while ops are in flight. */
constexpr int64_t kPollUs = 20;
/** Set-up and close poll less often: they take milliseconds to seconds. */
constexpr int64_t kSlowPollUs = 1000;

const char* kindName(OpKind k) {
  static const char* names[] = {"barrier", "allReduce", "reduceScatter", "allGather", "broadcast", "allToAll", "send", "recv", "createGroup", "destroy"};
  return names[static_cast<int>(k)];
}

void sleepUs(int64_t us) { std::this_thread::sleep_for(std::chrono::microseconds(us)); }

/** Why every later op of a group fails once an earlier one did, and what to do about it. */
std::string lost(const std::string& what) {
  return "the group's communicator was aborted because " + what + "; this group can no longer be used (make a new one with newGroup, or restart the job)";
}

}  // namespace

int64_t nowUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

Comm::Comm(const Api& api, int device, int nranks, int rank, const ncclUniqueId& id, Op* create)
    : api_(api), device_(device), nranks_(nranks), rank_(rank), id_(id) {
  create->submitUs = nowUs();
  create->deadlineUs = create->submitUs + create->timeoutUs;
  thread_ = std::thread([this, create] { run(create); });
}

Comm::~Comm() {
  shutdown();
  std::lock_guard<std::mutex> lock(poolMu_);
  for (cudaEvent_t e : pool_) api_.cudaEventDestroy(e);
  pool_.clear();
}

std::string Comm::opText(const Op* op) const { return std::string(kindName(op->kind)) + " seq " + std::to_string(op->seq); }

std::string Comm::prepare(Op* op, cudaStream_t compute) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A dead communicator fails the op on the worker; it needs no events.
    if (!deadReason_.empty() || closeOp_ || exiting_) return "";
  }
  cudaError_t e = api_.cudaSetDevice(device_);
  if (e != cudaSuccess) return "cudaSetDevice(" + std::to_string(device_) + ") failed: " + api_.cudaText(e);
  cudaEvent_t* slots[3] = {&op->ready, &op->start, &op->done};
  for (cudaEvent_t* slot : slots) {
    {
      std::lock_guard<std::mutex> lock(poolMu_);
      if (!pool_.empty()) {
        *slot = pool_.back();
        pool_.pop_back();
        continue;
      }
    }
    e = api_.cudaEventCreate(slot);
    if (e != cudaSuccess) return "cudaEventCreate failed: " + api_.cudaText(e);
  }
  e = api_.cudaEventRecord(op->ready, compute);
  if (e != cudaSuccess) return "recording the op's start on the compute stream failed: " + api_.cudaText(e);
  return "";
}

void Comm::submit(Op* op) {
  op->submitUs = nowUs();
  op->deadlineUs = op->submitUs + op->timeoutUs;
  std::string refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closeOp_ || exiting_) refused = "the group was destroyed";
    else queue_.push_back(op);
  }
  if (!refused.empty()) return fail(op, ErrKind::Aborted, refused);
  cv_.notify_one();
}

void Comm::close(Op* op) {
  op->submitUs = nowUs();
  op->deadlineUs = op->submitUs + op->timeoutUs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closeOp_ && !exiting_) {
      closeOp_ = op;
      op = nullptr;
    }
  }
  cv_.notify_one();
  if (op) finish(op);  // closed already: nothing to do
}

void Comm::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    exiting_ = true;
  }
  exitFlag_.store(true);
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

bool Comm::waitFinished(const Op* op, int64_t timeoutUs) {
  std::unique_lock<std::mutex> lock(mu_);
  return doneCv_.wait_for(lock, std::chrono::microseconds(timeoutUs), [op] { return op->finished.load(); });
}

void Comm::fail(Op* op, ErrKind kind, const std::string& message) {
  op->err = kind;
  op->message = message;
  finish(op);
}

void Comm::finish(Op* op) {
  if (op->ready) {
    std::lock_guard<std::mutex> lock(poolMu_);
    for (cudaEvent_t* e : {&op->ready, &op->start, &op->done}) {
      pool_.push_back(*e);
      *e = nullptr;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    op->finished.store(true);
  }
  doneCv_.notify_all();
  // A copy: JavaScript frees the op (and this function object) once the call below delivers it.
  auto deliver = op->deliver;
  if (deliver) deliver(op);
}

ncclResult_t Comm::settle(int64_t deadlineUs, int64_t pollUs) {
  for (;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = api_.ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) return r;
    if (state != ncclInProgress) return state;
    if (exitFlag_.load()) return kExiting;
    if (nowUs() > deadlineUs) return kTimedOut;
    sleepUs(pollUs);
  }
}

void Comm::abortComm(const std::string& reason) {
  if (comm_) api_.ncclCommAbort(comm_);
  comm_ = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (deadReason_.empty()) deadReason_ = reason;
  }
  while (!active_.empty()) {
    Op* op = active_.front();
    active_.pop_front();
    fail(op, ErrKind::Aborted, reason);
  }
}

void Comm::init(Op* create) {
  const int64_t ms = create->timeoutUs / 1000;
  cudaError_t e = api_.cudaSetDevice(device_);
  if (e == cudaSuccess) e = api_.cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = api_.cudaMalloc(&scratch_, 16);
  if (e != cudaSuccess) {
    api_.cudaGetLastError();
    const std::string why = "CUDA device " + std::to_string(device_) + " could not be set up: " + api_.cudaText(e);
    {
      std::lock_guard<std::mutex> lock(mu_);
      deadReason_ = "the communicator was never set up (" + why + ")";
    }
    return fail(create, ErrKind::Cuda, why);
  }
  ncclConfigV21400 config{sizeof(ncclConfigV21400), kNcclApiMagic, kNcclVersion21400, 0};
  ncclResult_t r = api_.ncclCommInitRankConfig(&comm_, nranks_, id_, rank_, &config);
  if (comm_ && (r == ncclSuccess || r == ncclInProgress)) r = settle(create->deadlineUs, kSlowPollUs);
  if (r == ncclSuccess) return finish(create);
  std::string why;
  ErrKind kind = ErrKind::Setup;
  if (r == kExiting) {
    kind = ErrKind::Aborted;
    why = "the process is exiting";
  } else if (r == kTimedOut) {
    kind = ErrKind::Timeout;
    why = "NCCL did not finish setting up the communicator within " + std::to_string(ms) +
          " ms (a member never called it, or the hosts cannot reach each other: check NCCL_SOCKET_IFNAME)";
  } else {
    why = "ncclCommInitRankConfig failed: " + api_.ncclText(r, comm_);
  }
  if (comm_) api_.ncclCommAbort(comm_);
  comm_ = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    deadReason_ = "the communicator was never set up (" + why + ")";
  }
  fail(create, kind, why);
}

ncclResult_t Comm::launch(Op* op, void** staging) {
  void* in = reinterpret_cast<void*>(op->in);
  void* out = reinterpret_cast<void*>(op->out);
  switch (op->kind) {
    case OpKind::Barrier:
      return api_.ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_);
    case OpKind::AllReduce:
      return api_.ncclAllReduce(in, out, op->count, op->dtype, op->redop, comm_, stream_);
    case OpKind::ReduceScatter:
      return api_.ncclReduceScatter(in, out, op->count, op->dtype, op->redop, comm_, stream_);
    case OpKind::AllGather:
      return api_.ncclAllGather(in, out, op->count, op->dtype, comm_, stream_);
    case OpKind::Broadcast:
      return api_.ncclBroadcast(in, out, op->count, op->dtype, op->peer, comm_, stream_);
    case OpKind::Send:
      return api_.ncclSend(in, op->count, op->dtype, op->peer, comm_, stream_);
    case OpKind::Recv:
      return api_.ncclRecv(out, op->count, op->dtype, op->peer, comm_, stream_);
    case OpKind::AllToAll: {
      // Grouped send/recv, block q to and from rank q. In place, the blocks still to be sent would
      // be overwritten by the ones received: send from a stream-ordered copy of the input instead.
      const size_t block = op->count / static_cast<size_t>(nranks_);
      const size_t blockBytes = block * op->elemSize;
      const char* src = static_cast<const char*>(in);
      if (op->in == op->out && op->count > 0) {
        const size_t bytes = op->count * op->elemSize;
        cudaError_t e = api_.cudaMallocAsync(staging, bytes, stream_);
        if (e == cudaSuccess) e = api_.cudaMemcpyAsync(*staging, in, bytes, cudaMemcpyDeviceToDevice, stream_);
        if (e != cudaSuccess) {
          api_.cudaGetLastError();
          op->message = "staging the in-place allToAll input failed: " + api_.cudaText(e);
          return ncclSuccess;
        }
        src = static_cast<const char*>(*staging);
      }
      // Calls inside a group only queue (a non-blocking group settles at ncclGroupEnd); any result
      // other than success or in-progress stops the queueing, and the group is still ended.
      auto ok = [](ncclResult_t r) { return r == ncclSuccess || r == ncclInProgress; };
      ncclResult_t r = api_.ncclGroupStart();
      for (int q = 0; q < nranks_ && ok(r); q++) {
        r = api_.ncclSend(src + q * blockBytes, block, op->dtype, q, comm_, stream_);
        if (ok(r)) r = api_.ncclRecv(static_cast<char*>(out) + q * blockBytes, block, op->dtype, q, comm_, stream_);
      }
      const ncclResult_t end = api_.ncclGroupEnd();
      return ok(r) ? end : r;
    }
    default:
      return ncclSuccess;
  }
}

void Comm::issue(Op* op) {
  cudaError_t e = api_.cudaStreamWaitEvent(stream_, op->ready, 0);
  if (e == cudaSuccess) e = api_.cudaEventRecord(op->start, stream_);
  if (e != cudaSuccess) {
    api_.cudaGetLastError();
    fail(op, ErrKind::Cuda, "queueing it on the communication stream failed: " + api_.cudaText(e));
    return abortComm(lost(opText(op) + " failed on the GPU before NCCL saw it"));
  }
  void* staging = nullptr;
  ncclResult_t r = launch(op, &staging);
  if (!op->message.empty()) {
    fail(op, ErrKind::Cuda, op->message);
    return abortComm(lost(opText(op) + " failed on the GPU before NCCL saw it"));
  }
  if (r == ncclInProgress) r = settle(op->deadlineUs, kPollUs);
  if (staging && r != ncclSuccess) api_.cudaFreeAsync(staging, stream_);
  if (r == kExiting) {
    fail(op, ErrKind::Aborted, "the process is exiting");
    return abortComm("the process is exiting");
  }
  if (r == kTimedOut) {
    fail(op, ErrKind::Timeout,
         "timed out after " + std::to_string(op->timeoutUs / 1000) +
             " ms while NCCL was still accepting the call (it was connecting to peers that did not answer); the communicator was aborted (ncclCommAbort)");
    return abortComm(lost(opText(op) + " timed out"));
  }
  if (r != ncclSuccess) {
    fail(op, ErrKind::Nccl, "NCCL refused it: " + api_.ncclText(r, comm_));
    return abortComm(lost(opText(op) + " failed in NCCL"));
  }
  if (staging) api_.cudaFreeAsync(staging, stream_);
  e = api_.cudaEventRecord(op->done, stream_);
  if (e != cudaSuccess) {
    api_.cudaGetLastError();
    fail(op, ErrKind::Cuda, "recording its completion failed: " + api_.cudaText(e));
    return abortComm(lost(opText(op) + " failed on the GPU"));
  }
  active_.push_back(op);
}

void Comm::poll() {
  while (!active_.empty()) {
    Op* op = active_.front();
    const cudaError_t e = api_.cudaEventQuery(op->done);
    if (e == cudaErrorNotReady) break;
    active_.pop_front();
    if (e != cudaSuccess) {
      api_.cudaGetLastError();
      fail(op, ErrKind::Cuda, "the GPU reported an error while it ran: " + api_.cudaText(e));
      return abortComm(lost(opText(op) + " failed on the GPU"));
    }
    float ms = 0;
    if (api_.cudaEventElapsedTime(&ms, op->start, op->done) == cudaSuccess) op->execMs = ms;
    else api_.cudaGetLastError();
    finish(op);
  }
  if (active_.empty()) return;
  ncclResult_t state = ncclSuccess;
  const ncclResult_t r = api_.ncclCommGetAsyncError(comm_, &state);
  if (r != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
    Op* op = active_.front();
    active_.pop_front();
    fail(op, ErrKind::Nccl, "NCCL reported an error while it ran: " + api_.ncclText(r != ncclSuccess ? r : state, comm_));
    return abortComm(lost(opText(op) + " failed in NCCL"));
  }
  Op* oldest = active_.front();
  if (nowUs() > oldest->deadlineUs) {
    active_.pop_front();
    fail(oldest, ErrKind::Timeout,
         "timed out after " + std::to_string(oldest->timeoutUs / 1000) +
             " ms: its NCCL kernel had not finished (a peer never joined this op, or the network or a GPU stalled); the communicator was aborted (ncclCommAbort)");
    abortComm(lost(opText(oldest) + " timed out"));
  }
}

void Comm::finalize(int64_t deadlineUs) {
  if (comm_) {
    ncclResult_t r = api_.ncclCommFinalize(comm_);
    if (r == ncclSuccess || r == ncclInProgress) r = settle(deadlineUs, kSlowPollUs);
    if (r == ncclSuccess) api_.ncclCommDestroy(comm_);
    // Finalize waits for the peers' side of the last transfers; when they do not come, abort (local).
    else api_.ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  if (scratch_) api_.cudaFree(scratch_);
  if (stream_) api_.cudaStreamDestroy(stream_);
  scratch_ = nullptr;
  stream_ = nullptr;
}

void Comm::run(Op* create) {
  init(create);
  for (;;) {
    std::deque<Op*> fresh;
    bool closing = false, exiting = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto wake = [this] { return !queue_.empty() || closeOp_ != nullptr || exiting_; };
      if (active_.empty()) cv_.wait(lock, wake);
      else cv_.wait_for(lock, std::chrono::microseconds(kPollUs), wake);
      fresh.swap(queue_);
      closing = closeOp_ != nullptr;
      exiting = exiting_;
    }
    std::string dead;
    for (Op* op : fresh) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        dead = deadReason_;
      }
      if (!dead.empty()) fail(op, ErrKind::Aborted, dead);
      else issue(op);
    }
    if (exiting) {
      abortComm("the process is exiting");
      finalize(0);  // comm_ is gone: frees the stream and scratch only
      return;
    }
    poll();
    if (closing) {
      if (!active_.empty()) abortComm("the group was destroyed with this op in flight");
      Op* op = closeOp_;
      finalize(nowUs() + op->timeoutUs);
      finish(op);
      return;
    }
  }
}

}  // namespace ds::nccl
