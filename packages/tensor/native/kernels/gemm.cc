// Batched GEMM, C = alpha * op(A) op(B) + beta * C, with the BLIS loop structure:
//   jc (nc columns of C) -> pc (kc of k: pack a kc x nc panel of B) -> ic (mc rows: pack an mc x kc
//   block of A) -> jr (nr strips of B) -> ir (mr strips of A) -> microkernel (gemm_ukernel.cc).
// The packed B strip stays in L1 across the ir loop, the packed A block in L2, the B panel in L3.
// Packing also applies the transposes and converts bf16 to f32 when the chosen microkernel is f32.
// Threads split each product along whichever of m and n is larger (or over the batch), and every
// thread packs its own operands, so there is no barrier inside a product; one product (batch 1) is
// cut into blocks of rows or columns that threads take as they free up (gemmDynamic), a batch or a
// product too small for that into one fixed slice per thread (gemmSerial).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ds/bf16_avx2.h"
#include "ds/gemm_ukernel.h"
#include "ds/kernels.h"
#include "ds/transpose8.h"

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized on their "undefined" pass-through
// operands when inlined here; the warning concerns the header, not this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace ds {

// transposeStrip (ds/transpose8.h): GEMM packing of a strip whose k runs along memory (A, or B
// transposed), 256 elements at a time; attention's Q^T and dO^T pairs.
DS_TARGET_AVX512 void transposeStrip(const unsigned char* const* rows, int live, int64_t count, int w, int64_t ld,
                                     uint32_t* d) {
  const __mmask16 wm = static_cast<__mmask16>((1u << w) - 1);
  for (int64_t p = 0; p < count; p += 16) {
    const int64_t len = std::min<int64_t>(16, count - p);
    const __mmask16 lm = len == 16 ? 0xffff : static_cast<__mmask16>((1u << len) - 1);
    __m512 r[16];
    if (p + 64 < count)  // the rows are separate streams: fetch 256 bytes ahead in each (1-2% at 1024^3)
      for (int i = 0; i < live; ++i) _mm_prefetch(reinterpret_cast<const char*>(rows[i] + 4 * (p + 64)), _MM_HINT_T0);
    for (int i = 0; i < 16; ++i)
      r[i] = i < live ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi32(lm, rows[i] + 4 * p)) : _mm512_setzero_ps();
    transpose16(r);
    for (int64_t i = 0; i < len; ++i) _mm512_mask_storeu_epi32(d + (p + i) * ld, wm, _mm512_castps_si512(r[i]));
  }
}

namespace {

// Element (r, c) of op(X) lives at p[r * rs + c * cs]; dt is F32 or BF16.
struct Operand {
  const void* p;
  DType dt;
  int64_t rs, cs;
  DS_INLINE float at(int64_t r, int64_t c) const {
    const int64_t i = r * rs + c * cs;
    return dt == DType::F32 ? static_cast<const float*>(p)[i] : bf16ToF32(static_cast<const uint16_t*>(p)[i]);
  }
  DS_INLINE uint16_t bf16At(int64_t r, int64_t c) const { return static_cast<const uint16_t*>(p)[r * rs + c * cs]; }
  Operand shifted(int64_t r, int64_t c) const {
    const int64_t bytes = (r * rs + c * cs) * (dt == DType::F32 ? 4 : 2);
    return {static_cast<const unsigned char*>(p) + bytes, dt, rs, cs};
  }
};

// ---- AVX2 packing for the 6 x 16 f32 microkernel, from f32 or bf16 (widened to f32 here) ----
// Measured at 1024^3 f32 on one thread (Zen 3): the packing's share of the product fell from 9% (a
// scalar transpose of A, a memcpy per 64-byte line of B) to 3.5%; for the GPT bench's bf16 products,
// which went element by element through Operand::at, from 5-13% to 3-7%.

// 8 consecutive elements at p as f32.
template <bool Bf16>
DS_TARGET_AVX2 DS_INLINE __m256 load8(const void* p) {
  if (!Bf16) return _mm256_loadu_ps(static_cast<const float*>(p));
  return widenBf16x8(static_cast<const uint16_t*>(p));
}

// k contiguous (A, or B transposed): d[p * w + r] = rows[r][p] for p < kc, r < w (w = 6 or 16),
// rows from `live` on zero. 8 x 8 transposes, 8 rows at a time; a 6-row group stores 8 lanes per k
// and lets the next k overwrite the 2 spare ones (the last k of a block stores exactly 6).
template <bool Bf16>
DS_TARGET_AVX2 void packRowsAvx2(const unsigned char* const* rows, int live, int64_t kc, int w, float* d) {
  constexpr int64_t esz = Bf16 ? 2 : 4;
  for (int h = 0; h < w; h += 8) {
    const int hw = std::min(8, w - h), hl = std::max(0, std::min(hw, live - h));
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = i < hl ? load8<Bf16>(rows[h + i] + esz * p) : _mm256_setzero_ps();
      transpose8(r);
      float* o = d + p * w + h;
      if (hw == 8) {
        for (int j = 0; j < 8; ++j) _mm256_storeu_ps(o + j * w, r[j]);
      } else {  // hw == 6
        for (int j = 0; j < 7; ++j) _mm256_storeu_ps(o + j * w, r[j]);
        _mm_storeu_ps(o + 7 * w, _mm256_castps256_ps128(r[7]));
        _mm_storel_pi(reinterpret_cast<__m64*>(o + 7 * w + 4), _mm256_extractf128_ps(r[7], 1));
      }
    }
    for (; p < kc; ++p)
      for (int i = 0; i < hw; ++i) {
        const unsigned char* e = i < hl ? rows[h + i] + esz * p : nullptr;
        d[p * w + h + i] = !e ? 0.0f : Bf16 ? bf16ToF32(*reinterpret_cast<const uint16_t*>(e)) : *reinterpret_cast<const float*>(e);
      }
  }
}

