// Streaming kernels work on f32 tiles: an f32 operand is used in place, a bf16/f16 one is converted
// into a small buffer first and converted back after. This keeps each kernel's arithmetic written
// once, in f32, and the dtype handling in the (vectorized) converters of cast.cc.
#pragma once
#include <algorithm>
#include <cstdint>

#include "ds/kernels.h"

namespace ds {

constexpr int64_t kTile = 2048;      // elements per converted tile (8 KiB of f32, stays in L1)
constexpr int64_t kTaskGrain = 1 << 15;  // elements per thread task below which threads are not woken

// Element `off` of a float array of dtype d, as f32: in place when f32, else converted into buf.
DS_INLINE const float* tileIn(Isa isa, DType d, const void* base, int64_t off, int64_t len, float* buf) {
  if (d == DType::F32) return static_cast<const float*>(base) + off;
  toF32(isa, d, static_cast<const uint16_t*>(base) + off, buf, len);
  return buf;
}
// Where to compute an output tile: in place when f32, else buf (then tileOut converts it back).
DS_INLINE float* tileDst(DType d, void* base, int64_t off, float* buf) {
  return d == DType::F32 ? static_cast<float*>(base) + off : buf;
}
DS_INLINE void tileOut(Isa isa, DType d, const float* buf, void* base, int64_t off, int64_t len) {
  if (d != DType::F32) fromF32(isa, d, buf, static_cast<uint16_t*>(base) + off, len);
}

// Elements per chunk that a thread takes at a time from a long array (1 MiB of f32).
constexpr int64_t kStreamChunk = 1 << 18;

// Runs f(begin, end, tid) over [0, n) in parallel chunks, each cut into tiles of at most kTile. An
// array of at least 4 chunks per thread is handed out chunk by chunk to whichever thread is free
// (parallelForDynamic), not in one fixed part per thread: on a VM the host stalls one virtual CPU
// now and then for milliseconds, and with fixed parts the other thread then waited at the end
// (AdamW over 50M parameters on 2 threads, median of 31 steps: 35.8 -> 32.9 ms in a noisy window,
// 1-3% in quiet ones). Each element is still computed by the same code, so the bits are the same.
template <class F>
void forTiles(const Ctx& c, int64_t n, F&& f) {
  const int64_t chunks = (n + kStreamChunk - 1) / kStreamChunk;
  if (c.pool->size() > 1 && chunks >= 4 * c.pool->size()) {
    c.pool->parallelForDynamic(chunks, [&](int64_t ci, int64_t, int tid) {
      const int64_t b = ci * kStreamChunk, e = std::min(n, b + kStreamChunk);
      for (int64_t i = b; i < e; i += kTile) f(i, std::min(e, i + kTile), tid);
    });
    return;
  }
  c.pool->parallelFor(n, kTaskGrain, [&](int64_t b, int64_t e, int tid) {
    for (int64_t i = b; i < e; i += kTile) f(i, std::min(e, i + kTile), tid);
  });
}

}  // namespace ds
