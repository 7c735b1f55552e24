// Data movement: the f32 <-> bf16/f16 row converters every kernel uses, cast between any two dtypes
// (the same rounding and wrapping as the TypeScript reference), copy, fill and the strided gather.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ds/bf16_avx512.h"
#include "ds/kernels.h"

// GCC 12's own _mm512_cvtph_ps/_mm512_cvtps_ph headers trip -Wmaybe-uninitialized (their
// "undefined" pass-through operand); the warning is about the header, not this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace ds {

namespace {

DS_INLINE void bf16ToF32Body(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16ToF32(x[i]);
}
DS_INLINE void f32ToBf16Body(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32ToBf16(x[i]);
}
DS_VARIANTS(void, bf16ToF32Row, bf16ToF32Body, (const uint16_t* x, float* y, int64_t n), (x, y, n))
DS_VARIANTS(void, f32ToBf16Row, f32ToBf16Body, (const float* x, uint16_t* y, int64_t n), (x, y, n))

// f32 -> bf16 with AVX512_BF16 for the cast kernel, 32 at a time by roundBf16x32 (a group holding a
// subnormal by the exact integer rule): the same bits; a 4.7M cast on 2 Zen 4 cores 0.48 -> 0.37 ms.
// Only the cast kernel takes it: for the short strided rows other kernels store (attention's
// 64-element gradient rows) it made attention 2-4% slower, its stores bunching into cache misses that
// the integer rounding had spread out (in-process A/B, both GPT shapes).
DS_TARGET_AVX512BF16 void f32ToBf16Cvt(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 32) {
    const int64_t len = std::min<int64_t>(32, n - i);
    const __mmask32 m = len == 32 ? 0xffffffffu : static_cast<__mmask32>((1u << len) - 1);
    const __m512 lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), x + i);
    const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> 16), x + i + 16);
    __m512i h;
    if (roundBf16x32(lo, hi, h)) _mm512_mask_storeu_epi16(y + i, m, h);
    else f32ToBf16RowAt(Isa::Avx512, x + i, y + i, len);
  }
}

void f16ToF32Scalar(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f16ToF32(x[i]);
}
void f32ToF16Scalar(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32ToF16(x[i]);
}

// F16C converts with the same round-to-nearest-even; only NaN payloads differ from dtype.ts, so
// lanes holding NaN are redone by the scalar rule.
DS_TARGET_AVX2 void f16ToF32Avx2(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  f16ToF32Scalar(x + i, y + i, n - i);
}
DS_TARGET_AVX2 void f32ToF16Avx2(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) f32ToF16Scalar(x + i, y + i, 8);
  }
  f32ToF16Scalar(x + i, y + i, n - i);
}
DS_TARGET_AVX512 void f16ToF32Avx512(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))));
  f16ToF32Avx2(x + i, y + i, n - i);
}
DS_TARGET_AVX512 void f32ToF16Avx512(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) f32ToF16Scalar(x + i, y + i, 16);
  }
  f32ToF16Avx2(x + i, y + i, n - i);
}

// JS typed-array store semantics for i32/u8 targets: truncate toward zero, wrap modulo 2^32, NaN/Inf -> 0.
DS_INLINE uint32_t wrapToU32(double v) {
  if (!std::isfinite(v)) return 0;
  double t = std::fmod(std::trunc(v), 4294967296.0);
  if (t < 0) t += 4294967296.0;
  return static_cast<uint32_t>(t);
}

double readAny(DType d, const void* p, int64_t i) {
  switch (d) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::BF16: return bf16ToF32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16ToF32(static_cast<const uint16_t*>(p)[i]);
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    default: return static_cast<const uint8_t*>(p)[i];
  }
}

void writeAny(DType d, void* p, int64_t i, double v) {
  switch (d) {
    case DType::F32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    // dtype.ts rounds a JS number to f32 first, then to 16 bits: the same double rounding here.
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32ToBf16(static_cast<float>(v)); break;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32ToF16(static_cast<float>(v)); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(wrapToU32(v)); break;
    default: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(wrapToU32(v) & 0xffu); break;
  }
}

bool isFloat(DType d) { return d == DType::F32 || d == DType::BF16 || d == DType::F16; }

constexpr int64_t kChunk = 1 << 16;  // elements per task for the streaming kernels

}  // namespace

void toF32(Isa isa, DType src, const void* x, float* y, int64_t n) {
  const auto* h = static_cast<const uint16_t*>(x);
  if (src == DType::F32) std::memcpy(y, x, static_cast<size_t>(n) * 4);
  else if (src == DType::BF16) bf16ToF32RowAt(isa, h, y, n);
  else if (isa >= Isa::Avx512) f16ToF32Avx512(h, y, n);
  else if (isa >= Isa::Avx2) f16ToF32Avx2(h, y, n);
  else f16ToF32Scalar(h, y, n);
}

void fromF32(Isa isa, DType dst, const float* x, void* y, int64_t n) {
  auto* h = static_cast<uint16_t*>(y);
  if (dst == DType::F32) std::memmove(y, x, static_cast<size_t>(n) * 4);
  else if (dst == DType::BF16) f32ToBf16RowAt(isa, x, h, n);
  else if (isa >= Isa::Avx512) f32ToF16Avx512(x, h, n);
  else if (isa >= Isa::Avx2) f32ToF16Avx2(x, h, n);
  else f32ToF16Scalar(x, h, n);
}

