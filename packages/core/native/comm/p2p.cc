// send/recv through the one-way channel (src -> dst): two halves, each a chunk header plus up to
// p2pBytes of data. `sent` counts chunks written, `acked` chunks consumed; the sender may run one
// chunk ahead of the receiver. A send completes when its last chunk has been consumed, and the
// receiver checks the first chunk's header against what it expects, reporting a mismatch to both.
#include <cstring>

#include "ds/comm/sync.h"
#include "runner.h"

namespace ds::comm {

namespace {
// Channel words are addressed through the op's peer, captured in thread-local state that the two
// function pointers read (waitRanks takes plain function pointers).
thread_local int tlSrc = 0, tlDst = 0;
std::atomic<uint32_t>* sentWord(Group& g, int) { return &g.channel(tlSrc, tlDst)->sent; }
std::atomic<uint32_t>* sentWaiters(Group& g, int) { return &g.channel(tlSrc, tlDst)->sentWaiters; }
std::atomic<uint32_t>* ackedWord(Group& g, int) { return &g.channel(tlSrc, tlDst)->acked; }
std::atomic<uint32_t>* ackedWaiters(Group& g, int) { return &g.channel(tlSrc, tlDst)->ackedWaiters; }

size_t chunksFor(size_t bytes, size_t per) { return bytes == 0 ? 1 : (bytes + per - 1) / per; }
}  // namespace

bool Runner::sendMismatch(ChannelCtl* ch, int peer) {
  return fail(ErrKind::Mismatch, "rank " + std::to_string(peer) + " expected " + std::to_string(ch->recvCount) + " " +
                                     dtypeName(static_cast<DType>(ch->recvDtype)) + " elements but rank " + std::to_string(g_.rank_) + " sent " +
                                     std::to_string(op_.count) + " " + dtypeName(op_.dtype),
              {peer});
}

bool Runner::sendEager() {
  const int peer = op_.root, r = g_.rank_;
  ChannelCtl* ch = g_.channel(r, peer);
  const size_t bytes = op_.count * esz_;
  if (bytes > g_.p2pBytes_ || ch->status.load() != 0) return false;
  const uint32_t g = g_.sendChunks_[peer];
  // The chunk's half is free once chunk g-2 was consumed (see send()); not waited for here.
  if (g >= 2 && !reached(ch->acked.load(std::memory_order_acquire), g - 1)) return false;
  uint8_t* half = g_.channelHalf(r, peer, static_cast<int>(g & 1));
  auto* hdr = reinterpret_cast<ChunkHeader*>(half);
  hdr->chunk = 0;
  hdr->dtype = static_cast<int32_t>(op_.dtype);
  hdr->count = op_.count;
  if (bytes) std::memcpy(half + sizeof(ChunkHeader), op_.in, bytes);
  publish(&ch->sent, &ch->sentWaiters, g + 1);
  g_.sendChunks_[peer] = g + 1;
  op_.ackOnly = true;
  op_.ackTarget = g + 1;
  return true;
}

// The rest of an eager send, on the executor: the receiver took the message (or reported a mismatch).
bool Runner::sendAck() {
  const int peer = op_.root;
  tlSrc = g_.rank_;
  tlDst = peer;
  ChannelCtl* ch = g_.channel(g_.rank_, peer);
  if (!waitRanks({peer}, ackedWord, ackedWaiters, op_.ackTarget, "for the receiver to take the message")) return false;
  if (ch->status.load() != 0) return sendMismatch(ch, peer);
  return true;
}

bool Runner::send() {
  const int peer = op_.root, r = g_.rank_;
  tlSrc = r;
  tlDst = peer;
  ChannelCtl* ch = g_.channel(r, peer);
  const size_t bytes = op_.count * esz_, per = g_.p2pBytes_;
  const size_t chunks = chunksFor(bytes, per);
  const std::vector<int> who{peer};
  auto mismatch = [&] { return sendMismatch(ch, peer); };
  uint32_t g = g_.sendChunks_[peer];
  for (size_t k = 0; k < chunks; k++, g++) {
    // Half g&1 is free once chunk g-2 was consumed, i.e. acked >= g-1.
    if (k >= 2 || g >= 2) {
      if (!waitRanks(who, ackedWord, ackedWaiters, g - 1, "for the receiver to drain the channel")) return false;
    }
    if (ch->status.load() != 0) return mismatch();
    uint8_t* half = g_.channelHalf(r, peer, static_cast<int>(g & 1));
    auto* hdr = reinterpret_cast<ChunkHeader*>(half);
    hdr->chunk = static_cast<uint32_t>(k);
    hdr->dtype = static_cast<int32_t>(op_.dtype);
    hdr->count = op_.count;
    const size_t at = k * per, len = bytes - at < per ? bytes - at : per;
    if (len) std::memcpy(half + sizeof(ChunkHeader), op_.in + at, len);
    publish(&ch->sent, &ch->sentWaiters, g + 1);
  }
  g_.sendChunks_[peer] = g;
  if (!waitRanks(who, ackedWord, ackedWaiters, g, "for the receiver to take the message")) return false;
  if (ch->status.load() != 0) return mismatch();
  return true;
}

bool Runner::recv() {
  const int peer = op_.root, r = g_.rank_;
  tlSrc = peer;
  tlDst = r;
  ChannelCtl* ch = g_.channel(peer, r);
  const size_t bytes = op_.count * esz_, per = g_.p2pBytes_;
  const size_t chunks = chunksFor(bytes, per);
  const std::vector<int> who{peer};
  uint32_t g = g_.recvChunks_[peer];
  for (size_t k = 0; k < chunks; k++, g++) {
    if (!waitRanks(who, sentWord, sentWaiters, g + 1, "for the sender")) return false;
    const uint8_t* half = g_.channelHalf(peer, r, static_cast<int>(g & 1));
    const auto* hdr = reinterpret_cast<const ChunkHeader*>(half);
    if (k == 0 && (hdr->count != op_.count || hdr->dtype != static_cast<int32_t>(op_.dtype))) {
      ch->recvCount = op_.count;
      ch->recvDtype = static_cast<int32_t>(op_.dtype);
      ch->status.store(static_cast<uint32_t>(ErrKind::Mismatch));
      publish(&ch->acked, &ch->ackedWaiters, g + 1);
      g_.recvChunks_[peer] = g + 1;
      return fail(ErrKind::Mismatch, "rank " + std::to_string(peer) + " sent " + std::to_string(hdr->count) + " " +
                                         dtypeName(static_cast<DType>(hdr->dtype)) + " elements but rank " + std::to_string(r) + " expected " +
                                         std::to_string(op_.count) + " " + dtypeName(op_.dtype),
                  {peer});
    }
    const size_t at = k * per, len = bytes - at < per ? bytes - at : per;
    if (len) std::memcpy(op_.out + at, half + sizeof(ChunkHeader), len);
    publish(&ch->acked, &ch->ackedWaiters, g + 1);
  }
  g_.recvChunks_[peer] = g;
  return true;
}

}  // namespace ds::comm
