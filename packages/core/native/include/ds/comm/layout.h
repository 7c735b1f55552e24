// Layout of a group's shared-memory segment. Group rank 0 creates it; every member maps it.
//
//   [SegHeader 4 KiB] [RankCtl x n, 4 KiB each] [slots: n x 3 buffers x chunkBytes]
//   [channels: n x n x (ChannelCtl 4 KiB + 2 halves x (64 B header + p2pBytes))]
//
// Each rank owns one RankCtl: its sync counter `step` (a futex word peers sleep on), its abort flag
// and reason, and two op headers (indexed by sequence parity) that peers read to check that every
// rank runs the same op with the same sizes. A channel (src, dst) is the one-way mailbox of send/recv.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ds::comm {

constexpr uint64_t kMagic = 0x31304d4d4f435344ull;  // "DSCOMM01"
constexpr size_t kPage = 4096;
/** Staging buffers per rank: chunk k uses buffer k % 3, which lets allReduce get by with one sync per chunk. */
constexpr int kSlotBufs = 3;

struct SegHeader {
  uint64_t magic;
  uint32_t nranks;
  uint32_t reserved;
  uint64_t chunkBytes;
  uint64_t p2pBytes;
  uint64_t totalBytes;
};

/** What a rank announces for one op; peers compare these field by field. */
struct OpHeader {
  uint32_t seq;
  int32_t kind;
  int32_t dtype;
  int32_t redop;
  uint64_t count;
  int32_t root;
  /** 1 when the rank's staging copy of chunk 0 is already in its slot. */
  int32_t staged;
  /** Registration id of the buffer when it lies in a registered region, else -1. */
  int64_t regId;
  uint64_t regOffset;
};

struct alignas(64) RankCtl {
  std::atomic<uint32_t> step;
  std::atomic<uint32_t> stepWaiters;
  char pad0[56];
  std::atomic<uint32_t> abort;
  int32_t pid;
  char reason[240];
  char pad1[8];
  OpHeader hdr[2];
};

struct alignas(64) ChannelCtl {
  std::atomic<uint32_t> sent;
  std::atomic<uint32_t> sentWaiters;
  char pad0[56];
  std::atomic<uint32_t> acked;
  std::atomic<uint32_t> ackedWaiters;
  /** 0, or the error kind the receiver found (a size or dtype mismatch). */
  std::atomic<uint32_t> status;
  /** What the receiver expected, when status reports a mismatch. */
  int32_t recvDtype;
  uint64_t recvCount;
  char pad1[40];
};

struct ChunkHeader {
  uint32_t msg;
  uint32_t chunk;
  int32_t dtype;
  int32_t pad;
  uint64_t count;
  char pad2[40];
};
static_assert(sizeof(ChunkHeader) == 64, "chunk header is one cache line");
static_assert(sizeof(RankCtl) <= kPage, "rank control block fits a page");

inline size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

inline size_t segmentBytes(int n, size_t chunkBytes, size_t p2pBytes) {
  const size_t slots = static_cast<size_t>(n) * kSlotBufs * chunkBytes;
  const size_t channel = kPage + 2 * (sizeof(ChunkHeader) + p2pBytes);
  return kPage + static_cast<size_t>(n) * kPage + alignUp(slots, kPage) + static_cast<size_t>(n) * n * alignUp(channel, kPage);
}

}  // namespace ds::comm
