// The TCP transport's ops (see tcp.cc for the design).
#include <cstring>

#include "runner.h"

namespace ds::comm {

namespace {
inline size_t sliceStart(size_t len, int q, int n) { return len * static_cast<size_t>(q) / static_cast<size_t>(n); }

/** Flows of one exchange, one per (peer, direction), each a list of segments sent in order. */
struct FlowSet {
  std::vector<Runner::Flow> flows;
  std::vector<int> index;
  explicit FlowSet(int n) : index(2 * static_cast<size_t>(n), -1) {}
  void add(int fd, int peer, bool send, uint8_t* p, size_t bytes) {
    if (bytes == 0) return;
    int& i = index[2 * static_cast<size_t>(peer) + (send ? 1 : 0)];
    if (i < 0) {
      i = static_cast<int>(flows.size());
      flows.push_back({fd, peer, send, {}});
    }
    flows[i].segs.push_back({p, bytes});
  }
};

struct P2PHeader {
  uint64_t count;
  int32_t dtype;
  int32_t pad;
};
struct P2PAck {
  int32_t status;
  int32_t dtype;
  uint64_t count;
};
}  // namespace

bool Runner::tcpAllReduce() {
  const int n = g_.size_, r = g_.rank_;
  const size_t count = op_.count, per = g_.chunkBytes_ / esz_;
  uint8_t* buf = op_.in;
  if (!tcpHeaders(0)) return false;
  if (n == 1 || count == 0) return true;
  const size_t chunks = (count + per - 1) / per;
  std::vector<const void*> srcs(n);
  for (size_t k = 0; k <= chunks; k++) {
    FlowSet fs(n);
    // The gather phase of the previous chunk travels ahead of the scatter phase of this one.
    if (k > 0) {
      const size_t c0 = (k - 1) * per, len = count - c0 < per ? count - c0 : per;
      for (int q : others_) {
        const size_t a = sliceStart(len, r, n), b = sliceStart(len, r + 1, n);
        const size_t qa = sliceStart(len, q, n), qb = sliceStart(len, q + 1, n);
        fs.add(g_.collFd_[q], q, true, buf + (c0 + a) * esz_, (b - a) * esz_);
        fs.add(g_.collFd_[q], q, false, buf + (c0 + qa) * esz_, (qb - qa) * esz_);
      }
    }
    size_t c0 = k * per, len = 0;
    if (k < chunks) {
      len = count - c0 < per ? count - c0 : per;
      const size_t a = sliceStart(len, r, n), b = sliceStart(len, r + 1, n);
      for (int q : others_) {
        const size_t qa = sliceStart(len, q, n), qb = sliceStart(len, q + 1, n);
        fs.add(g_.collFd_[q], q, true, buf + (c0 + qa) * esz_, (qb - qa) * esz_);
        fs.add(g_.collFd_[q], q, false, g_.tcpTmp_.data() + q * g_.chunkBytes_, (b - a) * esz_);
      }
    }
    if (!exchange(fs.flows, "exchanging allReduce data")) return false;
    if (k < chunks) {
      const size_t a = sliceStart(len, r, n), b = sliceStart(len, r + 1, n);
      for (int q = 0; q < n; q++) srcs[q] = q == r ? buf + (c0 + a) * esz_ : g_.tcpTmp_.data() + q * g_.chunkBytes_;
      void* dst = buf + (c0 + a) * esz_;
      reduceInto(op_.dtype, op_.redop, srcs.data(), n, &dst, 1, b - a);
    }
  }
  return true;
}

bool Runner::tcpReduceScatter() {
  const int n = g_.size_, r = g_.rank_;
  const size_t m = op_.count, per = g_.chunkBytes_ / esz_;
  if (!tcpHeaders(0)) return false;
  std::vector<const void*> srcs(n);
  for (size_t c0 = 0; c0 < m; c0 += per) {
    const size_t len = m - c0 < per ? m - c0 : per;
    FlowSet fs(n);
    for (int q : others_) {
      fs.add(g_.collFd_[q], q, true, op_.in + (q * m + c0) * esz_, len * esz_);
      fs.add(g_.collFd_[q], q, false, g_.tcpTmp_.data() + q * g_.chunkBytes_, len * esz_);
    }
    if (!exchange(fs.flows, "exchanging reduceScatter data")) return false;
    for (int q = 0; q < n; q++) srcs[q] = q == r ? op_.in + (r * m + c0) * esz_ : g_.tcpTmp_.data() + q * g_.chunkBytes_;
    void* dst = op_.out + c0 * esz_;
    reduceInto(op_.dtype, op_.redop, srcs.data(), n, &dst, 1, len);
  }
  return true;
}

bool Runner::tcpAllGather() {
  const int r = g_.rank_;
  const size_t bytes = op_.count * esz_;
  if (!tcpHeaders(0)) return false;
  uint8_t* own = op_.out + r * bytes;
  if (own != op_.in) std::memmove(own, op_.in, bytes);
  FlowSet fs(g_.size_);
  for (int q : others_) {
    fs.add(g_.collFd_[q], q, true, own, bytes);
    fs.add(g_.collFd_[q], q, false, op_.out + q * bytes, bytes);
  }
  return exchange(fs.flows, "exchanging allGather data");
}

bool Runner::tcpBroadcast() {
  const int r = g_.rank_, root = op_.root;
  if (!tcpHeaders(0)) return false;
  FlowSet fs(g_.size_);
  const size_t bytes = op_.count * esz_;
  if (r == root) {
    for (int q : others_) fs.add(g_.collFd_[q], q, true, op_.in, bytes);
  } else {
    fs.add(g_.collFd_[root], root, false, op_.in, bytes);
  }
  return exchange(fs.flows, r == root ? "sending the broadcast" : "receiving the broadcast");
}

bool Runner::tcpAllToAll() {
  const int n = g_.size_, r = g_.rank_;
  const size_t block = op_.count / static_cast<size_t>(n) * esz_;
  if (!tcpHeaders(0)) return false;
  // In place, a block may arrive before ours has left: send from a copy.
  std::vector<uint8_t> copy;
  const uint8_t* from = op_.in;
  if (op_.in == op_.out && block) {
    copy.assign(op_.in, op_.in + block * n);
    from = copy.data();
  } else if (block) {
    std::memcpy(op_.out + r * block, op_.in + r * block, block);
  }
  FlowSet fs(n);
  for (int q : others_) {
    fs.add(g_.collFd_[q], q, true, const_cast<uint8_t*>(from) + q * block, block);
    fs.add(g_.collFd_[q], q, false, op_.out + q * block, block);
  }
  return exchange(fs.flows, "exchanging allToAll data");
}

bool Runner::tcpSend() {
  const int peer = op_.root;
  P2PHeader h{op_.count, static_cast<int32_t>(op_.dtype), 0};
  P2PAck ack{};
  FlowSet fs(g_.size_);
  const int fd = g_.p2pOut_[peer];
  fs.add(fd, peer, true, reinterpret_cast<uint8_t*>(&h), sizeof h);
  fs.add(fd, peer, true, op_.in, op_.count * esz_);
  fs.add(fd, peer, false, reinterpret_cast<uint8_t*>(&ack), sizeof ack);
  // The receiver answers early when the sizes disagree; stop sending then.
  const auto checkAck = [&](const Flow&) {
    if (ack.status == 0) return true;
    return fail(ErrKind::Mismatch, "rank " + std::to_string(peer) + " expected " + std::to_string(ack.count) + " " + dtypeName(static_cast<DType>(ack.dtype)) +
                                       " elements but rank " + std::to_string(g_.rank_) + " sent " + std::to_string(op_.count) + " " + dtypeName(op_.dtype),
                {peer});
  };
  return exchange(fs.flows, "for the receiver", checkAck);
}

bool Runner::tcpRecv() {
  const int peer = op_.root;
  const int fd = g_.p2pIn_[peer];
  P2PHeader h{};
  FlowSet head(g_.size_);
  head.add(fd, peer, false, reinterpret_cast<uint8_t*>(&h), sizeof h);
  if (!exchange(head.flows, "for the sender")) return false;
  P2PAck ack{0, static_cast<int32_t>(op_.dtype), op_.count};
  if (h.count != op_.count || h.dtype != static_cast<int32_t>(op_.dtype)) {
    ack.status = static_cast<int32_t>(ErrKind::Mismatch);
    FlowSet nack(g_.size_);
    nack.add(fd, peer, true, reinterpret_cast<uint8_t*>(&ack), sizeof ack);
    exchange(nack.flows, "answering the sender");
    return fail(ErrKind::Mismatch, "rank " + std::to_string(peer) + " sent " + std::to_string(h.count) + " " + dtypeName(static_cast<DType>(h.dtype)) +
                                       " elements but rank " + std::to_string(g_.rank_) + " expected " + std::to_string(op_.count) + " " + dtypeName(op_.dtype),
                {peer});
  }
  // The ack must follow the data, so receive first, then answer.
  FlowSet data(g_.size_);
  data.add(fd, peer, false, op_.out, op_.count * esz_);
  if (!exchange(data.flows, "for the sender's data")) return false;
  FlowSet done(g_.size_);
  done.add(fd, peer, true, reinterpret_cast<uint8_t*>(&ack), sizeof ack);
  return exchange(done.flows, "acknowledging");
}

}  // namespace ds::comm