// Rows contiguous (B, or A transposed): line p of strip t is the `live` elements at
// src + p * ld + t * w, zero-padded to w = 6 or 16; `rows` rows make the strips. Walking one strip
// at a time would read a few bytes of every line, each line a page apart; instead k goes in blocks
// of kLineBlock lines and each block is read across all strips, so every line streams in order.
constexpr int64_t kLineBlock = 8;

template <bool Bf16>
DS_TARGET_AVX2 DS_INLINE void copyLine(const unsigned char* l, int live, int w, float* d) {
  constexpr int esz = Bf16 ? 2 : 4;
  if (w == 16 && live == 16) {
    _mm256_storeu_ps(d, load8<Bf16>(l));
    _mm256_storeu_ps(d + 8, load8<Bf16>(l + 8 * esz));
  } else if (w == 6 && live == 6) {
    __m128 lo, hi;
    if (Bf16) {
      int32_t e45;
      __builtin_memcpy(&e45, l + 8, 4);
      const __m128i v = _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(l)));
      lo = _mm_castsi128_ps(_mm_slli_epi32(v, 16));
      hi = _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(_mm_cvtsi32_si128(e45)), 16));
    } else {
      lo = _mm_loadu_ps(reinterpret_cast<const float*>(l));
      hi = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(l + 16)));
    }
    _mm_storeu_ps(d, lo);
    _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), hi);
  } else {
    for (int r = 0; r < w; ++r)
      d[r] = r >= live ? 0.0f : Bf16 ? bf16ToF32(reinterpret_cast<const uint16_t*>(l)[r]) : reinterpret_cast<const float*>(l)[r];
  }
}

template <bool Bf16>
DS_TARGET_AVX2 void packLinesAvx2(const unsigned char* src, int64_t ld, int64_t rows, int64_t kc, int w, float* dst) {
  constexpr int64_t esz = Bf16 ? 2 : 4;
  for (int64_t p0 = 0; p0 < kc; p0 += kLineBlock) {
    const int64_t p1 = std::min(kc, p0 + kLineBlock);
    for (int64_t t = 0; t * w < rows; ++t) {
      const int live = static_cast<int>(std::min<int64_t>(w, rows - t * w));
      for (int64_t p = p0; p < p1; ++p) copyLine<Bf16>(src + esz * (p * ld + t * w), live, w, dst + (t * kc + p) * w);
    }
  }
}

// packF32 on AVX2 (strips of 6 or 16, f32 or bf16 elements): false for a layout it does not handle,
// one with neither k nor the rows contiguous.
DS_TARGET_AVX2 bool packF32Avx2(const Operand& x, int64_t r0, int64_t p0, int64_t rows, int64_t kc, int w, float* dst) {
  if ((w != 6 && w != 16) || (x.cs != 1 && x.rs != 1)) return false;
  const bool bf = x.dt == DType::BF16;
  const int64_t esz = bf ? 2 : 4;
  const auto* base = static_cast<const unsigned char*>(x.p);
  if (x.cs == 1) {  // k contiguous: transpose each strip's rows
    for (int64_t s = 0; s * w < rows; ++s) {
      const int live = static_cast<int>(std::min<int64_t>(w, rows - s * w));
      const unsigned char* lines[16];
      for (int r = 0; r < live; ++r) lines[r] = base + esz * ((r0 + s * w + r) * x.rs + p0);
      if (bf) packRowsAvx2<true>(lines, live, kc, w, dst + s * kc * w);
      else packRowsAvx2<false>(lines, live, kc, w, dst + s * kc * w);
    }
  } else {  // rows contiguous (rs == 1): copy pieces of k lines
    const unsigned char* src = base + esz * (p0 * x.cs + r0);
    if (bf) packLinesAvx2<true>(src, x.cs, rows, kc, w, dst);
    else packLinesAvx2<false>(src, x.cs, rows, kc, w, dst);
  }
  return true;
}

// Packs the rows x kc block of op(X) starting at (r0, p0) into strips of `w` rows: dst[s][p][w].
// For B pass the transposed view (rows = columns of op(B)), so one routine serves both operands.
// `isa` is the shape's packIsa: AVX-512 and AVX2 have fast paths for the usual layouts.
void packF32(const Operand& x, int64_t r0, int64_t p0, int64_t rows, int64_t kc, int w, float* dst, Isa isa) {
  const bool avx512 = isa >= Isa::Avx512;
  if (isa == Isa::Avx2 && packF32Avx2(x, r0, p0, rows, kc, w, dst)) return;
  for (int64_t s = 0; s * w < rows; ++s) {
    float* d = dst + s * kc * w;
    const int live = static_cast<int>(std::min<int64_t>(w, rows - s * w));
    const auto* base = static_cast<const float*>(x.p);
    if (avx512 && x.cs == 1 && x.dt == DType::F32 && (w <= 16 || w == 32)) {
      for (int h = 0; h < w; h += 16) {  // at most 16 rows per transpose: two halves of a 32-wide strip
        const int hw = std::min(16, w - h), hl = std::max(0, std::min(hw, live - h));
        const unsigned char* lines[16];
        for (int r = 0; r < hl; ++r) lines[r] = reinterpret_cast<const unsigned char*>(base + (r0 + s * w + h + r) * x.rs + p0);
        transposeStrip(lines, hl, kc, hw, w, reinterpret_cast<uint32_t*>(d) + h);
      }
      continue;  // rows from `live` on were written as zeros
    }
    if (x.cs == 1 && x.dt == DType::F32) {  // k is contiguous: read rows, write columns of the strip
      for (int r = 0; r < live; ++r) {
        const float* src = base + (r0 + s * w + r) * x.rs + p0;
        for (int64_t p = 0; p < kc; ++p) d[p * w + r] = src[p];
      }
    } else if (x.rs == 1 && x.dt == DType::F32) {  // the strip's rows are contiguous: copy k lines
      for (int64_t p = 0; p < kc; ++p) std::memcpy(d + p * w, base + (p0 + p) * x.cs + r0 + s * w, sizeof(float) * live);
    } else {
      for (int64_t p = 0; p < kc; ++p)
        for (int r = 0; r < live; ++r) d[p * w + r] = x.at(r0 + s * w + r, p0 + p);
    }
    for (int r = live; r < w; ++r)
      for (int64_t p = 0; p < kc; ++p) d[p * w + r] = 0.0f;
  }
}

