// Elementwise kernels: cast, fill, the strided gather, unary and binary ops, scale, axpy, GELU,
// dropout and the fused AdamW step. Each is a grid-stride loop computing in f32 (double where the
// cpu twin does: casts to and from integers), with the dtype a template tag and the op a switch
// that is uniform across a launch.
#include <cmath>

#include "device.cuh"

namespace ds {
namespace cuda {
namespace {

// ---- cast and fill ----

__host__ __device__ inline uint32_t wrapToU32(double v) {
  if (!isfinite(v)) return 0;
  double t = fmod(trunc(v), 4294967296.0);
  if (t < 0) t += 4294967296.0;
  return static_cast<uint32_t>(t);
}

__device__ inline double readAny(DType d, const void* p, int64_t i) {
  switch (d) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::BF16: return bf16BitsToF32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16BitsToF32(static_cast<const uint16_t*>(p)[i]);
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    default: return static_cast<const uint8_t*>(p)[i];
  }
}

// JS typed-array store semantics for integers (truncate, wrap modulo 2^32, NaN/Inf -> 0); floats
// round to f32 first, then to 16 bits, as dtype.ts does.
__device__ inline void writeAny(DType d, void* p, int64_t i, double v) {
  switch (d) {
    case DType::F32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32ToBf16Bits(static_cast<float>(v)); break;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32ToF16Bits(static_cast<float>(v)); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(wrapToU32(v)); break;
    default: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(wrapToU32(v) & 0xffu); break;
  }
}

template <class S, class D>
__global__ void castFloatKernel(const typename S::T* src, typename D::T* dst, int64_t n) {
  DS_GRID_LOOP(i, n) dst[i] = D::from(S::load(src, i));
}

__global__ void castAnyKernel(DType st, const void* src, DType dt, void* dst, int64_t n) {
  DS_GRID_LOOP(i, n) writeAny(dt, dst, i, readAny(st, src, i));
}

template <class E>
__global__ void fillKernel(E* x, int64_t n, E bits) {
  DS_GRID_LOOP(i, n) x[i] = bits;
}

// The bits `value` has as one element of `d` (host side, same rules as writeAny).
uint32_t elementBits(DType d, double value) {
  const float f = static_cast<float>(value);
  switch (d) {
    case DType::F32: {
      uint32_t b;
      memcpy(&b, &f, 4);
      return b;
    }
    case DType::BF16: return f32ToBf16Bits(f);
    case DType::F16: {
      if (f != f) return 0x7e00u | ((f32ToBf16Bits(f) & 0x8000u));
      const __half h = __float2half_rn(f);
      uint16_t b;
      memcpy(&b, &h, 2);
      return b;
    }
    case DType::I32: return wrapToU32(value);
    default: return wrapToU32(value) & 0xffu;
  }
}

// ---- gather ----

struct GatherDims {
  int rank;
  int64_t shape[kMaxGatherRank];
  int64_t stride[kMaxGatherRank];
};

template <class E>
__global__ void gatherKernel(const E* src, int64_t offset, GatherDims g, E* dst, int64_t total) {
  DS_GRID_LOOP(j, total) {
    int64_t rem = j, at = offset;
    for (int d = g.rank - 1; d >= 0; --d) {
      const int64_t s = g.shape[d];
      const int64_t q = rem / s;
      at += (rem - q * s) * g.stride[d];
      rem = q;
    }
    dst[j] = src[at];
  }
}

// ---- unary, binary, scale, axpy ----

__device__ inline float unaryOp(UnaryOp op, float x) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return expf(x);
    case UnaryOp::Log: return logf(x);
    case UnaryOp::Sqrt: return sqrtf(x);
    case UnaryOp::Rsqrt: return 1.0f / sqrtf(x);
    case UnaryOp::Tanh: return tanhf(x);
    case UnaryOp::Relu: return x > 0.0f ? x : 0.0f;
    case UnaryOp::Abs: return fabsf(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Sigmoid: return 1.0f / (1.0f + expf(-x));
    case UnaryOp::Sign: return x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x;  // 0, -0 and NaN are their own sign
  }
  return x;
}

template <class E>
__global__ void unaryKernel(UnaryOp op, const typename E::T* x, typename E::T* out, int64_t n) {
  DS_GRID_LOOP(i, n) out[i] = E::from(unaryOp(op, E::load(x, i)));
}

// max/min propagate a NaN from a, like the cpu's (a >= b || a != a) ? a : b.
__device__ inline float binaryOp(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Max: return (a >= b || a != a) ? a : b;
    case BinaryOp::Min: return (a <= b || a != a) ? a : b;
  }
  return a;
}

