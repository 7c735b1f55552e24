// The 1-bit compressor's kernels (DeepSpeed: the sign/packbits steps of runtime/comm/nccl.py's
// compressed_allreduce). Twins in TypeScript: src/reference/signs.ts.
//
// Bit order: numpy/cupy packbits, the first element of each group of 8 in the most significant bit.
// A bit is 1 for "not negative" (x >= 0, -0 and NaN included), DeepSpeed's sign(x) + 1 > 0 rule.
#pragma once
#include <cstdint>

namespace ds::onebit {

enum class Isa : int { Scalar = 0, Avx2 = 1 };

// The best ISA this CPU runs, capped by `requested` ("auto", "scalar", "avx2").
Isa selectIsa(const char* requested);
const char* isaName(Isa isa);

// x[i] += err[i] for i < n; returns the sum of squares of the corrected x (in double).
double addErrorSumSquares(Isa isa, float* x, const float* err, int64_t n);

// Packs sign bits of x[0, n) (n a multiple of 8) into bits[n / 8] and sets
// err[i] = x[i] - scale * (bit ? +1 : -1).
void compressSigns(Isa isa, const float* x, int64_t n, float scale, uint8_t* bits, float* err);

// out[i] (+)= scale * (bit i ? +1 : -1) for i < n (n a multiple of 8); `accumulate` adds instead of storing.
void unpackSigns(Isa isa, const uint8_t* bits, int64_t n, float scale, float* out, bool accumulate);

}  // namespace ds::onebit