// The same for bf16 pairs: dst[s][q][w][2] holds X(r, p0 + 2q) and X(r, p0 + 2q + 1).
// Two layouts have fast paths: k contiguous (each pair is one 32-bit word: a word transpose) and
// rows contiguous (two k lines interleaved 16 bits at a time with vpermt2w); others go element-wise.
// vpermt2w indices: output lane 2j takes l0[j] (index j), lane 2j + 1 takes l1[j] (index 32 + j);
// the second half does the same for j + 16.
alignas(64) constexpr uint16_t kInterleaveLo[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                    8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
alignas(64) constexpr uint16_t kInterleaveHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                    24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};

// The rows-contiguous case for strips of 32 (B not transposed). Walking one strip at a time would
// touch 64 bytes of every k line (a page every other line: the prefetchers give up); walking k
// outermost over all strips reads sequentially but writes to every strip at once. So k goes in
// blocks of kPackPairs pairs (16 lines, 32 KiB at n = 1024, held in L1): each block is read from
// memory once, in order, and written strip by strip, 1 KiB contiguous each (measured: the packing's
// share of a 1024^3 product fell from 3.4% to 2.1%). dst is 64-byte aligned, as is each pair (64 bf16).
constexpr int64_t kPackPairs = 8;

DS_TARGET_AVX512 void interleaveRows(const uint16_t* x, int64_t ld, int64_t rows, int64_t kc, uint16_t* dst) {
  const int64_t kp = (kc + 1) / 2, strips = (rows + 31) / 32;
  const __m512i lo = _mm512_load_si512(kInterleaveLo), hi = _mm512_load_si512(kInterleaveHi);
  for (int64_t q0 = 0; q0 < kp; q0 += kPackPairs) {
    const int64_t q1 = std::min(kp, q0 + kPackPairs);
    for (int64_t s = 0; s < strips; ++s) {
      const int64_t live = std::min<int64_t>(32, rows - 32 * s);
      const __mmask32 m = live >= 32 ? 0xffffffffu : ((1u << live) - 1);
      for (int64_t q = q0; q < q1; ++q) {
        const uint16_t* l0 = x + 2 * q * ld + 32 * s;
        const bool pair = 2 * q + 1 < kc;  // an odd kc pairs the last line with zeros
        if (2 * q + 2 * kPackPairs + 1 < kc) {  // the same 64 bytes of the next block's lines (~1%)
          _mm_prefetch(reinterpret_cast<const char*>(l0 + 2 * kPackPairs * ld), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(l0 + (2 * kPackPairs + 1) * ld), _MM_HINT_T0);
        }
        const __m512i a = _mm512_maskz_loadu_epi16(m, l0);
        const __m512i b = pair ? _mm512_maskz_loadu_epi16(m, l0 + ld) : _mm512_setzero_si512();
        uint16_t* d = dst + (s * kp + q) * 64;
        _mm512_store_si512(d, _mm512_permutex2var_epi16(a, lo, b));
        _mm512_store_si512(d + 32, _mm512_permutex2var_epi16(a, hi, b));
      }
    }
  }
}

