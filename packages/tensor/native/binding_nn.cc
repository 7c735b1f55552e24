// The second half of the binding: nn kernels and the optimizer (see binding.cc for the conventions).
#include <algorithm>
#include <string>

#include "ds/binding.h"
#include "ds/kernels.h"

namespace ds {
namespace {

Napi::Value undef(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }
float f32(ArgReader& a, size_t i) { return static_cast<float>(a.number(i)); }
float* f32Array(ArgReader& a, size_t i, int64_t need, const char* name) {
  return static_cast<float*>(a.array(i, DType::F32, need, name));
}

[[noreturn]] void badIndex(ArgReader& a, const char* what, int64_t at, int32_t value, int64_t limit) {
  a.rangeError(std::string(what) + "[" + std::to_string(at) + "] = " + std::to_string(value) + " is outside [0, " +
               std::to_string(limit) + ")");
}

// layerNormForward(dtype, x, weight, bias, y, mean, rstd, rows, cols, eps)
Napi::Value LayerNormForward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(7), cols = a.size(8), n = a.mul(rows, cols);
  layerNormForward(s.ctx(), d, a.array(1, d, n, "x"), a.array(2, d, cols, "weight"), a.array(3, d, cols, "bias"),
                   a.array(4, d, n, "y"), f32Array(a, 5, rows, "mean"), f32Array(a, 6, rows, "rstd"), rows, cols, f32(a, 9));
  return undef(info);
}
// layerNormResidualForward(dtype, x, r, weight, bias, sum, y, mean, rstd, rows, cols, eps)
Napi::Value LayerNormResidualForward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(9), cols = a.size(10), n = a.mul(rows, cols);
  layerNormResidualForward(s.ctx(), d, a.array(1, d, n, "x"), a.array(2, d, n, "r"), a.array(3, d, cols, "weight"),
                           a.array(4, d, cols, "bias"), a.array(5, d, n, "sum"), a.array(6, d, n, "y"),
                           f32Array(a, 7, rows, "mean"), f32Array(a, 8, rows, "rstd"), rows, cols, f32(a, 11));
  return undef(info);
}
// layerNormBackward(dtype, dy, x, weight, mean, rstd, dx, dweight, dbias, rows, cols)
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(9), cols = a.size(10), n = a.mul(rows, cols);
  layerNormBackward(s.ctx(), d, a.array(1, d, n, "dy"), a.array(2, d, n, "x"), a.array(3, d, cols, "weight"),
                    f32Array(a, 4, rows, "mean"), f32Array(a, 5, rows, "rstd"), a.array(6, d, n, "dx"),
                    f32Array(a, 7, cols, "dweight"), f32Array(a, 8, cols, "dbias"), rows, cols);
  return undef(info);
}
Napi::Value GeluForward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(3);
  geluForward(s.ctx(), d, a.array(1, d, n, "x"), a.array(2, d, n, "y"), n);
  return undef(info);
}
Napi::Value GeluBackward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(4);
  geluBackward(s.ctx(), d, a.array(1, d, n, "dy"), a.array(2, d, n, "x"), a.array(3, d, n, "dx"), n);
  return undef(info);
}
Napi::Value SoftmaxForward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(3), cols = a.size(4), n = a.mul(rows, cols);
  softmaxForward(s.ctx(), d, a.array(1, d, n, "x"), a.array(2, d, n, "y"), rows, cols);
  return undef(info);
}
Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(4), cols = a.size(5), n = a.mul(rows, cols);
  softmaxBackward(s.ctx(), d, a.array(1, d, n, "dy"), a.array(2, d, n, "y"), a.array(3, d, n, "dx"), rows, cols);
  return undef(info);
}
// embeddingForward(dtype, ids, table, out, n, vocab, dim)
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(4), vocab = a.size(5), dim = a.size(6);
  const auto* ids = static_cast<const int32_t*>(a.array(1, DType::I32, n, "ids"));
  const int64_t bad = embeddingForward(s.ctx(), d, ids, a.array(2, d, a.mul(vocab, dim), "table"),
                                       a.array(3, d, a.mul(n, dim), "out"), n, vocab, dim);
  if (bad >= 0) badIndex(a, "ids", bad, ids[bad], vocab);
  return undef(info);
}
// embeddingBackward(dtype, dout, ids, dtable, n, vocab, dim)
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(4), vocab = a.size(5), dim = a.size(6);
  const auto* ids = static_cast<const int32_t*>(a.array(2, DType::I32, n, "ids"));
  const int64_t bad = embeddingBackward(s.ctx(), d, a.array(1, d, a.mul(n, dim), "dout"), ids,
                                        f32Array(a, 3, a.mul(vocab, dim), "dtable"), n, vocab, dim);
  if (bad >= 0) badIndex(a, "ids", bad, ids[bad], vocab);
  return undef(info);
}
// crossEntropyForward(dtype, logits, targets, losses, lse, rows, vocab)
Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(5), vocab = a.size(6);
  const auto* t = static_cast<const int32_t*>(a.array(2, DType::I32, rows, "targets"));
  const int64_t bad = crossEntropyForward(s.ctx(), d, a.array(1, d, a.mul(rows, vocab), "logits"), t,
                                          f32Array(a, 3, rows, "losses"), f32Array(a, 4, rows, "lse"), rows, vocab);
  if (bad >= 0) badIndex(a, "targets (or -1)", bad, t[bad], vocab);
  return undef(info);
}
// crossEntropyForwardGrad(dtype, logits, targets, losses, lse, dlogits, scale, rows, vocab)
Napi::Value CrossEntropyForwardGrad(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(7), vocab = a.size(8), n = a.mul(rows, vocab);
  const auto* t = static_cast<const int32_t*>(a.array(2, DType::I32, rows, "targets"));
  const int64_t bad = crossEntropyForwardGrad(s.ctx(), d, a.array(1, d, n, "logits"), t, f32Array(a, 3, rows, "losses"),
                                              f32Array(a, 4, rows, "lse"), a.array(5, d, n, "dlogits"), f32(a, 6), rows, vocab);
  if (bad >= 0) badIndex(a, "targets (or -1)", bad, t[bad], vocab);
  return undef(info);
}
// crossEntropyBackward(dtype, logits, targets, lse, dloss, dlogits, rows, vocab)
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t rows = a.size(6), vocab = a.size(7), n = a.mul(rows, vocab);
  const auto* t = static_cast<const int32_t*>(a.array(2, DType::I32, rows, "targets"));
  const int64_t bad = crossEntropyBackward(s.ctx(), d, a.array(1, d, n, "logits"), t, f32Array(a, 3, rows, "lse"),
                                           f32Array(a, 4, rows, "dloss"), a.array(5, d, n, "dlogits"), rows, vocab);
  if (bad >= 0) badIndex(a, "targets (or -1)", bad, t[bad], vocab);
  return undef(info);
}
// attentionForward(dtype, q, k, v, out, lse, bh, t, d, scale)
Napi::Value AttentionForward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType dt = a.floatDtype(0);
  const int64_t bh = a.size(6), t = a.size(7), d = a.size(8), n = a.mul(bh, t, d);
  attentionForward(s.ctx(), dt, a.array(1, dt, n, "q"), a.array(2, dt, n, "k"), a.array(3, dt, n, "v"),
                   a.array(4, dt, n, "out"), f32Array(a, 5, a.mul(bh, t), "lse"), bh, t, d, f32(a, 9));
  return undef(info);
}
// attentionBackward(dtype, dout, q, k, v, out, lse, dq, dk, dv, bh, t, d, scale)
Napi::Value AttentionBackward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType dt = a.floatDtype(0);
  const int64_t bh = a.size(10), t = a.size(11), d = a.size(12), n = a.mul(bh, t, d);
  attentionBackward(s.ctx(), dt, a.array(1, dt, n, "dout"), a.array(2, dt, n, "q"), a.array(3, dt, n, "k"),
                    a.array(4, dt, n, "v"), a.array(5, dt, n, "out"), f32Array(a, 6, a.mul(bh, t), "lse"),
                    a.array(7, dt, n, "dq"), a.array(8, dt, n, "dk"), a.array(9, dt, n, "dv"), bh, t, d, f32(a, 13));
  return undef(info);
}
// The packed layouts of GPT's attention: qkv [b, t, 3, heads, d] (q, k, v side by side in each row,
// as c_attn writes them), out/dout [b, t, heads, d]; lse [b * heads, t].
struct PackedAttention {
  int64_t b, t, heads, d, c, bh, partBytes;  // partBytes: from q to k (and k to v) in a packed row
  AttnLayout in, out;
  PackedAttention(ArgReader& a, int first, DType dt)
      : b(a.size(first)), t(a.size(first + 1)), heads(a.size(first + 2)), d(a.size(first + 3)) {
    c = a.mul(heads, d);
    bh = a.mul(b, heads);
    partBytes = c * dtypeBytes(dt);
    in = {std::max<int64_t>(heads, 1), a.mul(t, 3, c), d, a.mul(3, c)};
    out = {std::max<int64_t>(heads, 1), a.mul(t, c), d, c};
  }
};
// attentionPackedForward(dtype, qkv, out, lse, b, t, heads, d, scale)
Napi::Value AttentionPackedForward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType dt = a.floatDtype(0);
  const PackedAttention p(a, 4, dt);
  const auto* qkv = static_cast<const unsigned char*>(a.array(1, dt, a.mul(p.b, p.t, 3 * p.c), "qkv"));
  void* out = a.array(2, dt, a.mul(p.b, p.t, p.c), "out");
  float* lse = f32Array(a, 3, a.mul(p.bh, p.t), "lse");
  attentionForward(s.ctx(), dt, qkv, qkv + p.partBytes, qkv + 2 * p.partBytes, out, lse, p.bh, p.t, p.d, f32(a, 8), p.in, p.out);
  return undef(info);
}
// attentionPackedBackward(dtype, dout, qkv, out, lse, dqkv, b, t, heads, d, scale); dqkv packed as qkv.
Napi::Value AttentionPackedBackward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType dt = a.floatDtype(0);
  const PackedAttention p(a, 6, dt);
  const int64_t nIn = a.mul(p.b, p.t, 3 * p.c), nOut = a.mul(p.b, p.t, p.c);
  const void* dout = a.array(1, dt, nOut, "dout");
  const auto* qkv = static_cast<const unsigned char*>(a.array(2, dt, nIn, "qkv"));
  const void* out = a.array(3, dt, nOut, "out");
  const float* lse = f32Array(a, 4, a.mul(p.bh, p.t), "lse");
  auto* g = static_cast<unsigned char*>(a.array(5, dt, nIn, "dqkv"));
  const int64_t k = p.partBytes;
  attentionBackward(s.ctx(), dt, dout, qkv, qkv + k, qkv + 2 * k, out, lse, g, g + k, g + 2 * k, p.bh, p.t, p.d, f32(a, 10),
                    p.in, p.out);
  return undef(info);
}
// dropoutForward(dtype, x, out, mask, n, p, seed, offset); seed and offset are taken modulo 2^32.
Napi::Value DropoutForward(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  const DType d = a.floatDtype(0);
  const int64_t n = a.size(4);
  const double p = a.number(5);
  if (!(p >= 0 && p <= 1)) a.rangeError("p must be in [0, 1]");
  const auto seed = static_cast<uint32_t>(static_cast<uint64_t>(a.size(6)));
  const auto offset = static_cast<uint32_t>(static_cast<uint64_t>(a.size(7)));
  dropoutForward(s.ctx(), d, a.array(1, d, n, "x"), a.array(2, d, n, "out"),
                 static_cast<uint8_t*>(a.array(3, DType::U8, n, "mask")), n, p, seed, offset);
  return undef(info);
}
// adamw(param, grad, gradDtype, expAvg, expAvgSq, n, lr, beta1, beta2, eps, weightDecay, step,
//       biasCorrection, decoupled, gradScale, out16 | null, out16Dtype)
Napi::Value AdamW(const Napi::CallbackInfo& info, ArgReader& a, AddonState& s) {
  AdamWParams p;
  p.n = a.size(5);
  p.gradDtype = a.floatDtype(2);
  p.param = f32Array(a, 0, p.n, "param");
  p.grad = a.array(1, p.gradDtype, p.n, "grad");
  p.expAvg = f32Array(a, 3, p.n, "expAvg");
  p.expAvgSq = f32Array(a, 4, p.n, "expAvgSq");
  p.lr = a.number(6);
  p.beta1 = a.number(7);
  p.beta2 = a.number(8);
  p.eps = a.number(9);
  p.weightDecay = a.number(10);
  p.step = a.number(11);
  p.biasCorrection = a.boolean(12);
  p.decoupled = a.boolean(13);
  p.gradScale = a.number(14);
  if (p.biasCorrection && !(p.step >= 1)) a.rangeError("step must be >= 1 with bias correction");
  p.out16 = nullptr;
  p.out16Dtype = DType::BF16;
  if (info.Length() > 15 && !info[15].IsNull() && !info[15].IsUndefined()) {
    p.out16Dtype = a.floatDtype(16);
    if (p.out16Dtype == DType::F32) a.typeError(16, "must be bf16 or f16");
    p.out16 = a.array(15, p.out16Dtype, p.n, "out16");
  }
  adamwKernel(s.ctx(), p);
  return undef(info);
}

}  // namespace

