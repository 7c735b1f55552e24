// Causal attention, flash style: keys are visited in blocks of kB (64) with an online softmax
// (running max m and normaliser l per query, earlier output rescaled when m grows), so no T x T
// matrix is ever stored; forward saves lse = m + log(l) per query. Forward runs (head, query
// block) items in parallel; backward runs heads in parallel and, inside a head, walks key blocks
// and the query blocks at or below the diagonal, recomputing P from lse. The block products
// (Q K^T and P V, and the four of backward) go through blockGemm (block_gemm.h), register-tiled
// per ISA.
#include <algorithm>
#include <cmath>

#include "ds/block_gemm.h"
#include "ds/tile.h"

namespace ds {
namespace {

constexpr int64_t kB = 64;  // query and key block size (the same, so the diagonal block is k0 == q0)

// Keys visible to query row i of a block pair: those with k0 + j <= q0 + i.
DS_INLINE int64_t visible(int64_t q0, int64_t i, int64_t k0, int64_t bk) { return std::min(bk, q0 + i - k0 + 1); }

// dst[c][j] = src[j][c] for j < rows, c < cols; dst has row stride kB (a block laid out for blockGemm).
DS_INLINE void transposeInto(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst) {
  for (int64_t j = 0; j < rows; ++j)
    for (int64_t c = 0; c < cols; ++c) dst[c * kB + j] = src[j * lds + c];
}

// One key block for a query block: S = scale Q K^T, online softmax update of (m, l), O = alpha O + P V.
// q [bq, d] is pre-scaled; kt [d, kB] is K^T; s [bq, kB] is scratch; masked entries of P are zero.
template <int R, int U>
DS_INLINE void forwardBlockBody(const float* q, const float* kt, const float* v, float* s, float* o, float* m, float* l,
                                int64_t bq, int64_t bk, int64_t d, int64_t q0, int64_t k0) {
  blockGemm<R, U>(bq, bk, d, q, d, kt, kB, s, kB, false);
  for (int64_t i = 0; i < bq; ++i) {
    const int64_t nv = std::max<int64_t>(0, visible(q0, i, k0, bk));
    float* si = s + i * kB;
    float mx = m[i];
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < nv; ++j) mx = si[j] > mx ? si[j] : mx;
    const float alpha = nv > 0 ? expApprox(m[i] - mx) : 1.0f;  // 0 on a row's first block (m = -inf)
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < nv; ++j) {
      si[j] = expApprox(si[j] - mx);
      sum += si[j];
    }
    for (int64_t j = nv; j < bk; ++j) si[j] = 0.0f;
    l[i] = l[i] * alpha + sum;
    m[i] = nv > 0 ? mx : m[i];
    float* oi = o + i * d;
    for (int64_t c = 0; c < d; ++c) oi[c] *= alpha;
  }
  blockGemm<R, U>(bq, d, bk, s, kB, v, d, o, d, true);
}
void forwardBlockScalar(const float* q, const float* kt, const float* v, float* s, float* o, float* m, float* l,
                        int64_t bq, int64_t bk, int64_t d, int64_t q0, int64_t k0) {
  forwardBlockBody<2, 1>(q, kt, v, s, o, m, l, bq, bk, d, q0, k0);
}
DS_TARGET_AVX2 void forwardBlockAvx2(const float* q, const float* kt, const float* v, float* s, float* o, float* m,
                                     float* l, int64_t bq, int64_t bk, int64_t d, int64_t q0, int64_t k0) {
  forwardBlockBody<4, 1>(q, kt, v, s, o, m, l, bq, bk, d, q0, k0);
}
DS_TARGET_AVX512 void forwardBlockAvx512(const float* q, const float* kt, const float* v, float* s, float* o, float* m,
                                         float* l, int64_t bq, int64_t bk, int64_t d, int64_t q0, int64_t k0) {
  forwardBlockBody<8, 2>(q, kt, v, s, o, m, l, bq, bk, d, q0, k0);
}

struct BackwardBlock {
  const float *q, *k, *kt, *vt, *dout, *lse, *corr;
  float *p, *ds, *tr;  // [kB, kB] scratch each: P, dS, and a transpose buffer
  float *dq, *dk, *dv;
  int64_t bq, bk, d, q0, k0;
  float scale;
};