// The rows-contiguous case for narrow strips (w <= 16: A transposed): line l of the block is the
// `rows` elements at x + l * ld; strip t takes rows [t w, t w + w) of each pair of lines. k goes in
// blocks of kPackPairs pairs with the next block's lines prefetched (each a separate page for m >=
// 2048), rather than every strip walking all k lines 2 * m bytes apart (measured: a transposed-A
// product of 8192 x 256 x 2048 went from 261 to 313-326 GFLOP/s on one thread; untransposed: 354-379).
// Each pair of lines is read once for all strips, which take their pieces of it in turn: lines
// 2 * m bytes apart share one L1 set, so a block's 16 lines do not all stay in L1 between strips (the
// strip-outer order read each line once per strip), and the interleave is inline (it was a call per
// strip and pair).
DS_TARGET_AVX512 void packNarrowPairs(const uint16_t* x, int64_t ld, int64_t rows, int64_t kc, int w, uint16_t* dst) {
  const int64_t kp = (kc + 1) / 2, strips = (rows + w - 1) / w;
  const __m512i lo = _mm512_load_si512(kInterleaveLo);
  const __mmask32 full = static_cast<__mmask32>((1ull << (2 * w)) - 1);
  for (int64_t q0 = 0; q0 < kp; q0 += kPackPairs) {
    const int64_t q1 = std::min(kp, q0 + kPackPairs);
    for (int64_t l = 2 * q1; l < std::min(kc, 2 * q1 + 2 * kPackPairs); ++l) {
      for (int64_t r = 0; r < rows; r += 32) _mm_prefetch(reinterpret_cast<const char*>(x + l * ld + r), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(x + l * ld + rows - 1), _MM_HINT_T0);
    }
    for (int64_t q = q0; q < q1; ++q) {
      const uint16_t* l0 = x + 2 * q * ld;
      const bool pair = 2 * q + 1 < kc;  // an odd kc pairs the last line with zeros
      for (int64_t t = 0; t < strips; ++t) {
        const int64_t live = std::min<int64_t>(w, rows - t * w);
        const __mmask32 m = static_cast<__mmask32>((1u << live) - 1);
        const __m512i a = _mm512_maskz_loadu_epi16(m, l0 + t * w);
        const __m512i b = pair ? _mm512_maskz_loadu_epi16(m, l0 + ld + t * w) : _mm512_setzero_si512();
        _mm512_mask_storeu_epi16(dst + (t * kp + q) * w * 2, full, _mm512_permutex2var_epi16(a, lo, b));
      }
    }
  }
}

void packPairs(const Operand& x, int64_t r0, int64_t p0, int64_t rows, int64_t kc, int w, uint16_t* dst, Isa isa) {
  const bool avx512 = isa >= Isa::Avx512;
  const int64_t kp = (kc + 1) / 2;
  const auto* base = static_cast<const uint16_t*>(x.p);
  for (int64_t s = 0; s * w < rows; ++s) {
    uint16_t* d = dst + s * kp * w * 2;
    const int live = static_cast<int>(std::min<int64_t>(w, rows - s * w));
    if (avx512 && x.cs == 1 && (w <= 16 || w == 32)) {  // each pair is one 32-bit word: transpose words
      for (int h = 0; h < w; h += 16) {  // at most 16 rows per transpose: two halves of a 32-wide strip
        const int hw = std::min(16, w - h), hl = std::max(0, std::min(hw, live - h));
        const unsigned char* lines[16];
        for (int r = 0; r < hl; ++r) lines[r] = reinterpret_cast<const unsigned char*>(base + (r0 + s * w + h + r) * x.rs + p0);
        transposeStrip(lines, hl, kc / 2, hw, w, reinterpret_cast<uint32_t*>(d) + h);
      }
      if (kc & 1) {  // the last pair holds one element and a zero
        for (int r = 0; r < w; ++r) {
          d[((kp - 1) * w + r) * 2] = r < live ? base[(r0 + s * w + r) * x.rs + p0 + kc - 1] : 0;
          d[((kp - 1) * w + r) * 2 + 1] = 0;
        }
      }
      continue;
    }
    if (x.cs == 1) {  // k contiguous: copy 32-bit pairs, transposing rows and pairs
      for (int r = 0; r < live; ++r) {
        const uint16_t* src = base + (r0 + s * w + r) * x.rs + p0;
        for (int64_t q = 0; q < kc / 2; ++q) std::memcpy(d + (q * w + r) * 2, src + 2 * q, 4);
        if (kc & 1) {
          d[((kp - 1) * w + r) * 2] = src[kc - 1];
          d[((kp - 1) * w + r) * 2 + 1] = 0;
        }
      }
      for (int64_t q = 0; q < kp; ++q)
        for (int r = live; r < w; ++r) d[(q * w + r) * 2] = d[(q * w + r) * 2 + 1] = 0;
      continue;
    }
    if (avx512 && x.rs == 1 && w == 32) {  // rows contiguous: interleave pairs of k lines, all strips at once
      interleaveRows(base + p0 * x.cs + r0, x.cs, rows, kc, dst);
      return;
    }
    if (avx512 && x.rs == 1 && w <= 16) {  // rows contiguous, narrow strips (A transposed)
      packNarrowPairs(base + p0 * x.cs + r0, x.cs, rows, kc, w, dst);
      return;
    }
    for (int64_t q = 0; q < kp; ++q) {
      uint16_t* dq = d + q * w * 2;
      const bool odd = 2 * q + 1 >= kc;
      for (int r = 0; r < live; ++r) {
        dq[2 * r] = x.bf16At(r0 + s * w + r, p0 + 2 * q);
        dq[2 * r + 1] = odd ? 0 : x.bf16At(r0 + s * w + r, p0 + 2 * q + 1);
      }
      for (int r = live; r < w; ++r) dq[2 * r] = dq[2 * r + 1] = 0;
    }
  }
}

// Packs rows [r0, r0 + rows) x k [p0, p0 + kc) of X into strips of w for the shape's microkernel:
// bf16 pairs or f32.
void packFor(const GemmShape& g, const Operand& x, int64_t r0, int64_t p0, int64_t rows, int64_t kc, int w,
             unsigned char* dst) {
  if (g.bf16Pairs) packPairs(x, r0, p0, rows, kc, w, reinterpret_cast<uint16_t*>(dst), g.packIsa);
  else packF32(x, r0, p0, rows, kc, w, reinterpret_cast<float*>(dst), g.packIsa);
}