void castKernel(const Ctx& c, DType st, const void* src, DType dt, void* dst, int64_t n) {
  const int sb = dtypeBytes(st), db = dtypeBytes(dt);
  c.pool->parallelFor(n, kChunk, [&](int64_t b, int64_t e, int tid) {
    const auto* s = static_cast<const unsigned char*>(src) + b * sb;
    auto* d = static_cast<unsigned char*>(dst) + b * db;
    if (st == dt) std::memcpy(d, s, static_cast<size_t>((e - b) * sb));
    else if (st == DType::F32 && dt == DType::BF16 && c.isa >= Isa::Avx512 && c.bf16Dot)
      f32ToBf16Cvt(reinterpret_cast<const float*>(s), reinterpret_cast<uint16_t*>(d), e - b);
    else if (st == DType::F32 && isFloat(dt)) fromF32(c.isa, dt, reinterpret_cast<const float*>(s), d, e - b);
    else if (dt == DType::F32 && isFloat(st)) toF32(c.isa, st, s, reinterpret_cast<float*>(d), e - b);
    else
      for (int64_t i = 0; i < e - b; ++i) writeAny(dt, d, i, readAny(st, s, i));
  });
}

void copyKernel(const Ctx& c, const void* src, void* dst, int64_t bytes) {
  c.pool->parallelFor(bytes, 4 * kChunk, [&](int64_t b, int64_t e, int) {
    std::memmove(static_cast<unsigned char*>(dst) + b, static_cast<const unsigned char*>(src) + b, static_cast<size_t>(e - b));
  });
}

void fillKernel(const Ctx& c, DType dtype, void* x, int64_t n, double value) {
  unsigned char bits[4];
  writeAny(dtype, bits, 0, value);
  const int eb = dtypeBytes(dtype);
  c.pool->parallelFor(n, kChunk, [&](int64_t b, int64_t e, int) {
    auto* p = static_cast<unsigned char*>(x) + b * eb;
    for (int64_t i = 0; i < e - b; ++i) std::memcpy(p + i * eb, bits, static_cast<size_t>(eb));
  });
}

namespace {

// The leading indices of row r of a view (a row is its last dimension), advanced like an odometer:
// one add per row rather than rank - 1 divisions (64-bit divisions per row cost more than copying a
// 64-element row).
struct RowWalk {
  int outer;
  const int64_t *shape, *strides;
  int64_t idx[16];
  int64_t at;
  RowWalk(int64_t offset, int rank, const int64_t* sh, const int64_t* st, int64_t r) : outer(rank - 1), shape(sh), strides(st), at(offset) {
    for (int d = outer - 1; d >= 0; --d) {
      idx[d] = r % shape[d];
      r /= shape[d];
      at += idx[d] * strides[d];
    }
  }
  DS_INLINE void next() {
    for (int d = outer - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        at += strides[d];
        return;
      }
      at -= (shape[d] - 1) * strides[d];
      idx[d] = 0;
    }
  }
};

// Rows of a permuted view start far apart in the source (an attention head split reads 128-byte rows
// 32 KiB apart), a pattern the hardware prefetchers do not follow, so each row waited on L3 or memory:
// a second walk kPrefetchRows ahead fetches the rows' lines early.
constexpr int64_t kPrefetchRows = 8;

template <typename T>
void gatherRows(const T* src, int64_t offset, int rank, const int64_t* shape, const int64_t* strides, T* dst, int64_t r0,
                int64_t r1) {
  const int64_t inner = shape[rank - 1], step = strides[rank - 1];
  RowWalk row(offset, rank, shape, strides, r0);
  const bool prefetch = step == 1 && inner * static_cast<int64_t>(sizeof(T)) <= 512;
  RowWalk ahead(offset, rank, shape, strides, std::min(r1, r0 + kPrefetchRows));
  for (int64_t r = r0; r < r1; ++r) {
    if (prefetch && r + kPrefetchRows < r1) {
      const char* p = reinterpret_cast<const char*>(src + ahead.at);
      for (int64_t b = 0; b < inner * static_cast<int64_t>(sizeof(T)); b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
      ahead.next();
    }
    T* out = dst + r * inner;
    if (step == 1) std::memcpy(out, src + row.at, static_cast<size_t>(inner) * sizeof(T));
    else
      for (int64_t j = 0; j < inner; ++j) out[j] = src[row.at + j * step];
    row.next();
  }
}

}  // namespace

void gatherKernel(const Ctx& c, int elemBytes, const void* src, int64_t offset, int rank, const int64_t* shape,
                  const int64_t* strides, void* dst) {
  if (rank == 0) {
    std::memcpy(dst, static_cast<const unsigned char*>(src) + offset * elemBytes, static_cast<size_t>(elemBytes));
    return;
  }
  int64_t rows = 1;
  for (int d = 0; d < rank - 1; ++d) rows *= shape[d];
  if (rows == 0 || shape[rank - 1] == 0) return;
  const int64_t grain = std::max<int64_t>(1, kChunk / shape[rank - 1]);
  c.pool->parallelFor(rows, grain, [&](int64_t r0, int64_t r1, int) {
    if (elemBytes == 4) gatherRows(static_cast<const uint32_t*>(src), offset, rank, shape, strides, static_cast<uint32_t*>(dst), r0, r1);
    else if (elemBytes == 2) gatherRows(static_cast<const uint16_t*>(src), offset, rank, shape, strides, static_cast<uint16_t*>(dst), r0, r1);
    else gatherRows(static_cast<const uint8_t*>(src), offset, rank, shape, strides, static_cast<uint8_t*>(dst), r0, r1);
  });
}

}  // namespace ds