// P = exp(S - lse); dP = dO V^T; dS = P (dP - corr) scale; dV += P^T dO; dQ += dS K; dK += dS^T Q.
template <int R, int U>
DS_INLINE void backwardBlockBody(const BackwardBlock& b) {
  const int64_t d = b.d, bq = b.bq, bk = b.bk;
  blockGemm<R, U>(bq, bk, d, b.q, d, b.kt, kB, b.p, kB, false);
  blockGemm<R, U>(bq, bk, d, b.dout, d, b.vt, kB, b.ds, kB, false);
  for (int64_t i = 0; i < bq; ++i) {
    const int64_t nv = std::max<int64_t>(0, visible(b.q0, i, b.k0, bk));
    float* pi = b.p + i * kB;
    float* dsi = b.ds + i * kB;
    const float li = b.lse[i], ci = b.corr[i];
    for (int64_t j = 0; j < nv; ++j) {
      pi[j] = expApprox(pi[j] * b.scale - li);
      dsi[j] = pi[j] * (dsi[j] - ci) * b.scale;
    }
    for (int64_t j = nv; j < bk; ++j) pi[j] = dsi[j] = 0.0f;
  }
  transposeInto(b.p, bq, bk, kB, b.tr);  // P^T [bk, bq]
  blockGemm<R, U>(bk, d, bq, b.tr, kB, b.dout, d, b.dv, d, true);
  blockGemm<R, U>(bq, d, bk, b.ds, kB, b.k, d, b.dq, d, true);
  transposeInto(b.ds, bq, bk, kB, b.tr);  // dS^T [bk, bq]
  blockGemm<R, U>(bk, d, bq, b.tr, kB, b.q, d, b.dk, d, true);
}
void backwardBlockScalar(const BackwardBlock& b) { backwardBlockBody<2, 1>(b); }
DS_TARGET_AVX2 void backwardBlockAvx2(const BackwardBlock& b) { backwardBlockBody<4, 1>(b); }
DS_TARGET_AVX512 void backwardBlockAvx512(const BackwardBlock& b) { backwardBlockBody<8, 2>(b); }

void forwardBlockAt(Isa isa, const float* q, const float* kt, const float* v, float* s, float* o, float* m, float* l,
                    int64_t bq, int64_t bk, int64_t d, int64_t q0, int64_t k0) {
  if (isa >= Isa::Avx512) return forwardBlockAvx512(q, kt, v, s, o, m, l, bq, bk, d, q0, k0);
  if (isa >= Isa::Avx2) return forwardBlockAvx2(q, kt, v, s, o, m, l, bq, bk, d, q0, k0);
  forwardBlockScalar(q, kt, v, s, o, m, l, bq, bk, d, q0, k0);
}

void backwardBlockAt(Isa isa, const BackwardBlock& b) {
  if (isa >= Isa::Avx512) return backwardBlockAvx512(b);
  if (isa >= Isa::Avx2) return backwardBlockAvx2(b);
  backwardBlockScalar(b);
}

DS_INLINE int64_t itemGrain(int64_t items, double work) { return work < 2e5 ? items : 1; }

}  // namespace

void attentionForward(const Ctx& c, DType dt, const void* q, const void* k, const void* v, void* out, float* lse,
                      int64_t bh, int64_t t, int64_t d, float scale) {
  if (bh == 0 || t == 0 || d == 0) return;
  const int64_t nqb = (t + kB - 1) / kB, items = bh * nqb;
  const double work = static_cast<double>(bh) * t * t * d;
  c.pool->parallelFor(items, itemGrain(items, work), [&](int64_t i0, int64_t i1, int tid) {
    // One scratch block carved into: q, k, v rows, k^T, scores, output accumulator, m, l.
    auto* base = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * (6 * kB * d + kB * kB + 2 * kB)));
    float *qb = base, *kb = qb + kB * d, *vb = kb + kB * d, *kt = vb + kB * d, *s = kt + kB * d;
    float *o = s + kB * kB, *ob = o + kB * d, *m = ob + kB * d, *l = m + kB;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t h = item / nqb, q0 = item % nqb * kB, bq = std::min(kB, t - q0);
      const int64_t head = h * t * d;
      // The query block, scaled once here so that the block product yields scale * q . k.
      const float* qsrc = tileIn(c.isa, dt, q, head + q0 * d, bq * d, qb);
      for (int64_t e = 0; e < bq * d; ++e) qb[e] = qsrc[e] * scale;
      std::fill(o, o + bq * d, 0.0f);
      std::fill(m, m + bq, -__builtin_inff());
      std::fill(l, l + bq, 0.0f);
      for (int64_t k0 = 0; k0 < q0 + bq; k0 += kB) {
        const int64_t bk = std::min(kB, q0 + bq - k0);
        transposeInto(tileIn(c.isa, dt, k, head + k0 * d, bk * d, kb), bk, d, d, kt);
        const float* vs = tileIn(c.isa, dt, v, head + k0 * d, bk * d, vb);
        forwardBlockAt(c.isa, qb, kt, vs, s, o, m, l, bq, bk, d, q0, k0);
      }
      float* dst = tileDst(dt, out, head + q0 * d, ob);
      for (int64_t i = 0; i < bq; ++i) {
        const float inv = 1.0f / l[i];
        for (int64_t cc = 0; cc < d; ++cc) dst[i * d + cc] = o[i * d + cc] * inv;
        lse[h * t + q0 + i] = m[i] + std::log(l[i]);
      }
      tileOut(c.isa, dt, dst, out, head + q0 * d, bq * d);
    }
  });
}

