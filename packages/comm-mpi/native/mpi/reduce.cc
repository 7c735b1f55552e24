// User-defined MPI reductions and the average (specification: @ds/core's referenceReduce).
#include "ds/mpi/reduce.h"

#include "ds/dtype_bits.h"

namespace ds::mpi {

namespace {
// Reductions of bf16/f16 (raw 16-bit words): each pairwise step computes in f32 and
// rounds to the dtype (nearest even). MPI calls fn(in, inout): inout[i] = in[i] (op) inout[i].
template <bool Bf16>
float toF(uint16_t h) { return Bf16 ? ds::bf16ToF32(h) : ds::f16ToF32(h); }
template <bool Bf16>
uint16_t fromF(float f) { return Bf16 ? ds::f32ToBf16(f) : ds::f32ToF16(f); }

template <bool Bf16>
void sum16(void* in, void* inout, int* len, Handle*) {
  auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; i++) b[i] = fromF<Bf16>(toF<Bf16>(a[i]) + toF<Bf16>(b[i]));
}
template <bool Bf16, bool Max>
void ext16(void* in, void* inout, int* len, Handle*) {
  auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; i++) {
    const float x = toF<Bf16>(a[i]), y = toF<Bf16>(b[i]);
    if (x != x) b[i] = a[i];
    else if (y != y) continue;
    else if (Max ? x > y : x < y) b[i] = a[i];
  }
}

// u8 sums wrap (as the cpu backend's do); Open MPI 4.1's vectorised MPI_SUM on uint8 saturates.
void sumU8(void* in, void* inout, int* len, Handle*) {
  auto* a = static_cast<const uint8_t*>(in);
  auto* b = static_cast<uint8_t*>(inout);
  for (int i = 0; i < *len; i++) b[i] = static_cast<uint8_t>(a[i] + b[i]);
}

}  // namespace

size_t dtypeSize(DType d) {
  switch (d) {
    case DType::F32:
    case DType::I32: return 4;
    case DType::BF16:
    case DType::F16: return 2;
    case DType::U8: return 1;
  }
  return 1;
}

void createUserOps(const Abi& abi, UserOps& ops) {
  abi.Op_create(&sum16<true>, 1, &ops.sum16[0]);
  abi.Op_create(&sum16<false>, 1, &ops.sum16[1]);
  abi.Op_create(&ext16<true, true>, 1, &ops.max16[0]);
  abi.Op_create(&ext16<false, true>, 1, &ops.max16[1]);
  abi.Op_create(&ext16<true, false>, 1, &ops.min16[0]);
  abi.Op_create(&ext16<false, false>, 1, &ops.min16[1]);
  abi.Op_create(&sumU8, 1, &ops.sumU8);
}

Handle mpiOpFor(const Abi& abi, const UserOps& ops, DType dtype, RedOp redop) {
  const bool half = dtype == DType::BF16 || dtype == DType::F16;
  const int hi = dtype == DType::BF16 ? 0 : 1;
  if (redop == RedOp::Max) return half ? ops.max16[hi] : abi.opMax;
  if (redop == RedOp::Min) return half ? ops.min16[hi] : abi.opMin;
  if (half) return ops.sum16[hi];
  return dtype == DType::U8 ? ops.sumU8 : abi.opSum;
}

void averageInPlace(DType dtype, uint8_t* out, uint64_t count, int size) {
  const float n = static_cast<float>(size);
  if (dtype == DType::F32) {
    auto* p = reinterpret_cast<float*>(out);
    for (uint64_t i = 0; i < count; i++) p[i] = p[i] / n;
  } else if (dtype == DType::BF16 || dtype == DType::F16) {
    auto* p = reinterpret_cast<uint16_t*>(out);
    const bool bf = dtype == DType::BF16;
    for (uint64_t i = 0; i < count; i++) p[i] = bf ? ds::f32ToBf16(ds::bf16ToF32(p[i]) / n) : ds::f32ToF16(ds::f16ToF32(p[i]) / n);
  }
}

}  // namespace ds::mpi