// The shape's microkernel on packed strips whose k is ks (padded to pairs for bf16); `bias` (f32, the
// tile's columns, or null) is added in its epilogue.
DS_INLINE void ukrFor(const GemmShape& g, int64_t ks, const unsigned char* as, const unsigned char* bs, void* ct,
                      int64_t ldc, bool cBf16, float alpha, float beta, const float* bias, int mr, int nr) {
  if (g.bf16Pairs)
    g.bf16(ks / 2, reinterpret_cast<const uint16_t*>(as), reinterpret_cast<const uint16_t*>(bs), ct, ldc, cBf16, alpha, beta, bias, mr, nr);
  else
    g.f32(ks, reinterpret_cast<const float*>(as), reinterpret_cast<const float*>(bs), ct, ldc, cBf16, alpha, beta, bias, mr, nr);
}

// Rows [0, rows) x columns [0, cols) of C (row stride ldc, elements of esz bytes) set to the bias row,
// for the paths that do not add the bias in the microkernel's epilogue: a bf16 C summed over several
// k blocks in an f32 workspace (C gets the bias, then the rounded workspace with beta = 1) and k = 0.
// (The microkernels used to start every tile from a C filled so, with beta = 1: writing the tile's
// lines and reading them back cost 7-10% of a GPT bias product, 2048 x 1024 x 256 to bf16 on 2 Zen 4
// cores, against the same product without a bias; the epilogue add costs nothing measurable.)
// The usual tile widths copy with constant sizes, inlined as vector moves (a library memcpy call per
// row of a 6 x 16 tile cost about as much as the row itself).
template <size_t Bytes>
DS_INLINE void fillRows(unsigned char* c, size_t stride, const void* bias, int64_t rows) {
  for (int64_t i = 0; i < rows; ++i) __builtin_memcpy(c + i * stride, bias, Bytes);
}
DS_INLINE void fillBias(void* c, int64_t ldc, size_t esz, const void* bias, int64_t rows, int64_t cols) {
  auto* dst = static_cast<unsigned char*>(c);
  const size_t bytes = esz * cols, stride = esz * ldc;
  if (bytes == 32) return fillRows<32>(dst, stride, bias, rows);
  if (bytes == 64) return fillRows<64>(dst, stride, bias, rows);
  if (bytes == 128) return fillRows<128>(dst, stride, bias, rows);
  for (int64_t i = 0; i < rows; ++i) std::memcpy(dst + i * stride, bias, bytes);
}

// One product on one thread: C[m, n] (row stride ldc) = alpha * op(A) op(B) + beta * C, C f32 or, when
// `cBf16` (only for shapes with bf16C and k <= kc: one k block, so one rounding), bf16.
// `bt` is op(B) transposed, i.e. rows of bt are columns of op(B). A non-null `bias` (n f32 values; beta
// is then 0) is added to every row: C = alpha * op(A) op(B) + bias, in the first k block's epilogue.
void gemmSerial(const GemmShape& g, ThreadPool& pool, int tid, int64_t m, int64_t n, int64_t k, const Operand& a,
                const Operand& bt, float alpha, float beta, void* c, int64_t ldc, bool cBf16 = false,
                const float* bias = nullptr) {
  if (k == 0) {  // (with a bias, gemmKernel fills C itself)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        if (cBf16) {
          uint16_t& x = static_cast<uint16_t*>(c)[i * ldc + j];
          x = f32ToBf16(beta == 0.0f ? 0.0f : beta * bf16ToF32(x));
        } else {
          float& x = static_cast<float*>(c)[i * ldc + j];
          x = beta == 0.0f ? 0.0f : beta * x;
        }
      }
    return;
  }
  const int64_t cElem = cBf16 ? 2 : 4;
  const int64_t kcMax = std::min(g.kc, k), ncMax = std::min(g.nc, n), mcMax = std::min(g.mc, m);
  const int64_t kStore = g.bf16Pairs ? (kcMax + 1) / 2 * 2 : kcMax;  // padded k of a packed strip
  const size_t elem = g.bf16Pairs ? 2 : 4;
  auto* packedB = static_cast<unsigned char*>(pool.scratch(tid, 1, elem * kStore * ((ncMax + g.nr - 1) / g.nr * g.nr)));
  auto* packedA = static_cast<unsigned char*>(pool.scratch(tid, 0, elem * kStore * ((mcMax + g.mr - 1) / g.mr * g.mr)));
  for (int64_t jc = 0; jc < n; jc += g.nc) {
    const int64_t nc = std::min(g.nc, n - jc);
    for (int64_t pc = 0; pc < k; pc += g.kc) {
      const int64_t kc = std::min(g.kc, k - pc);
      const int64_t ks = g.bf16Pairs ? (kc + 1) / 2 * 2 : kc;
      packFor(g, bt, jc, pc, nc, kc, g.nr, packedB);
      const float betaNow = pc == 0 ? beta : 1.0f;  // later k blocks add onto the first
      for (int64_t ic = 0; ic < m; ic += g.mc) {
        const int64_t mc = std::min(g.mc, m - ic);
        packFor(g, a, ic, pc, mc, kc, g.mr, packedA);
        for (int64_t jr = 0; jr < nc; jr += g.nr) {
          const int nr = static_cast<int>(std::min<int64_t>(g.nr, nc - jr));
          const unsigned char* bs = packedB + elem * ks * jr;
          for (int64_t ir = 0; ir < mc; ir += g.mr) {
            const int mr = static_cast<int>(std::min<int64_t>(g.mr, mc - ir));
            const unsigned char* as = packedA + elem * ks * ir;
            void* ct = static_cast<unsigned char*>(c) + ((ic + ir) * ldc + jc + jr) * cElem;
            ukrFor(g, ks, as, bs, ct, ldc, cBf16, alpha, betaNow, bias && pc == 0 ? bias + jc + jr : nullptr, mr, nr);
          }
        }
      }
    }
  }
}