// b repeats every bn elements: bn == n (same shape) and bn == 1 (scalar) are the common cases.
template <class E>
__global__ void binaryKernel(BinaryOp op, const typename E::T* a, const typename E::T* b, typename E::T* out, int64_t n,
                             int64_t bn) {
  DS_GRID_LOOP(i, n) {
    const int64_t j = bn == n ? i : bn == 1 ? 0 : i % bn;
    out[i] = E::from(binaryOp(op, E::load(a, i), E::load(b, j)));
  }
}

template <class E>
__global__ void scaleKernel(const typename E::T* x, typename E::T* out, int64_t n, float alpha, float beta) {
  DS_GRID_LOOP(i, n) out[i] = E::from(alpha * E::load(x, i) + beta);
}

template <class X, class Y>
__global__ void axpyKernel(const typename X::T* x, typename Y::T* y, int64_t n, float alpha) {
  DS_GRID_LOOP(i, n) y[i] = Y::from(Y::load(y, i) + alpha * X::load(x, i));
}

// ---- GELU (tanh approximation), dropout, AdamW ----

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

template <class E>
__global__ void geluForwardKernel(const typename E::T* x, typename E::T* y, int64_t n) {
  DS_GRID_LOOP(i, n) {
    const float v = E::load(x, i);
    y[i] = E::from(0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + kCubic * v * v * v))));
  }
}

template <class E>
__global__ void geluBackwardKernel(const typename E::T* dy, const typename E::T* x, typename E::T* dx, int64_t n) {
  DS_GRID_LOOP(i, n) {
    const float v = E::load(x, i);
    const float t = tanhf(kSqrt2OverPi * (v + kCubic * v * v * v));
    const float dt = (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kCubic * v * v);
    dx[i] = E::from(E::load(dy, i) * (0.5f * (1.0f + t) + 0.5f * v * dt));
  }
}

// The counter hash of table.ts: element i's bit depends on (seed, offset + i) only.
template <class E>
__global__ void dropoutKernel(const typename E::T* x, typename E::T* out, uint8_t* mask, int64_t n, uint32_t seed,
                              uint32_t offset, uint32_t threshold, float keep) {
  DS_GRID_LOOP(i, n) {
    uint32_t h = seed + (offset + static_cast<uint32_t>(i)) * 0x9E3779B9u;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    const bool kept = (h >> 8) >= threshold;
    mask[i] = kept ? 1 : 0;
    out[i] = E::from(kept ? E::load(x, i) * keep : 0.0f);
  }
}

struct AdamCoeffs {
  float gradScale, decay, l2, beta1, oneMinusBeta1, beta2, oneMinusBeta2, stepSize, invSqrtBc2, eps;
};

template <class G, class O>
__global__ void adamwKernel(float* p, const typename G::T* g, float* m, float* v, int64_t n, AdamCoeffs k,
                            typename O::T* out16) {
  DS_GRID_LOOP(i, n) {
    const float pi = p[i];
    const float w = pi * k.decay;  // decay is 1 - lr * wd when decoupled, else 1
    const float gi = G::load(g, i) * k.gradScale + k.l2 * pi;
    const float mi = k.beta1 * m[i] + k.oneMinusBeta1 * gi;
    const float vi = k.beta2 * v[i] + k.oneMinusBeta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float np = w - k.stepSize * mi / (sqrtf(vi) * k.invSqrtBc2 + k.eps);
    p[i] = np;
    if (out16) out16[i] = O::from(np);
  }
}

}  // namespace

