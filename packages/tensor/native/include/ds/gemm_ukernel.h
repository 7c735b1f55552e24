// GEMM microkernels (gemm_ukernel.cc) as the driver (gemm.cc) sees them. A microkernel multiplies a
// packed MR x kc strip of A by a packed kc x NR strip of B in registers and writes the top-left
// mr x nr corner of the tile: C = alpha * acc + beta * C (C is not read when beta == 0), plus bias[j]
// in column j when `bias` (f32, the tile's nr columns) is not null; the driver never passes both a
// bias and beta != 0. C is f32, or bf16 (`cBf16`, rounded to nearest even once per element) for
// shapes with `bf16C`.
//   f32 packing:  A strip [kc][MR], B strip [kc][NR].
//   bf16 packing: k is split in pairs, A strip [kc/2][MR][2], B strip [kc/2][NR][2] (zero-padded),
//                 the operand layout of vdpbf16ps.
#pragma once
#include <cstdint>

#include "ds/cpu.h"

namespace ds {

using UkrF32 = void (*)(int64_t kc, const float* a, const float* b, void* c, int64_t ldc, bool cBf16, float alpha,
                        float beta, const float* bias, int mr, int nr);
using UkrBf16 = void (*)(int64_t kpairs, const uint16_t* a, const uint16_t* b, void* c, int64_t ldc, bool cBf16,
                         float alpha, float beta, const float* bias, int mr, int nr);

struct GemmShape {
  int mr, nr;            // register tile
  int64_t mc, kc, nc;    // cache blocks (mc multiple of mr, nc of nr, kc even)
  bool bf16Pairs;        // operands packed as bf16 pairs for `bf16`, else as f32 for `f32`
  Isa packIsa;           // the widest ISA the packers may use (AVX-512: 16 x 16 transposes of 32-bit
                         // blocks; AVX2: 8 x 8 transposes and bf16 -> f32 widening, for strips of 6 or 16)
  bool bf16C;            // the microkernels can write a bf16 C directly
  UkrF32 f32;
  UkrBf16 bf16;
};

// The f32 microkernels: 14x32 (AVX-512), 6x16 (AVX2), 4x8 (baseline SSE2).
extern const GemmShape kGemmAvx512;
extern const GemmShape kGemmAvx2;
extern const GemmShape kGemmScalar;
// 14x32 over bf16 pairs with vdpbf16ps (AVX512_BF16).
extern const GemmShape kGemmAvx512Bf16;

}  // namespace ds