void attentionBackward(const Ctx& c, DType dt, const void* dout, const void* q, const void* k, const void* v,
                       const void* out, const float* lse, void* dq, void* dk, void* dv, int64_t bh, int64_t t,
                       int64_t d, float scale) {
  if (bh == 0 || t == 0 || d == 0) return;
  const int64_t td = t * d;
  const double work = static_cast<double>(bh) * t * t * d;
  c.pool->parallelFor(bh, itemGrain(bh, work), [&](int64_t h0, int64_t h1, int tid) {
    // Per head: f32 copies of q, k, v, dout, out (when not f32), accumulators dq, dk, dv, corr,
    // and the block buffers k^T, v^T, P, dS.
    auto* base = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * (8 * td + t + 2 * kB * d + 3 * kB * kB)));
    float *bq_ = base, *bk_ = bq_ + td, *bv_ = bk_ + td, *bdo = bv_ + td, *bo = bdo + td;
    float *gq = bo + td, *gk = gq + td, *gv = gk + td, *corr = gv + td;
    float *kt = corr + t, *vt = kt + kB * d, *p = vt + kB * d, *ds = p + kB * kB, *tr = ds + kB * kB;
    for (int64_t h = h0; h < h1; ++h) {
      const int64_t head = h * td;
      const float* qs = tileIn(c.isa, dt, q, head, td, bq_);
      const float* ks = tileIn(c.isa, dt, k, head, td, bk_);
      const float* vs = tileIn(c.isa, dt, v, head, td, bv_);
      const float* dos = tileIn(c.isa, dt, dout, head, td, bdo);
      const float* os = tileIn(c.isa, dt, out, head, td, bo);
      for (int64_t i = 0; i < t; ++i) {  // sum_j P_ij dP_ij = dout_i . out_i
        double s = 0.0;
        for (int64_t cc = 0; cc < d; ++cc) s += static_cast<double>(dos[i * d + cc]) * os[i * d + cc];
        corr[i] = static_cast<float>(s);
      }
      std::fill(gq, gq + 3 * td, 0.0f);
      for (int64_t k0 = 0; k0 < t; k0 += kB) {
        const int64_t bk = std::min(kB, t - k0);
        transposeInto(ks + k0 * d, bk, d, d, kt);
        transposeInto(vs + k0 * d, bk, d, d, vt);
        for (int64_t q0 = k0; q0 < t; q0 += kB) {
          const BackwardBlock blk{qs + q0 * d, ks + k0 * d, kt, vt, dos + q0 * d, lse + h * t + q0, corr + q0, p, ds, tr,
                                  gq + q0 * d, gk + k0 * d, gv + k0 * d, std::min(kB, t - q0), bk, d, q0, k0, scale};
          backwardBlockAt(c.isa, blk);
        }
      }
      fromF32(c.isa, dt, gq, static_cast<unsigned char*>(dq) + head * dtypeBytes(dt), td);
      fromF32(c.isa, dt, gk, static_cast<unsigned char*>(dk) + head * dtypeBytes(dt), td);
      fromF32(c.isa, dt, gv, static_cast<unsigned char*>(dv) + head * dtypeBytes(dt), td);
    }
  });
}

}  // namespace ds