void registerNnBindings(Napi::Env env, Napi::Object exports, AddBinding add) {
  add(env, exports, "layerNormForward", LayerNormForward);
  add(env, exports, "layerNormBackward", LayerNormBackward);
  add(env, exports, "layerNormResidualForward", LayerNormResidualForward);
  add(env, exports, "geluForward", GeluForward);
  add(env, exports, "geluBackward", GeluBackward);
  add(env, exports, "softmaxForward", SoftmaxForward);
  add(env, exports, "softmaxBackward", SoftmaxBackward);
  add(env, exports, "embeddingForward", EmbeddingForward);
  add(env, exports, "embeddingBackward", EmbeddingBackward);
  add(env, exports, "crossEntropyForward", CrossEntropyForward);
  add(env, exports, "crossEntropyBackward", CrossEntropyBackward);
  add(env, exports, "crossEntropyForwardGrad", CrossEntropyForwardGrad);
  add(env, exports, "attentionForward", AttentionForward);
  add(env, exports, "attentionBackward", AttentionBackward);
  add(env, exports, "attentionPackedForward", AttentionPackedForward);
  add(env, exports, "attentionPackedBackward", AttentionPackedBackward);
  add(env, exports, "dropoutForward", DropoutForward);
  add(env, exports, "adamw", AdamW);
}

}  // namespace ds
