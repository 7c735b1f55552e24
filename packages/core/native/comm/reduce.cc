// Reduction kernels. Work proceeds in blocks small enough for L1: the block of every source is read
// into an f32 (or integer) accumulator before any destination is written, which makes in-place
// (destination == source) reductions safe.
#include "ds/comm/reduce.h"

#include <cmath>
#include <cstring>

namespace ds::comm {

namespace {
constexpr size_t kBlock = 2048;


// NaN wins in max/min so that a NaN anywhere is reported, as torch.maximum does.
inline float fmaxNan(float a, float b) { return (a != a) ? a : (b != b) ? b : (a > b ? a : b); }
inline float fminNan(float a, float b) { return (a != a) ? a : (b != b) ? b : (a < b ? a : b); }

template <typename Load>
void floatBlock(RedOp op, const void* const* srcs, int nsrc, size_t at, size_t n, float* acc, Load load) {
  load(srcs[0], at, n, acc);
  float tmp[kBlock];
  for (int s = 1; s < nsrc; s++) {
    load(srcs[s], at, n, tmp);
    switch (op) {
      case RedOp::Sum:
      case RedOp::Avg:
        for (size_t i = 0; i < n; i++) acc[i] += tmp[i];
        break;
      case RedOp::Max:
        for (size_t i = 0; i < n; i++) acc[i] = fmaxNan(acc[i], tmp[i]);
        break;
      case RedOp::Min:
        for (size_t i = 0; i < n; i++) acc[i] = fminNan(acc[i], tmp[i]);
        break;
    }
  }
  if (op == RedOp::Avg) {
    const float div = static_cast<float>(nsrc);
    for (size_t i = 0; i < n; i++) acc[i] = acc[i] / div;
  }
}

void loadF32(const void* p, size_t at, size_t n, float* out) { std::memcpy(out, static_cast<const float*>(p) + at, n * 4); }
void loadBf16(const void* p, size_t at, size_t n, float* out) {
  const uint16_t* h = static_cast<const uint16_t*>(p) + at;
  for (size_t i = 0; i < n; i++) out[i] = floatOf(static_cast<uint32_t>(h[i]) << 16);
}
void loadF16(const void* p, size_t at, size_t n, float* out) {
  const uint16_t* h = static_cast<const uint16_t*>(p) + at;
  for (size_t i = 0; i < n; i++) out[i] = f16ToF32(h[i]);
}

template <typename T, typename Acc>
void intReduce(RedOp op, const void* const* srcs, int nsrc, void* const* dsts, int ndst, size_t count) {
  Acc acc[kBlock];
  for (size_t at = 0; at < count; at += kBlock) {
    const size_t n = count - at < kBlock ? count - at : kBlock;
    const T* s0 = static_cast<const T*>(srcs[0]) + at;
    for (size_t i = 0; i < n; i++) acc[i] = static_cast<Acc>(s0[i]);
    for (int s = 1; s < nsrc; s++) {
      const T* p = static_cast<const T*>(srcs[s]) + at;
      if (op == RedOp::Sum) {
        for (size_t i = 0; i < n; i++) acc[i] = static_cast<Acc>(acc[i] + static_cast<Acc>(p[i]));
      } else if (op == RedOp::Max) {
        for (size_t i = 0; i < n; i++) acc[i] = static_cast<T>(acc[i]) > p[i] ? acc[i] : static_cast<Acc>(p[i]);
      } else {
        for (size_t i = 0; i < n; i++) acc[i] = static_cast<T>(acc[i]) < p[i] ? acc[i] : static_cast<Acc>(p[i]);
      }
    }
    for (int d = 0; d < ndst; d++) {
      T* out = static_cast<T*>(dsts[d]) + at;
      for (size_t i = 0; i < n; i++) out[i] = static_cast<T>(acc[i]);
    }
  }
}
}  // namespace

size_t dtypeSize(DType d) {
  switch (d) {
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::BF16:
    case DType::F16:
      return 2;
    case DType::U8:
      return 1;
  }
  return 1;
}
bool validDType(int d) { return d >= 0 && d <= 4; }
bool validRedOp(int op) { return op >= 0 && op <= 3; }

void reduceInto(DType dtype, RedOp op, const void* const* srcs, int nsrc, void* const* dsts, int ndst, size_t count) {
  if (nsrc <= 0 || count == 0) return;
  switch (dtype) {
    case DType::I32:
      return intReduce<int32_t, uint32_t>(op, srcs, nsrc, dsts, ndst, count);
    case DType::U8:
      return intReduce<uint8_t, uint8_t>(op, srcs, nsrc, dsts, ndst, count);
    default:
      break;
  }
  if (dtype == DType::F32 && nsrc == 2 && (op == RedOp::Sum)) {
    // The hot case (two-rank f32 sum) in one pass without the accumulator round trip.
    const float* a = static_cast<const float*>(srcs[0]);
    const float* b = static_cast<const float*>(srcs[1]);
    for (size_t at = 0; at < count; at += kBlock) {
      const size_t n = count - at < kBlock ? count - at : kBlock;
      float acc[kBlock];
      for (size_t i = 0; i < n; i++) acc[i] = a[at + i] + b[at + i];
      for (int d = 0; d < ndst; d++) std::memcpy(static_cast<float*>(dsts[d]) + at, acc, n * 4);
    }
    return;
  }
  float acc[kBlock];
  for (size_t at = 0; at < count; at += kBlock) {
    const size_t n = count - at < kBlock ? count - at : kBlock;
    if (dtype == DType::F32) {
      floatBlock(op, srcs, nsrc, at, n, acc, loadF32);
      for (int d = 0; d < ndst; d++) std::memcpy(static_cast<float*>(dsts[d]) + at, acc, n * 4);
    } else if (dtype == DType::BF16) {
      floatBlock(op, srcs, nsrc, at, n, acc, loadBf16);
      uint16_t out[kBlock];
      for (size_t i = 0; i < n; i++) out[i] = f32ToBf16(acc[i]);
      for (int d = 0; d < ndst; d++) std::memcpy(static_cast<uint16_t*>(dsts[d]) + at, out, n * 2);
    } else {
      floatBlock(op, srcs, nsrc, at, n, acc, loadF16);
      uint16_t out[kBlock];
      for (size_t i = 0; i < n; i++) out[i] = f32ToF16(acc[i]);
      for (int d = 0; d < ndst; d++) std::memcpy(static_cast<uint16_t*>(dsts[d]) + at, out, n * 2);
    }
  }
}

}  // namespace ds::comm