// Row j of an f32 workspace into bf16 C: row[j] = bf16(ws[j] + beta * row[j]), branch-free per element
// so that each ISA's variant vectorizes.
DS_INLINE int roundRowBody(const float* ws, uint16_t* row, int64_t n, float beta) {
  if (beta == 0.0f)
    for (int64_t j = 0; j < n; ++j) row[j] = f32ToBf16(ws[j]);
  else
    for (int64_t j = 0; j < n; ++j) row[j] = f32ToBf16(ws[j] + beta * bf16ToF32(row[j]));
  return 0;
}
DS_VARIANTS(int, roundRow, roundRowBody, (const float* ws, uint16_t* row, int64_t n, float beta), (ws, row, n, beta))

const GemmShape& pickShape(const Ctx& c, DType dt) {
  if (c.isa >= Isa::Avx512) return dt == DType::BF16 && c.bf16Dot ? kGemmAvx512Bf16 : kGemmAvx512;
  return c.isa >= Isa::Avx2 ? kGemmAvx2 : kGemmScalar;
}

// One product (batch 1) on several threads, balanced as it runs: the larger of m and n is cut into
// units (blocks of mc rows of C, or of nu columns) that threads take in turn (parallelForDynamic),
// rather than into one fixed slice per thread, where the thread a busy host slowed held the others
// up at the end (measured on a 2-vCPU VM: 7% of the GEMM time of a quiet GPT step, 16% of a noisy
// one, spent by one thread waiting for the other). The operand every unit reads in full (op(B) for
// row units, op(A) for column units) is packed whole, every k block, once per thread on its first
// unit: the static split packed it once per thread too, so the balance costs no packing. A unit
// walks all k blocks itself, so its C is never shared: f32 C takes the k blocks in order (beta, then
// 1); a bf16 C is written from the registers when k fits one block, else a unit sums into its own f32
// workspace and rounds once at the end, as the static path does.
struct DynamicPlan {
  bool byCols;          // units are column blocks of C (n >= m), else row blocks
  int64_t unit, units;  // unit width (rows or columns) and count
  int64_t kBlocks, kcStore, blockBytes;  // k blocks of g.kc; a full block's k as packed (pairs padded);
                                          // one k block of the shared operand, in bytes
  bool direct;          // C written by the microkernels (f32, or bf16 with one k block and bf16C)
};

// False when the product should take the static path (one unit only, or a shared operand too large to
// pack whole per thread).
bool planDynamic(const GemmShape& g, const GemmParams& p, int threads, DynamicPlan& d) {
  if (threads < 2 || p.batch != 1 || p.k == 0) return false;
  const size_t elem = g.bf16Pairs ? 2 : 4;
  d.byCols = p.n >= p.m;
  d.kBlocks = (p.k + g.kc - 1) / g.kc;
  const int64_t kcFull = std::min(g.kc, p.k);
  d.kcStore = g.bf16Pairs ? (kcFull + 1) / 2 * 2 : kcFull;
  const int64_t w = d.byCols ? g.mr : g.nr, sharedRows = d.byCols ? p.m : p.n;
  d.blockBytes = static_cast<int64_t>(elem) * d.kcStore * ((sharedRows + w - 1) / w * w);
  if (d.blockBytes * d.kBlocks > (int64_t{32} << 20)) return false;  // 32 MiB per thread at most
  // Column units read their blocks of op(A) from the whole packed A (L3) and reuse each over only
  // nu / nr strips, where the static split packs an A block into L2 per k block and reuses it over all
  // its n / threads columns: with several k blocks that lost more than the balance won (TN 256 x 1024
  // x 2048: 135-159 vs 155-159 GFLOP/s on 2 threads), so column units are for one k block only.
  if (d.byCols && d.kBlocks > 1) return false;
  if (d.byCols) {
    // Columns: a unit's packed B block (kc x unit) should stay within half the L2 of a core next to
    // the A block it meets (256 KiB: 256 columns at kc 256 in f32, 128 at kc 512), and there should be
    // at least 4 units a thread to balance.
    int64_t nu = std::max<int64_t>(g.nr, (int64_t{256} << 10) / (static_cast<int64_t>(elem) * d.kcStore) / g.nr * g.nr);
    while (nu > g.nr && (p.n + nu - 1) / nu < 4 * threads) nu = std::max<int64_t>(g.nr, nu / 2 / g.nr * g.nr);
    d.unit = nu;
  } else {
    // Rows: one mc block per unit. With several k blocks a unit walks them all itself, so each k
    // block of the shared op(B) (kc x n) is read from L3 for one unit's rows, where the static split
    // reuses it over all of a thread's rows; that only paid with many units to balance and a shared
    // op(B) of a few MiB (measured on 2 threads: 2048 x 256 x 1024, 22 units and 1 MiB, 3-5% faster;
    // 768 x 256 x 2048, 8 units, 5-6% slower; 2048 x 256 x 8192, 8 MiB, best of 21 6% slower).
    d.unit = g.mc;
    if (d.kBlocks > 1 && ((p.m + g.mc - 1) / g.mc < 8 * threads || d.blockBytes * d.kBlocks > (int64_t{2} << 20))) return false;
  }
  d.units = ((d.byCols ? p.n : p.m) + d.unit - 1) / d.unit;
  if (d.units < 2) return false;
  d.direct = p.outDtype == DType::F32 || (g.bf16C && p.k <= g.kc);
  return true;
}

