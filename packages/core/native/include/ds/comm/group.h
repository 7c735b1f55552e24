// A process group over one shared-memory segment: its executor threads, the op record they run,
// and the collectives. Nothing here touches Node-API; binding.cc owns the JS side of an op.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ds/comm/layout.h"
#include "ds/comm/reduce.h"

namespace ds::comm {

enum class OpKind : int { Barrier = 0, AllReduce = 1, ReduceScatter = 2, AllGather = 3, Broadcast = 4, AllToAll = 5, Send = 6, Recv = 7, Connect = 8 };

enum class ErrKind : int { None = 0, Timeout = 1, PeerDead = 2, Mismatch = 3, Aborted = 4, Invalid = 5 };

/** One op as the executor sees it: raw pointers (kept alive by the JS side) and its outcome. */
struct Op {
  OpKind kind = OpKind::Barrier;
  uint32_t seq = 0;
  DType dtype = DType::F32;
  RedOp redop = RedOp::Sum;
  /** Elements of the per-rank quantity that must match across ranks (see collectives.cc). */
  uint64_t count = 0;
  /** Root of broadcast, peer of send/recv (group ranks). */
  int32_t root = 0;
  uint8_t* in = nullptr;
  uint8_t* out = nullptr;
  int64_t timeoutUs = 0;
  /** Connect (TCP groups): "host:port" of every rank's listener, indexed by group rank. */
  std::vector<std::string> addrs;
  // Outcome.
  ErrKind err = ErrKind::None;
  std::string message;
  std::vector<int> missing;
  double execMs = 0;
  /** Set by the executor when the op is over (before the JS side hears of it). */
  std::atomic<bool> finished{false};
  /** A send whose message Group::sendEager already put in the channel: the executor only waits for the receiver to take it (acked reaching ackTarget). */
  bool ackOnly = false;
  uint32_t ackTarget = 0;
};

/** A thread that runs queued jobs in order. */
class Executor {
 public:
  Executor();
  ~Executor();
  void post(std::function<void()> job);
  void stop();
  /** No job queued or running (a job's effects are visible to the thread that sees this true). */
  bool idle() const { return queued_.load(std::memory_order_acquire) == 0; }

 private:
  void loop();
  std::atomic<int> queued_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

struct Registration {
  int64_t id;
  size_t bytes;
  uint8_t* own;
  std::vector<uint8_t*> peers;  // indexed by group rank; peers[rank] == own
};

class Group {
 public:
  /** Maps segment `name` (creating and sizing it when `create`); throws std::runtime_error. */
  Group(const std::string& name, int rank, int size, bool create, size_t chunkBytes, size_t p2pBytes, int spin);
  /** A TCP group: listens on `bindHost`, any port (see port()); a Connect op then builds the mesh. */
  Group(int rank, int size, size_t chunkBytes, const std::string& bindHost);
  ~Group();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool tcp() const { return tcp_; }
  int port() const { return port_; }

  /** Runs `op` on the executor that owns its kind; `done` is called on that thread. */
  void submit(Op* op, std::function<void(Op*)> done);
  /**
   * Point-to-point on the calling thread (the JS thread, the only one that submits ops), each only
   * while no executor job of the channel writes its counters, so they have one user at a time;
   * shared-memory groups only. sendEager: when no chunk-writing send of the channel is queued or
   * running and the message fits one chunk half that is free now, writes and publishes it here and
   * marks `op` ackOnly (submit it: the executor then only waits for the receiver to take it, behind
   * the channel's earlier acks); false: nothing done, submit it as usual. recvHere: when the
   * channel's executor has no job, runs the receive here, waiting on this thread (polling for up to
   * `pollUs` before sleeping on the futex); false: submit it.
   * Both spare the message the wake-up of an executor thread on the way.
   */
  bool sendEager(Op* op);
  bool recvHere(Op* op, int64_t pollUs);
  /** Blocks until `op` has finished or `timeoutUs` passed; true when finished. */
  bool waitFinished(const Op* op, int64_t timeoutUs);
  /** Marks the group failed (peers see the flag, holding `kind`) with `reason`. */
  void abortGroup(const std::string& reason, ErrKind kind = ErrKind::Aborted);
  /** Stops executors (in-flight ops fail fast) and unmaps; idempotent. */
  void shutdown();

  void addRegistration(Registration reg);
  void dropRegistration(int64_t id);

  // Segment accessors.
  RankCtl* ctl(int q) const { return reinterpret_cast<RankCtl*>(base_ + kPage + static_cast<size_t>(q) * kPage); }
  /** Rank q's staging buffer `buf` (0..kSlotBufs-1). */
  uint8_t* slot(int q, int buf) const { return slots_ + (static_cast<size_t>(q) * kSlotBufs + buf) * chunkBytes_; }
  ChannelCtl* channel(int src, int dst) const { return reinterpret_cast<ChannelCtl*>(channels_ + (static_cast<size_t>(src) * size_ + dst) * channelStride_); }
  uint8_t* channelHalf(int src, int dst, int half) const {
    return channels_ + (static_cast<size_t>(src) * size_ + dst) * channelStride_ + kPage + half * (sizeof(ChunkHeader) + p2pBytes_);
  }

 private:
  friend class Runner;
  void run(Op* op);
  Executor* executorFor(const Op* op);
  /** Whether the executor of `op`'s channel (send or recv to/from its peer) has no job. */
  bool channelIdle(const Op* op);

  int rank_, size_;
  size_t chunkBytes_, p2pBytes_, channelStride_;
  int spin_;
  uint8_t* base_ = nullptr;
  size_t bytes_ = 0;
  uint8_t* slots_ = nullptr;
  uint8_t* channels_ = nullptr;
  std::atomic<bool> stopping_{false};
  std::mutex failMu_;
  std::string failure_;
  std::atomic<bool> failed_{false};
  // Collective state, touched only by the collective executor.
  uint32_t step_ = 0;
  uint64_t chunkCounter_ = 0;
  // Per-channel message and chunk counters, touched only by that channel's executor (or by the JS
  // thread's fast paths while no executor job of that channel could touch them).
  std::vector<uint32_t> sendChunks_, recvChunks_;
  // Per peer: send jobs queued or running that write chunks (not the ack-only ones of eager sends);
  // an eager send needs none, so that the channel's chunks are written in order by one thread.
  std::unique_ptr<std::atomic<int>[]> fullSends_;
  std::mutex regMu_;
  std::vector<Registration> regs_;
  // TCP transport, per peer: a socket for collectives, one for messages we send (acks come back on
  // it) and one for messages we receive, so the send and recv threads never share a stream.
  bool tcp_ = false;
  int listenFd_ = -1;
  int port_ = 0;
  std::vector<int> collFd_, p2pOut_, p2pIn_;
  std::vector<uint8_t> tcpTmp_;
  std::vector<OpHeader> tcpHdr_;
  std::unique_ptr<Executor> coll_;
  std::mutex doneMu_;
  std::condition_variable doneCv_;
  std::mutex execMu_;
  std::map<int, std::unique_ptr<Executor>> p2p_;
};

}  // namespace ds::comm
