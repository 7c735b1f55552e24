// In-register transposes of 32-bit elements shared by the GEMM packing and attention: 8 x 8 (AVX2)
// and 16 x 16 (AVX-512), and a strip transpose built on the latter.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "ds/simd.h"

namespace ds {

// r[i] holds row i on entry and column i on return: unpack pairs, then 2 x 2 blocks, then the two
// 128-bit halves.
DS_TARGET_AVX2 DS_INLINE void transpose8(__m256 (&r)[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

// In-register transpose of a 16 x 16 block of 32-bit elements: unpack pairs, then 2 x 2 blocks,
// then 128-bit lanes (two rounds), each round doubling the size of the transposed sub-blocks.
DS_TARGET_AVX512 DS_INLINE void transpose16(__m512 (&r)[16]) {
  __m512 t[16], u[16], v[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
    v[4 + j] = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    v[8 + j] = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
    v[12 + j] = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm512_shuffle_f32x4(v[j], v[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(v[j], v[8 + j], 0xDD);
    r[4 + j] = _mm512_shuffle_f32x4(v[4 + j], v[12 + j], 0x88);
    r[12 + j] = _mm512_shuffle_f32x4(v[4 + j], v[12 + j], 0xDD);
  }
}

// d[p * ld + r] = rows[r][p] for p < count and r < w <= 16, 32-bit elements; rows from `live` on are
// zero (gemm.cc).
DS_TARGET_AVX512 void transposeStrip(const unsigned char* const* rows, int live, int64_t count, int w, int64_t ld,
                                     uint32_t* d);

}  // namespace ds
