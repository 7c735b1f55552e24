// Element-wise reductions of the shared-memory collectives. Float dtypes are reduced in f32 in rank
// order and rounded once (round to nearest even) into the destination dtype, so every rank computes
// bit-identical results; integers wrap. src/comm/reference.ts is the TypeScript specification.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ds/dtype_bits.h"

namespace ds::comm {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, U8 = 4 };
enum class RedOp : int { Sum = 0, Avg = 1, Max = 2, Min = 3 };

size_t dtypeSize(DType d);
bool validDType(int d);
bool validRedOp(int op);

// dsts[j][i] = reduce(srcs[0][i], ..., srcs[nsrc-1][i]) for every j; a destination may alias a
// source. Avg divides the f32 sum by `nsrc` before rounding.
void reduceInto(DType dtype, RedOp op, const void* const* srcs, int nsrc, void* const* dsts, int ndst, size_t count);

// The scalar conversions are @ds/tensor's (ds/dtype_bits.h), so both addons round alike.
using ::ds::bf16ToF32;
using ::ds::bitsOf;
using ::ds::f16ToF32;
using ::ds::f32ToBf16;
using ::ds::f32ToF16;
using ::ds::floatOf;

}  // namespace ds::comm
