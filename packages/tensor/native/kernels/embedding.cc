// Token embedding: forward copies table rows (bit for bit, any float dtype); backward adds rows of
// dout into an f32 dtable, with threads owning column blocks so repeated ids never race.
#include <algorithm>
#include <cstring>

#include "ds/tile.h"

namespace ds {
namespace {

int64_t firstBadId(const int32_t* ids, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab) return i;
  return -1;
}

DS_INLINE void addRowBody(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}
DS_VARIANTS(void, addRow, addRowBody, (float* dst, const float* src, int64_t n), (dst, src, n))

}  // namespace

int64_t embeddingForward(const Ctx& c, DType d, const int32_t* ids, const void* table, void* out, int64_t n,
                         int64_t vocab, int64_t dim) {
  const int64_t bad = firstBadId(ids, n, vocab);
  if (bad >= 0 || dim == 0) return bad;
  const size_t rowBytes = static_cast<size_t>(dim) * dtypeBytes(d);
  c.pool->parallelFor(n, std::max<int64_t>(1, kTaskGrain / dim), [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; ++i)
      std::memcpy(static_cast<unsigned char*>(out) + i * rowBytes, static_cast<const unsigned char*>(table) + ids[i] * rowBytes, rowBytes);
  });
  return -1;
}

int64_t embeddingBackward(const Ctx& c, DType d, const void* dout, const int32_t* ids, float* dtable, int64_t n,
                          int64_t vocab, int64_t dim) {
  const int64_t bad = firstBadId(ids, n, vocab);
  if (bad >= 0 || dim == 0 || n == 0) return bad;
  const int64_t threads = c.pool->size();
  const int64_t block = std::min<int64_t>(kTile, std::max<int64_t>(16, (dim + threads - 1) / threads));
  const int64_t blocks = (dim + block - 1) / block;
  c.pool->parallelFor(blocks, n * block < kTaskGrain ? blocks : 1, [&](int64_t b0, int64_t b1, int) {
    float buf[kTile];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t c0 = blk * block, len = std::min(dim, c0 + block) - c0;
      for (int64_t i = 0; i < n; ++i)
        addRowAt(c.isa, dtable + ids[i] * dim + c0, tileIn(c.isa, d, dout, i * dim + c0, len, buf), len);
    }
  });
  return -1;
}

}  // namespace ds
