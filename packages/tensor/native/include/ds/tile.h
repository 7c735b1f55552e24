// Streaming kernels work on f32 tiles: an f32 operand is used in place, a bf16/f16 one is converted
// into a small buffer first and converted back after. This keeps each kernel's arithmetic written
// once, in f32, and the dtype handling in the (vectorized) converters of cast.cc.
#pragma once
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

// Runs f(begin, end, tid) over [0, n) in parallel chunks, each cut into tiles of at most kTile.
template <class F>
void forTiles(const Ctx& c, int64_t n, F&& f) {
  c.pool->parallelFor(n, kTaskGrain, [&](int64_t b, int64_t e, int tid) {
    for (int64_t i = b; i < e; i += kTile) f(i, std::min(e, i + kTile), tid);
  });
}

}  // namespace ds
