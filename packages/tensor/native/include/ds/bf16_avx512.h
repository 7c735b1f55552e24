// bf16 <-> f32 for 16 and 32 lanes of AVX-512, the counterpart of ds/bf16_avx2.h: widening in
// registers (the GEMM's bf16 C, sumRows, cross-entropy) and, with AVX512_BF16, rounding (the bf16
// GEMM's C store, the cast kernel).
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "ds/simd.h"

namespace ds {

// The bf16 at p under mask m -> 16 f32 (exact; lanes outside m are 0 and their memory is not read).
DS_TARGET_AVX512 DS_INLINE __m512 widenBf16x16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

// 32 f32 lanes (lo: elements 0-15, hi: 16-31) rounded to bf16 into `out` by one vcvtne2ps2bf16, which
// rounds to nearest even and quiets a NaN exactly as f32ToBf16 does (top half kept, bit 6 set) but
// reads a subnormal input as zero. So where a lane is subnormal this returns false and leaves `out`
// alone: the caller rounds those 32 by the exact integer rule, and the bits stay those of every other
// path.
DS_TARGET_AVX512BF16 DS_INLINE bool roundBf16x32(__m512 lo, __m512 hi, __m512i& out) {
  if (_mm512_fpclass_ps_mask(lo, 0x20) | _mm512_fpclass_ps_mask(hi, 0x20)) return false;
  out = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
  return true;
}

}  // namespace ds
