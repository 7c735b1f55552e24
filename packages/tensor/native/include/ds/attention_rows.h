// What attention.cc (every dtype and ISA) and attention_bf16.cc (bf16 on AVX512_BF16) share: where a
// head's rows lie, reading strided rows with the lines of later rows requested ahead, and how items
// (heads, or parts of heads) are handed to threads.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "ds/kernels.h"
#include "ds/pool.h"
#include "ds/simd.h"

namespace ds {

// Element offset of row 0 of head h (h < bh, the heads of every batch entry in turn).
DS_INLINE int64_t headBase(const AttnLayout& L, int64_t h) { return (h / L.heads) * L.sB + (h % L.heads) * L.sH; }

// Strided head rows (a packed qkv's lie 3 C apart, 1.5 KiB for the GPT bench's bf16 C = 256) are
// separate short streams the hardware prefetchers do not follow: the conversions of attention.cc
// waited on each row's lines (in isolation 15-20% of attention's time, forward and backward, in the
// loads and stores of the converters). Each row's lines are requested this many rows ahead.
constexpr int64_t kRowsAhead = 16;

DS_INLINE void prefetchHeadRow(const unsigned char* row, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(row + o), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(row + bytes - 1), _MM_HINT_T0);  // the last line, when rows are not line-aligned
}

// f(i, row i) for the n rows of `bytes` bytes, `stride` bytes apart, each prefetched kRowsAhead ahead.
template <class Byte, class F>
DS_INLINE void forRowsAhead(Byte* rows, int64_t n, int64_t stride, int64_t bytes, F&& f) {
  for (int64_t i = 0; i < std::min(n, kRowsAhead); ++i) prefetchHeadRow(rows + i * stride, bytes);
  for (int64_t i = 0; i < n; ++i) {
    if (i + kRowsAhead < n) prefetchHeadRow(rows + (i + kRowsAhead) * stride, bytes);
    f(i, rows + i * stride);
  }
}

// Small jobs run on the calling thread; others hand out one item at a time to whichever thread is
// free (parallelForDynamic), so a thread the host slows takes fewer heads instead of holding the
// others up at the end (measured in a quiet 2-thread GPT step: 10% of attention's time was one
// thread waiting for the other with a fixed half each).
template <class F>
void forAttentionItems(const Ctx& c, int64_t items, double work, F&& f) {
  if (work < 2e5) return c.pool->parallelFor(items, items, f);
  c.pool->parallelForDynamic(items, f);
}

// The bf16 path (attention_bf16.cc): every block product on vdpbf16ps. Taken for bf16 q, k, v on a
// CPU with AVX512_BF16 when the ISA in use is AVX-512 or above and d is even (a head's k pairs).
DS_INLINE bool attentionOnBf16Dot(const Ctx& c, DType dt, int64_t d) {
  return dt == DType::BF16 && c.isa >= Isa::Avx512 && c.bf16Dot && d % 2 == 0;
}
void attentionForwardBf16(const Ctx& c, const void* q, const void* k, const void* v, void* out, float* lse, int64_t bh,
                          int64_t t, int64_t d, float scale, const AttnLayout& inL, const AttnLayout& outL);
void attentionBackwardBf16(const Ctx& c, const void* dout, const void* q, const void* k, const void* v, const void* out,
                           const float* lse, void* dq, void* dk, void* dv, int64_t bh, int64_t t, int64_t d, float scale,
                           const AttnLayout& inL, const AttnLayout& outL);

}  // namespace ds