void cast(Device& d, DType st, const void* src, DType dt, void* dst, int64_t n) {
  if (n == 0) return;
  const bool floats = dtypeBytes(st) != 1 && st != DType::I32 && dtypeBytes(dt) != 1 && dt != DType::I32;
  if (st == dt) return copyDevice(d, src, dst, static_cast<size_t>(n) * dtypeBytes(st));
  if (floats) {
    withFloat(st, [&](auto s) {
      withFloat(dt, [&](auto t) {
        using S = decltype(s);
        using D = decltype(t);
        castFloatKernel<S, D><<<gridFor(n), kThreads, 0, d.compute>>>(static_cast<const typename S::T*>(src),
                                                                     static_cast<typename D::T*>(dst), n);
      });
    });
  } else {
    castAnyKernel<<<gridFor(n), kThreads, 0, d.compute>>>(st, src, dt, dst, n);
  }
  DS_LAUNCHED("cast");
}

void fill(Device& d, DType dt, void* x, int64_t n, double value) {
  if (n == 0) return;
  const uint32_t bits = elementBits(dt, value);
  const int eb = dtypeBytes(dt);
  if (bits == 0 || eb == 1) {
    DS_CUDA(cudaMemsetAsync(x, static_cast<int>(bits & 0xffu), static_cast<size_t>(n) * eb, d.compute));
    return;
  }
  if (eb == 4) fillKernel<uint32_t><<<gridFor(n), kThreads, 0, d.compute>>>(static_cast<uint32_t*>(x), n, bits);
  else fillKernel<uint16_t><<<gridFor(n), kThreads, 0, d.compute>>>(static_cast<uint16_t*>(x), n, static_cast<uint16_t>(bits));
  DS_LAUNCHED("fill");
}

void gather(Device& d, int elemBytes, const void* src, int64_t offset, int rank, const int64_t* shape,
            const int64_t* strides, void* dst) {
  // Drop size-1 dims and merge dims that are contiguous with the next, so that most views need
  // few dims; what is left must fit the kernel's eight.
  GatherDims g{};
  int64_t total = 1;
  int64_t sh[64], st[64];
  int r = 0;
  for (int i = 0; i < rank; ++i) {
    total *= shape[i];
    if (shape[i] == 1) continue;
    if (r > 0 && st[r - 1] == strides[i] * shape[i]) {
      sh[r - 1] *= shape[i];
      st[r - 1] = strides[i];
    } else {
      sh[r] = shape[i];
      st[r] = strides[i];
      ++r;
    }
  }
  if (total == 0) return;
  if (r > kMaxGatherRank) {
    throw Error(Error::Unsupported, "gather: the view has " + std::to_string(r) + " dims that do not merge; the cuda gather runs at most " +
                                        std::to_string(kMaxGatherRank) + " (make the tensor contiguous in two steps)");
  }
  g.rank = r;
  for (int i = 0; i < r; ++i) {
    g.shape[i] = sh[i];
    g.stride[i] = st[i];
  }
  const unsigned grid = gridFor(total);
  if (elemBytes == 4) gatherKernel<uint32_t><<<grid, kThreads, 0, d.compute>>>(static_cast<const uint32_t*>(src), offset, g, static_cast<uint32_t*>(dst), total);
  else if (elemBytes == 2) gatherKernel<uint16_t><<<grid, kThreads, 0, d.compute>>>(static_cast<const uint16_t*>(src), offset, g, static_cast<uint16_t*>(dst), total);
  else gatherKernel<uint8_t><<<grid, kThreads, 0, d.compute>>>(static_cast<const uint8_t*>(src), offset, g, static_cast<uint8_t*>(dst), total);
  DS_LAUNCHED("gather");
}

void unary(Device& d, UnaryOp op, DType dt, const void* x, void* out, int64_t n) {
  if (n == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    unaryKernel<E><<<gridFor(n), kThreads, 0, d.compute>>>(op, static_cast<const typename E::T*>(x), static_cast<typename E::T*>(out), n);
  });
  DS_LAUNCHED("unary");
}

void binary(Device& d, BinaryOp op, DType dt, const void* a, const void* b, void* out, int64_t n, int64_t bn) {
  if (n == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    using T = typename E::T;
    binaryKernel<E><<<gridFor(n), kThreads, 0, d.compute>>>(op, static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(out), n, bn);
  });
  DS_LAUNCHED("binary");
}

void scale(Device& d, DType dt, const void* x, void* out, int64_t n, float alpha, float beta) {
  if (n == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    scaleKernel<E><<<gridFor(n), kThreads, 0, d.compute>>>(static_cast<const typename E::T*>(x), static_cast<typename E::T*>(out), n, alpha, beta);
  });
  DS_LAUNCHED("scale");
}

