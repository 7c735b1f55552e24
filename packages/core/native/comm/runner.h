// Runner executes one op of a Group on the calling executor thread. Every wait goes through
// waitRanks(), which enforces the op's deadline, notices peers that aborted or died, and records
// which ranks did not arrive.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "ds/comm/group.h"
#include "ds/comm/sync.h"

namespace ds::comm {

class Runner {
 public:
  Runner(Group& g, Op& op);
  void run();
  /** Group::sendEager's part: puts a one-chunk message in the channel without waiting, or returns false having done nothing. */
  bool sendEager();
  /** Waits poll (yielding the core to any other runnable thread) for up to `us` before sleeping on the futex. */
  void pollFirst(int64_t us) { pollUntil_ = nowUs() + us; }

  /** TCP: bytes to move over one socket in one direction, in order. */
  struct Seg {
    uint8_t* p;
    size_t n;
  };
  struct Flow {
    int fd;
    int peer;
    bool send;
    std::vector<Seg> segs;
    size_t seg = 0, off = 0;
  };

 private:
  bool fail(ErrKind kind, const std::string& message, std::vector<int> missing = {});
  bool health(const std::vector<int>& watch, int64_t& nextLiveness);
  bool waitRanks(const std::vector<int>& ranks, std::atomic<uint32_t>* (*word)(Group&, int), std::atomic<uint32_t>* (*waiters)(Group&, int),
                 uint32_t target, const char* what);
  bool syncAll();
  bool postHeaderAndSync(int staged, int64_t regId, uint64_t regOffset);
  bool checkHeaders();
  int nextBuf() { return static_cast<int>(g_.chunkCounter_++ % kSlotBufs); }

  // Collectives (collectives.cc) and point-to-point (p2p.cc).
  bool barrier();
  bool allReduce();
  bool reduceScatter();
  bool allGather();
  bool broadcast();
  bool allToAll();
  bool send();
  bool sendAck();
  bool sendMismatch(ChannelCtl* ch, int peer);
  bool recv();
  // TCP transport (tcp.cc, tcp_ops.cc).
  bool exchange(std::vector<Flow>& flows, const char* what, const std::function<bool(const Flow&)>& onRecvDone = nullptr);
  bool tcpConnect();
  bool tcpHeaders(int32_t staged);
  bool tcpAllReduce();
  bool tcpReduceScatter();
  bool tcpAllGather();
  bool tcpBroadcast();
  bool tcpAllToAll();
  bool tcpSend();
  bool tcpRecv();
  const OpHeader& headerOf(int q) const { return g_.tcp_ ? g_.tcpHdr_[q] : g_.ctl(q)->hdr[op_.seq & 1]; }

  bool findRegistration(const uint8_t* p, size_t bytes, Registration& out, uint64_t& offset);

  Group& g_;
  Op& op_;
  int64_t deadline_;
  int64_t pollUntil_ = 0;
  size_t esz_;
  std::vector<int> others_;
};

const char* opName(OpKind k);
const char* dtypeName(DType d);

}  // namespace ds::comm
