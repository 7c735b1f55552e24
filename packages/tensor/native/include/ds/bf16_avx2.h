// bf16 <-> f32 for 8 lanes of AVX2, shared by the kernels that convert in registers (the GEMM
// packing and microkernel's bf16 C, GELU's table lookups): the same rounding as f32ToBf16 in
// ds/dtype_bits.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "ds/simd.h"

namespace ds {

// 8 f32 -> 8 bf16 bits, as f32ToBf16 (round to nearest even, NaN kept quiet).
DS_TARGET_AVX2 DS_INLINE __m128i bf16x8(__m256 v) {
  const __m256i b = _mm256_castps_si256(v);
  const __m256i hi = _mm256_srli_epi32(b, 16);
  const __m256i rne = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(1)), _mm256_set1_epi32(0x7fff))), 16);
  const __m256i nan = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
  const __m256i isNan = _mm256_cmpgt_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
  // Values fit 16 bits: pack each 128-bit lane's four, then take the two lanes' low halves.
  const __m256i packed = _mm256_packus_epi32(_mm256_blendv_epi8(rne, nan, isNan), _mm256_setzero_si256());
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}

// 8 bf16 at p -> 8 f32 (exact).
DS_TARGET_AVX2 DS_INLINE __m256 widenBf16x8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

}  // namespace ds