void gemmDynamic(const Ctx& c, const GemmShape& g, const GemmParams& p, const DynamicPlan& d, const Operand& a,
                 const Operand& bt, const float* biasF32) {
  const int64_t m = p.m, n = p.n, k = p.k;
  const size_t elem = g.bf16Pairs ? 2 : 4;
  const bool cBf16 = p.outDtype != DType::F32;
  const int64_t csz = cBf16 ? 2 : 4;
  // The shared operand (op(A) in strips of mr for column units, op(B) in strips of nr for row units),
  // every k block, packed once into one buffer, each thread a range of its strips, before any unit
  // reads it. (Each thread used to pack all of it for itself on its first unit: twice the packing
  // on two threads, measured at 2-4% of a GPT step's products.)
  const int64_t w = d.byCols ? g.mr : g.nr, sharedRows = d.byCols ? m : n;
  const int64_t strips = (sharedRows + w - 1) / w, parts = std::min<int64_t>(strips, c.pool->size());
  auto* shared = static_cast<unsigned char*>(c.pool->scratch(0, 1, static_cast<size_t>(d.blockBytes * d.kBlocks)));
  c.pool->parallelFor(d.kBlocks * parts, 1, [&](int64_t i0, int64_t i1, int) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t b = it / parts, part = it % parts;
      const int64_t s0 = strips * part / parts, s1 = strips * (part + 1) / parts;
      if (s0 >= s1) continue;
      const int64_t pc = b * g.kc, kc = std::min(g.kc, k - pc);
      const int64_t ks = g.bf16Pairs ? (kc + 1) / 2 * 2 : kc;
      const int64_t r0 = s0 * w, rows = std::min(sharedRows, s1 * w) - r0;
      packFor(g, d.byCols ? a : bt, r0, pc, rows, kc, static_cast<int>(w), shared + b * d.blockBytes + elem * ks * w * s0);
    }
  });
  c.pool->parallelForDynamic(d.units, [&](int64_t u, int64_t, int tid) {
    const int64_t lo = u * d.unit, len = std::min(d.unit, (d.byCols ? n : m) - lo);
    const int64_t um = d.byCols ? m : len, un = d.byCols ? len : n;  // this unit's part of C: um x un
    const int64_t i0 = d.byCols ? 0 : lo, j0 = d.byCols ? lo : 0;
    // Where the microkernels write: C itself, or (bf16 C over several k blocks) an f32 workspace.
    void* cu = static_cast<unsigned char*>(p.c) + (i0 * n + j0) * csz;
    int64_t ldc = n;
    if (!d.direct) {
      cu = c.pool->scratch(tid, 2, sizeof(float) * um * un);
      ldc = un;
    }
    const int64_t cElem = d.direct ? csz : 4;
    const bool toBf16 = d.direct && cBf16;
    // The bias is added by the microkernels on the first k block (direct: biasF32, beta 0), else put
    // into C (C's dtype) before the workspace is rounded onto it with beta 1.
    const auto* biasAt = static_cast<const unsigned char*>(p.bias);
    const float* tileBias = d.direct ? biasF32 : nullptr;
    const float pBeta = biasAt ? 1.0f : p.beta;
    const int64_t ownRows = d.byCols ? un : um, ownW = d.byCols ? g.nr : g.mr;
    auto* own = static_cast<unsigned char*>(
        c.pool->scratch(tid, 0, elem * d.kcStore * ((ownRows + ownW - 1) / ownW * ownW)));
    for (int64_t b = 0; b < d.kBlocks; ++b) {
      const int64_t pc = b * g.kc, kc = std::min(g.kc, k - pc);
      const int64_t ks = g.bf16Pairs ? (kc + 1) / 2 * 2 : kc;
      const float beta = b > 0 ? 1.0f : d.direct ? p.beta : 0.0f;
      const unsigned char* sh = shared + b * d.blockBytes;
      if (d.byCols) {
        packFor(g, bt, j0, pc, un, kc, g.nr, own);  // this unit's columns of op(B)
        for (int64_t ic = 0; ic < m; ic += g.mc) {
          const int64_t mc = std::min(g.mc, m - ic);
          for (int64_t jr = 0; jr < un; jr += g.nr) {
            const int nr = static_cast<int>(std::min<int64_t>(g.nr, un - jr));
            for (int64_t ir = 0; ir < mc; ir += g.mr) {
              const int mr = static_cast<int>(std::min<int64_t>(g.mr, mc - ir));
              void* ct = static_cast<unsigned char*>(cu) + ((ic + ir) * ldc + jr) * cElem;
              ukrFor(g, ks, sh + elem * ks * (ic + ir), own + elem * ks * jr, ct, ldc, toBf16, p.alpha, beta,
                     tileBias && b == 0 ? tileBias + j0 + jr : nullptr, mr, nr);
            }
          }
        }
      } else {
        packFor(g, a, i0, pc, um, kc, g.mr, own);  // this unit's rows of op(A)
        for (int64_t jr = 0; jr < n; jr += g.nr) {
          const int nr = static_cast<int>(std::min<int64_t>(g.nr, n - jr));
          for (int64_t ir = 0; ir < um; ir += g.mr) {
            const int mr = static_cast<int>(std::min<int64_t>(g.mr, um - ir));
            void* ct = static_cast<unsigned char*>(cu) + (ir * ldc + jr) * cElem;
            ukrFor(g, ks, own + elem * ks * ir, sh + elem * ks * jr, ct, ldc, toBf16, p.alpha, beta,
                   tileBias && b == 0 ? tileBias + jr : nullptr, mr, nr);
          }
        }
      }
    }
    if (!d.direct) {
      auto* cr = static_cast<uint16_t*>(p.c);
      const auto* ws = static_cast<const float*>(cu);
      if (biasAt) fillBias(cr + i0 * n + j0, n, 2, biasAt + j0 * 2, um, un);
      for (int64_t i = 0; i < um; ++i) roundRowAt(c.isa, ws + i * un, cr + (i0 + i) * n + j0, un, pBeta);
    }
  });
}

}  // namespace