void axpy(Device& d, DType xd, const void* x, DType yd, void* y, int64_t n, float alpha) {
  if (n == 0) return;
  withFloat(xd, [&](auto xe) {
    using X = decltype(xe);
    if (yd == DType::F32) {
      axpyKernel<X, F32T><<<gridFor(n), kThreads, 0, d.compute>>>(static_cast<const typename X::T*>(x), static_cast<float*>(y), n, alpha);
    } else {
      axpyKernel<X, X><<<gridFor(n), kThreads, 0, d.compute>>>(static_cast<const typename X::T*>(x), static_cast<typename X::T*>(y), n, alpha);
    }
  });
  DS_LAUNCHED("axpy");
}

void geluForward(Device& d, DType dt, const void* x, void* y, int64_t n) {
  if (n == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    geluForwardKernel<E><<<gridFor(n), kThreads, 0, d.compute>>>(static_cast<const typename E::T*>(x), static_cast<typename E::T*>(y), n);
  });
  DS_LAUNCHED("geluForward");
}

void geluBackward(Device& d, DType dt, const void* dy, const void* x, void* dx, int64_t n) {
  if (n == 0) return;
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    using T = typename E::T;
    geluBackwardKernel<E><<<gridFor(n), kThreads, 0, d.compute>>>(static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<T*>(dx), n);
  });
  DS_LAUNCHED("geluBackward");
}

void dropoutForward(Device& d, DType dt, const void* x, void* out, uint8_t* mask, int64_t n, double p, uint32_t seed,
                    uint32_t offset) {
  if (n == 0) return;
  // u = (h >> 8) / 2^24 >= p  <=>  (h >> 8) >= ceil(p * 2^24), exact in integers (as the cpu kernel).
  const double t = std::ceil(p * 16777216.0);
  const uint32_t threshold = t >= 16777216.0 ? 16777216u : static_cast<uint32_t>(t);
  const float keep = static_cast<float>(1.0 / (1.0 - p));
  withFloat(dt, [&](auto e) {
    using E = decltype(e);
    using T = typename E::T;
    dropoutKernel<E><<<gridFor(n), kThreads, 0, d.compute>>>(static_cast<const T*>(x), static_cast<T*>(out), mask, n, seed, offset, threshold, keep);
  });
  DS_LAUNCHED("dropoutForward");
}

void adamw(Device& d, const AdamWParams& a) {
  if (a.n == 0) return;
  // The coefficients in double, then f32, exactly as adamw.cc computes them.
  const double bc1 = a.biasCorrection ? 1.0 - std::pow(a.beta1, a.step) : 1.0;
  const double bc2 = a.biasCorrection ? 1.0 - std::pow(a.beta2, a.step) : 1.0;
  AdamCoeffs k;
  k.gradScale = static_cast<float>(a.gradScale);
  k.decay = static_cast<float>(a.decoupled ? 1.0 - a.lr * a.weightDecay : 1.0);
  k.l2 = static_cast<float>(a.decoupled ? 0.0 : a.weightDecay);
  k.beta1 = static_cast<float>(a.beta1);
  k.oneMinusBeta1 = static_cast<float>(1.0 - a.beta1);
  k.beta2 = static_cast<float>(a.beta2);
  k.oneMinusBeta2 = static_cast<float>(1.0 - a.beta2);
  k.stepSize = static_cast<float>(a.lr / bc1);
  k.invSqrtBc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  k.eps = static_cast<float>(a.eps);
  withFloat(a.gradDtype, [&](auto ge) {
    using G = decltype(ge);
    const auto* g = static_cast<const typename G::T*>(a.grad);
    if (a.out16Dtype == DType::F16) {
      adamwKernel<G, F16T><<<gridFor(a.n), kThreads, 0, d.compute>>>(a.param, g, a.expAvg, a.expAvgSq, a.n, k, static_cast<uint16_t*>(a.out16));
    } else {
      adamwKernel<G, BF16T><<<gridFor(a.n), kThreads, 0, d.compute>>>(a.param, g, a.expAvg, a.expAvgSq, a.n, k, static_cast<uint16_t*>(a.out16));
    }
  });
  DS_LAUNCHED("adamw");
}

}  // namespace cuda
}  // namespace ds
