// Collectives over the staging slots. Data moves in chunks; chunk i uses staging buffer
// (counter % 3), the counter running on across ops, so a rank may write the next chunk while slower
// peers still read the previous ones. Before the header exchange each rank already stages its
// first chunk, so for messages up to a chunk the header sync doubles as the data sync.
//
// Sizes in the op header (what must match across ranks): allReduce and broadcast the buffer,
// reduceScatter the output, allGather the input, allToAll the whole input.
#include <cstring>

#include "runner.h"

namespace ds::comm {

namespace {
inline size_t sliceStart(size_t len, int q, int n) { return len * static_cast<size_t>(q) / static_cast<size_t>(n); }
}  // namespace

bool Runner::barrier() { return postHeaderAndSync(0, -1, 0); }

// Per chunk k, one sync: reduce our slice of chunk k (from the staged copies of the others) into
// our buffer and our slot, stage chunk k+1 into the next buffer, sync, then copy the other slices'
// results out. Buffer (k+1) % 3 was last read in copy-out k-2, which every peer finished before
// arriving at the sync of chunk k-1.
bool Runner::allReduce() {
  const int n = g_.size_, r = g_.rank_;
  const size_t count = op_.count;
  uint8_t* buf = op_.in;
  Registration reg;
  uint64_t regOffset = 0;
  const bool registered = count > 0 && findRegistration(buf, count * esz_, reg, regOffset);
  const size_t per = g_.chunkBytes_ / esz_;
  const size_t chunks = (count + per - 1) / per;

  // Stage every slice but our own of a chunk (our slice is reduced straight from the buffer).
  auto stage = [&](size_t k, int b) {
    const size_t c0 = k * per, len = count - c0 < per ? count - c0 : per;
    const size_t lo = sliceStart(len, r, n), hi = sliceStart(len, r + 1, n);
    std::memcpy(g_.slot(r, b), buf + c0 * esz_, lo * esz_);
    std::memcpy(g_.slot(r, b) + hi * esz_, buf + (c0 + hi) * esz_, (len - hi) * esz_);
  };
  const bool stagedFirst = !registered && count > 0;
  if (stagedFirst) stage(0, static_cast<int>(g_.chunkCounter_ % kSlotBufs));
  if (!postHeaderAndSync(stagedFirst ? 1 : 0, registered ? reg.id : -1, regOffset)) return false;
  if (n == 1 || count == 0) return true;

  bool allRegistered = registered, anyUnstaged = !stagedFirst;
  for (int q : others_) {
    const OpHeader& h = headerOf(q);
    if (!registered || h.regId != reg.id || h.regOffset != regOffset) allRegistered = false;
    if (!h.staged) anyUnstaged = true;
  }

  if (allRegistered) {
    // Zero copy: every buffer is mapped here; reduce our slice of all of them into all of them.
    const size_t lo = sliceStart(count, r, n), hi = sliceStart(count, r + 1, n);
    std::vector<const void*> srcs(n);
    std::vector<void*> dsts(n);
    for (int q = 0; q < n; q++) {
      dsts[q] = reg.peers[q] + regOffset + lo * esz_;
      srcs[q] = dsts[q];
    }
    reduceInto(op_.dtype, op_.redop, srcs.data(), n, dsts.data(), n, hi - lo);
    return syncAll();
  }

  // A rank that skipped the early staging (its buffer was registered) stages now, behind one more sync.
  if (anyUnstaged) {
    if (!stagedFirst) stage(0, static_cast<int>(g_.chunkCounter_ % kSlotBufs));
    if (!syncAll()) return false;
  }
  std::vector<const void*> srcs(n);
  for (size_t k = 0; k < chunks; k++) {
    const size_t c0 = k * per, len = count - c0 < per ? count - c0 : per;
    const int b = nextBuf();
    const size_t lo = sliceStart(len, r, n), hi = sliceStart(len, r + 1, n);
    for (int q = 0; q < n; q++) srcs[q] = q == r ? buf + (c0 + lo) * esz_ : g_.slot(q, b) + lo * esz_;
    void* dsts[2] = {buf + (c0 + lo) * esz_, g_.slot(r, b) + lo * esz_};
    reduceInto(op_.dtype, op_.redop, srcs.data(), n, dsts, 2, hi - lo);
    if (k + 1 < chunks) stage(k + 1, static_cast<int>(g_.chunkCounter_ % kSlotBufs));
    if (!syncAll()) return false;
    for (int q : others_) {
      const size_t qa = sliceStart(len, q, n), qb = sliceStart(len, q + 1, n);
      std::memcpy(buf + (c0 + qa) * esz_, g_.slot(q, b) + qa * esz_, (qb - qa) * esz_);
    }
  }
  return true;
}

bool Runner::reduceScatter() {
  const int n = g_.size_, r = g_.rank_;
  const size_t m = op_.count;  // output elements; the input holds n blocks of m
  const size_t per = g_.chunkBytes_ / (esz_ * n);
  std::vector<const void*> srcs(n);
  for (size_t c0 = 0, chunk = 0; c0 < m || chunk == 0; c0 += per, chunk++) {
    const size_t len = m - c0 < per ? m - c0 : per;
    const int h = m > 0 ? nextBuf() : 0;
    for (int q : others_) std::memcpy(g_.slot(r, h) + q * len * esz_, op_.in + (q * m + c0) * esz_, len * esz_);
    if (!(chunk == 0 ? postHeaderAndSync(1, -1, 0) : syncAll())) return false;
    for (int q = 0; q < n; q++) srcs[q] = q == r ? op_.in + (r * m + c0) * esz_ : g_.slot(q, h) + r * len * esz_;
    void* dst = op_.out + c0 * esz_;
    reduceInto(op_.dtype, op_.redop, srcs.data(), n, &dst, 1, len);
    if (m == 0) break;
  }
  return true;
}

bool Runner::allGather() {
  const int r = g_.rank_;
  const size_t m = op_.count;  // input elements; the output holds n blocks of m
  const size_t per = g_.chunkBytes_ / esz_;
  for (size_t c0 = 0, chunk = 0; c0 < m || chunk == 0; c0 += per, chunk++) {
    const size_t len = m - c0 < per ? m - c0 : per;
    const int h = m > 0 ? nextBuf() : 0;
    std::memcpy(g_.slot(r, h), op_.in + c0 * esz_, len * esz_);
    uint8_t* own = op_.out + (r * m + c0) * esz_;
    if (own != op_.in + c0 * esz_) std::memmove(own, op_.in + c0 * esz_, len * esz_);
    if (!(chunk == 0 ? postHeaderAndSync(1, -1, 0) : syncAll())) return false;
    for (int q : others_) std::memcpy(op_.out + (q * m + c0) * esz_, g_.slot(q, h), len * esz_);
    if (m == 0) break;
  }
  return true;
}

bool Runner::broadcast() {
  const int r = g_.rank_, root = op_.root;
  const size_t count = op_.count;
  const size_t per = g_.chunkBytes_ / esz_;
  for (size_t c0 = 0, chunk = 0; c0 < count || chunk == 0; c0 += per, chunk++) {
    const size_t len = count - c0 < per ? count - c0 : per;
    const int h = count > 0 ? nextBuf() : 0;
    if (r == root) std::memcpy(g_.slot(root, h), op_.in + c0 * esz_, len * esz_);
    if (!(chunk == 0 ? postHeaderAndSync(1, -1, 0) : syncAll())) return false;
    if (r != root) std::memcpy(op_.in + c0 * esz_, g_.slot(root, h), len * esz_);
    if (count == 0) break;
  }
  return true;
}

bool Runner::allToAll() {
  const int n = g_.size_, r = g_.rank_;
  const size_t m = op_.count / static_cast<size_t>(n);  // elements each rank sends to each rank
  const size_t per = g_.chunkBytes_ / (esz_ * n);
  for (size_t c0 = 0, chunk = 0; c0 < m || chunk == 0; c0 += per, chunk++) {
    const size_t len = m - c0 < per ? m - c0 : per;
    const int h = m > 0 ? nextBuf() : 0;
    for (int q : others_) std::memcpy(g_.slot(r, h) + q * len * esz_, op_.in + (q * m + c0) * esz_, len * esz_);
    if (op_.out != op_.in) std::memcpy(op_.out + (r * m + c0) * esz_, op_.in + (r * m + c0) * esz_, len * esz_);
    if (!(chunk == 0 ? postHeaderAndSync(1, -1, 0) : syncAll())) return false;
    for (int q : others_) std::memcpy(op_.out + (q * m + c0) * esz_, g_.slot(q, h) + r * len * esz_, len * esz_);
    if (m == 0) break;
  }
  return true;
}

}  // namespace ds::comm
