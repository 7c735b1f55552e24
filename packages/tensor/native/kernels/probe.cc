// Peak-throughput probes for benchmarks: how many f32 FMA (or bf16 dot-product) FLOP per second one
// core sustains when nothing but independent FMAs run. Twelve independent accumulator chains hide
// the instruction latency, so the figure is the issue rate of the FMA units at the current clock,
// the honest denominator for "fraction of peak" on a machine whose turbo clock is not reported.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "ds/kernels.h"
#include "ds/tile.h"

namespace ds {
namespace {

constexpr int kChains = 12;

template <class F>
double bestRate(double seconds, double flopsPerCall, F&& f) {
  using Clock = std::chrono::steady_clock;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  double best = 0.0;
  float sink = 0.0f;
  do {
    const auto t0 = Clock::now();
    sink += f();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, flopsPerCall / dt);
  } while (Clock::now() < end);
  return sink == 1.2345f ? best + 1e-9 : best;  // keeps the work observable
}

// The sum of the lanes (stored and added: GCC 12's _mm512_reduce_add_ps trips -Wuninitialized).
DS_TARGET_AVX512 float lanesSum(__m512 v) {
  alignas(64) float out[16];
  _mm512_store_ps(out, v);
  float s = 0.0f;
  for (float x : out) s += x;
  return s;
}

DS_TARGET_AVX512 float fmaChains512(int64_t iters) {
  __m512 acc[kChains];
  const __m512 b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  return lanesSum(s);
}

DS_TARGET_AVX2 float fmaChains256(int64_t iters) {
  __m256 acc[kChains];
  const __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
  }
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0] + out[7];
}

DS_TARGET_AVX512BF16 float dotChains512(int64_t iters) {
  __m512 acc[kChains];
  const __m512bh b = (__m512bh)_mm512_set1_epi32(0x3f803f80);  // a pair of bf16 ones
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], b, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  return lanesSum(s);
}

// All four loads come before the three stores, as in AdamW's loop: the arrays are page-aligned
// alike, so a load issued after a store to another array at the same offset would wait on it
// (4 KiB aliasing) and the probe would measure that stall rather than the memory.
DS_INLINE void streamBody(float* p, const float* g, float* m, float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i], pi = p[i], mi = m[i], vi = v[i];
    p[i] = pi + gi;
    m[i] = mi + gi;
    v[i] = vi + gi;
  }
}
DS_VARIANTS(void, streamTile, streamBody, (float* p, const float* g, float* m, float* v, int64_t n), (p, g, m, v, n))

}  // namespace

void streamProbe(const Ctx& c, float* p, const float* g, float* m, float* v, int64_t n) {
  forTiles(c, n, [&](int64_t b, int64_t e, int) { streamTileAt(c.isa, p + b, g + b, m + b, v + b, e - b); });
}

PeakProbe probePeak(const Ctx& c, double seconds) {
  constexpr int64_t kIters = 200000;
  PeakProbe p{0.0, 0.0};
  if (c.isa >= Isa::Avx512) {
    p.f32FmaGflops = bestRate(seconds, 2.0 * 16 * kChains * kIters, [&] { return fmaChains512(kIters); }) / 1e9;
    if (c.bf16Dot) p.bf16DotGflops = bestRate(seconds, 4.0 * 16 * kChains * kIters, [&] { return dotChains512(kIters); }) / 1e9;
  } else if (c.isa >= Isa::Avx2) {
    p.f32FmaGflops = bestRate(seconds, 2.0 * 8 * kChains * kIters, [&] { return fmaChains256(kIters); }) / 1e9;
  }
  return p;
}

CoresProbe probeCores(const Ctx& c, double seconds) {
  using Clock = std::chrono::steady_clock;
  const int threads = c.pool->size();
  CoresProbe out{0.0, 0.0, threads, 0};
  const bool wide = c.isa >= Isa::Avx512;
  if (!wide && c.isa < Isa::Avx2) return out;
  // ~2 ms per call at two FMAs a cycle: the pool's wake-up (tens of microseconds) stays below 2%.
  constexpr int64_t kIters = 1000000;
  const double flopsPerThread = 2.0 * (wide ? 16 : 8) * kChains * kIters;
  std::vector<float> sinks(static_cast<size_t>(threads), 0.0f);
  double wall = 0.0;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  do {
    const auto t0 = Clock::now();
    c.pool->parallelFor(threads, 1, [&](int64_t i0, int64_t i1, int tid) {
      for (int64_t i = i0; i < i1; ++i) sinks[static_cast<size_t>(tid)] += wide ? fmaChains512(kIters) : fmaChains256(kIters);
    });
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    wall += dt;
    ++out.calls;
    out.bestGflopsPerCore = std::max(out.bestGflopsPerCore, flopsPerThread / dt / 1e9);  // all threads' flops / dt / threads
  } while (Clock::now() < end);
  out.meanGflopsPerCore = flopsPerThread * out.calls / wall / 1e9;
  float sink = 0.0f;
  for (float x : sinks) sink += x;
  if (sink == 1.2345f) out.bestGflopsPerCore += 1e-9;  // keeps the work observable
  return out;
}

}  // namespace ds
