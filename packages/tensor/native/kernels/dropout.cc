// Inverted dropout with the counter-based mask of table.ts: the mask bit of element i depends only
// on (seed, offset + i), so any split among threads gives the same mask.
#include <cmath>

#include "ds/tile.h"

namespace ds {
namespace {

// u = (h >> 8) / 2^24 >= p  <=>  (h >> 8) >= ceil(p * 2^24), exact in integers.
DS_INLINE void maskBody(uint32_t seed, uint32_t first, uint32_t threshold, uint8_t* mask, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t h = seed + (first + static_cast<uint32_t>(i)) * 0x9E3779B9u;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    mask[i] = (h >> 8) >= threshold ? 1 : 0;
  }
}
DS_VARIANTS(void, maskTile, maskBody, (uint32_t seed, uint32_t first, uint32_t threshold, uint8_t* mask, int64_t n),
            (seed, first, threshold, mask, n))

DS_INLINE void applyBody(const float* x, const uint8_t* mask, float* y, int64_t n, float keep) {
  for (int64_t i = 0; i < n; ++i) y[i] = mask[i] ? x[i] * keep : 0.0f;
}
DS_VARIANTS(void, applyTile, applyBody, (const float* x, const uint8_t* mask, float* y, int64_t n, float keep),
            (x, mask, y, n, keep))

}  // namespace

void dropoutForward(const Ctx& c, DType d, const void* x, void* out, uint8_t* mask, int64_t n, double p, uint32_t seed,
                    uint32_t offset) {
  const double t = std::ceil(p * 16777216.0);
  const uint32_t threshold = t >= 16777216.0 ? 16777216u : static_cast<uint32_t>(t);  // 2^24: nothing kept
  const float keep = static_cast<float>(1.0 / (1.0 - p));
  forTiles(c, n, [&](int64_t b, int64_t e, int) {
    float bx[kTile], by[kTile];
    maskTileAt(c.isa, seed, offset + static_cast<uint32_t>(b), threshold, mask + b, e - b);
    const float* xs = tileIn(c.isa, d, x, b, e - b, bx);
    float* ys = tileDst(d, out, b, by);
    applyTileAt(c.isa, xs, mask + b, ys, e - b, keep);
    tileOut(c.isa, d, ys, out, b, e - b);
  });
}

}  // namespace ds