void gemmKernel(const Ctx& c, const GemmParams& p) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  const GemmShape& g = pickShape(c, p.dtype);
  // op(A)[i, l] and the transposed view of op(B): bt[j, l] = op(B)[l, j].
  const Operand a{p.a, p.dtype, p.transA ? 1 : p.k, p.transA ? p.m : 1};
  const Operand bt{p.b, p.dtype, p.transB ? p.k : 1, p.transB ? 1 : p.n};
  const int threads = c.pool->size();
  const double flops = 2.0 * p.m * p.n * static_cast<double>(p.k) * p.batch;
  const int csz = p.outDtype == DType::F32 ? 4 : 2;
  if (p.k == 0 && p.bias) {  // C is the bias in every row
    for (int64_t bi = 0; bi < p.batch; ++bi)
      fillBias(static_cast<unsigned char*>(p.c) + bi * p.strideC * csz, p.n, csz, p.bias, p.m, p.n);
    return;
  }
  // The bias as f32 for the microkernels' epilogues (a bf16 bias widens exactly).
  std::vector<float> biasF32;
  if (p.bias) {
    biasF32.resize(static_cast<size_t>(p.n));
    toF32(c.isa, p.outDtype, p.bias, biasF32.data(), p.n);
  }
  DynamicPlan plan;
  if (flops >= 2e6 && planDynamic(g, p, threads, plan)) return gemmDynamic(c, g, p, plan, a, bt, p.bias ? biasF32.data() : nullptr);
  const bool splitN = p.n >= p.m;
  const int64_t extent = splitN ? p.n : p.m, unit = splitN ? g.nr : g.mr;
  const int64_t units = (extent + unit - 1) / unit;
  int64_t slices = p.batch >= threads ? 1 : std::min<int64_t>(units, (threads + p.batch - 1) / p.batch);
  const int64_t items = p.batch * slices;
  const int64_t grain = flops < 2e6 ? items : 1;  // small products are not worth waking threads for
  const int esz = p.dtype == DType::F32 ? 4 : 2;
  c.pool->parallelFor(items, grain, [&](int64_t i0, int64_t i1, int tid) {
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t bi = item / slices, s = item % slices;
      const int64_t lo = units * s / slices * unit, hi = std::min(extent, units * (s + 1) / slices * unit);
      if (lo >= hi) continue;
      const int64_t m0 = splitN ? 0 : lo, m = splitN ? p.m : hi - lo;
      const int64_t n0 = splitN ? lo : 0, n = splitN ? hi - lo : p.n;
      Operand ab{static_cast<const unsigned char*>(p.a) + bi * p.strideA * esz, p.dtype, a.rs, a.cs};
      Operand bb{static_cast<const unsigned char*>(p.b) + bi * p.strideB * esz, p.dtype, bt.rs, bt.cs};
      ab = ab.shifted(m0, 0);
      bb = bb.shifted(n0, 0);
      unsigned char* cb = static_cast<unsigned char*>(p.c) + (bi * p.strideC + m0 * p.n + n0) * csz;
      const unsigned char* bias = p.bias ? static_cast<const unsigned char*>(p.bias) + n0 * csz : nullptr;
      if (p.outDtype == DType::F32 || (g.bf16C && p.k <= g.kc)) {
        gemmSerial(g, *c.pool, tid, m, n, p.k, ab, bb, p.alpha, p.beta, cb, p.n, p.outDtype != DType::F32,
                   p.bias ? biasF32.data() + n0 : nullptr);
        continue;
      }
      // bf16 C over several k blocks (or on a kernel without bf16 stores): accumulate in an f32
      // workspace, then round once (C is read only when beta != 0).
      // The workspace covers at most kWsRows x kWsCols of C at a time, so a large C (an LM head)
      // does not need an f32 copy of itself; B is repacked per row block, 1/kWsRows of the work.
      constexpr int64_t kWsRows = 256, kWsCols = 4096;
      auto* ws = static_cast<float*>(c.pool->scratch(tid, 2, sizeof(float) * std::min(m, kWsRows) * std::min(n, kWsCols)));
      auto* cr = reinterpret_cast<uint16_t*>(cb);
      for (int64_t i0 = 0; i0 < m; i0 += kWsRows) {
        for (int64_t j0 = 0; j0 < n; j0 += kWsCols) {
          const int64_t mb = std::min(kWsRows, m - i0), nb = std::min(kWsCols, n - j0);
          gemmSerial(g, *c.pool, tid, mb, nb, p.k, ab.shifted(i0, 0), bb.shifted(j0, 0), p.alpha, 0.0f, ws, nb);
          if (bias) fillBias(cr + i0 * p.n + j0, p.n, 2, bias + j0 * 2, mb, nb);
          for (int64_t i = 0; i < mb; ++i) roundRowAt(c.isa, ws + i * nb, cr + (i0 + i) * p.n + j0, nb, bias ? 1.0f : p.beta);
        }
      }
    }
  });
}

}  // namespace ds
