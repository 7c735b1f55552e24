// Causal attention, flash style: keys are visited in blocks of kB (64) with an online softmax
// (running max m and normaliser l per query, earlier output rescaled when m grows), so no T x T
// matrix is ever stored; forward saves lse = m + log(l) per query; backward recomputes P from lse.
//
// Every block works on S^T = K Q^T (keys down, queries across) rather than S = Q K^T: the product
// then reads K, V and dO in their natural row layout and needs only Q^T (and dO^T in backward),
// transposed once per query block or head instead of K^T and V^T once per block pair; the softmax
// statistics of a query are a column, so their updates vectorize across queries; and the products
// that need P or dS the other way round read them transposed through blockGemm's TransA (a
// broadcast operand costs the same in either layout), so no P^T or dS^T copy is made.
// Forward runs (head, range of query blocks) items in parallel, each converting its K and V rows to
// f32 once; backward runs heads in parallel and, inside a head, walks key blocks and the query
// blocks at or below the diagonal. Block products go through blockGemm (block_gemm.h).
#include <algorithm>
#include <cmath>

#include "ds/attention_rows.h"
#include "ds/block_gemm.h"
#include "ds/tile.h"
#include "ds/transpose8.h"

namespace ds {
namespace {

constexpr int64_t kB = 64;  // query and key block size (the same, so the diagonal block is k0 == q0)

// dst[c * ldd + j] = src[j * lds + c] * scale for j < rows, c < cols (Q^T and dO^T of a query block).
void transposeScalar(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd, float scale) {
  for (int64_t j = 0; j < rows; ++j)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + j] = src[j * lds + c] * scale;
}
// The same in 8 x 8 register transposes (the scalar loop, its stores kB floats apart, was 3-5% of
// attention's time; it is the same multiply per element, so the same bits).
DS_TARGET_AVX2 void transposeAvx2(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd,
                                  float scale) {
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= rows; j += 8) {
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_mul_ps(_mm256_loadu_ps(src + (j + i) * lds + c), vs);
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (c + i) * ldd + j, r[i]);
    }
    transposeScalar(src + j * lds + c, 8, cols - c, lds, dst + c * ldd + j, ldd, scale);
  }
  transposeScalar(src + j * lds, rows - j, cols, lds, dst + j, ldd, scale);
}
void transposeInto(Isa isa, const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd, float scale) {
  if (isa >= Isa::Avx2) return transposeAvx2(src, rows, cols, lds, dst, ldd, scale);
  transposeScalar(src, rows, cols, lds, dst, ldd, scale);
}

// sum_i a[i] b[i] in f32 lanes (corr = dO . O per query: 64 products, well within f32's precision;
// a scalar double chain was 5% of attention backward).
DS_INLINE float dotBody(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
DS_VARIANTS(float, dotRow, dotBody, (const float* a, const float* b, int64_t n), (a, b, n))

// The block product each ISA's body uses: the generic-vector blockGemm with an R x 16U tile (no
// AVX2), the AVX2 intrinsics one with 6 x 16 tiles, or the AVX-512 intrinsics one with 4 x 64 tiles
// (block_gemm.h).
template <int R, int U>
struct GenericGemm {
  // Diagonal blocks are done whole on this path (baseline CPUs): split in halves, the constant
  // 32-wide products trip GCC's loop analysis in blockGemm's leftover-column loop (a false warning).
  static constexpr bool kHalves = false;
  template <bool TransA>
  static DS_INLINE void run(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                            float* c, int64_t ldc, bool accumulate) {
    blockGemm<R, U, TransA>(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  }
};
// Not inlined, nor cloned for constant sizes (noipa: a call per 64 x 64 x 64 product is noise; the
// halves of a diagonal block would make 32-row clones whose leftover loops GCC then warns about
// falsely): the body calling it has no target attribute of its own, and GCC refuses to inline an
// AVX2 or AVX-512 function into it.
struct Avx2Gemm {
  static constexpr bool kHalves = true;
  template <bool TransA>
  DS_TARGET_AVX2 static __attribute__((noipa)) void run(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                                           const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
    blockGemm256<6, 2, TransA>(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  }
};
struct Avx512Gemm {
  static constexpr bool kHalves = true;
  template <bool TransA>
  DS_TARGET_AVX512 static __attribute__((noipa)) void run(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                                             const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
    blockGemm512<4, 4, TransA>(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  }
};

struct ForwardBlock {
  const float *qt, *k, *v;  // Q^T [d, kB] (pre-scaled, row stride kB); K, V rows [bk, d]
  float* st;                // [kB, kB] scratch: S^T, then P^T
  float *o, *m, *l;         // output accumulator [bq, d], running max and normaliser [bq]
  int64_t bq, bk, d;
  bool diagonal;            // k0 == q0: key j is visible to query i only when j <= i
};

// One key block for a query block: S^T = K Q^T, online softmax update of (m, l) column by column,
// O = alpha O + P V with P read through its transpose.
template <class G>
DS_INLINE void forwardBlockBody(const ForwardBlock& b) {
  const int64_t bq = b.bq, bk = b.bk, d = b.d;
  float* st = b.st;
  // A whole diagonal block in halves: keys [h, kB) (h = kB / 2) see only queries [h, kB), so the
  // top-right quarter of S^T (keys h.., queries ..h) is not computed (the mask below writes it), a
  // quarter of the block's work.
  const bool halves = G::kHalves && b.diagonal && bk == kB && bq == kB;
  const int64_t h = bk / 2;
  if (halves) {
    G::template run<false>(h, bq, d, b.k, d, b.qt, kB, st, kB, false);
    G::template run<false>(h, h, d, b.k + h * d, d, b.qt + h, kB, st + h * kB + h, kB, false);
  } else {
    G::template run<false>(bk, bq, d, b.k, d, b.qt, kB, st, kB, false);
  }
  if (b.diagonal)
    for (int64_t j = 1; j < bk; ++j)
      for (int64_t i = 0; i < std::min(j, bq); ++i) st[j * kB + i] = -__builtin_inff();
  float mx[kB], alpha[kB], sum[kB];
#pragma omp simd
  for (int64_t i = 0; i < bq; ++i) mx[i] = b.m[i];
  for (int64_t j = 0; j < bk; ++j) {
    const float* sj = st + j * kB;
#pragma omp simd
    for (int64_t i = 0; i < bq; ++i) mx[i] = sj[i] > mx[i] ? sj[i] : mx[i];
  }
  // Every query sees key 0 of its first block (the diagonal holds j = i), so mx is finite here and
  // alpha = exp(-inf) = 0 on a query's first block.
#pragma omp simd
  for (int64_t i = 0; i < bq; ++i) {
    alpha[i] = expFast(b.m[i] - mx[i]);
    sum[i] = 0.0f;
  }
  for (int64_t j = 0; j < bk; ++j) {
    float* sj = st + j * kB;
#pragma omp simd
    for (int64_t i = 0; i < bq; ++i) {
      sj[i] = expFast(sj[i] - mx[i]);  // masked entries: exp(-inf) = 0
      sum[i] += sj[i];
    }
  }
  for (int64_t i = 0; i < bq; ++i) {
    b.l[i] = b.l[i] * alpha[i] + sum[i];
    b.m[i] = mx[i];
    float* oi = b.o + i * d;
    const float a = alpha[i];
#pragma omp simd
    for (int64_t c = 0; c < d; ++c) oi[c] *= a;
  }
  if (halves) {
    // Queries [0, h) see keys [0, h) only (their P is 0 beyond).
    G::template run<true>(h, d, h, st, kB, b.v, d, b.o, d, true);
    G::template run<true>(h, d, bk, st + h, kB, b.v, d, b.o + h * d, d, true);
  } else {
    G::template run<true>(bq, d, bk, st, kB, b.v, d, b.o, d, true);
  }
}
void forwardBlockScalar(const ForwardBlock& b) { forwardBlockBody<GenericGemm<2, 1>>(b); }
DS_TARGET_AVX2 void forwardBlockAvx2(const ForwardBlock& b) { forwardBlockBody<Avx2Gemm>(b); }
DS_TARGET_AVX512 void forwardBlockAvx512(const ForwardBlock& b) { forwardBlockBody<Avx512Gemm>(b); }

struct BackwardBlock {
  const float *q, *k, *v, *dout;  // rows: Q, dO [bq, d] at the query block; K, V [bk, d] at the key block
  const float *qt, *dot;          // Q^T, dO^T of the query block [d, kB]
  const float *lse, *corr;        // [bq] at the query block
  float *pt, *dst;                // [kB, kB] scratch each: P^T and dS^T
  float *dq, *dk, *dv;            // f32 accumulators at the query block (dq) and key block (dk, dv)
  int64_t bq, bk, d;
  bool diagonal;
  float scale;
};

// P^T = exp(scale K Q^T - lse); dP^T = V dO^T; dS^T = P^T (dP^T - corr) scale;
// dV += P^T dO; dK += dS^T Q; dQ += dS K (dS read through dS^T).
template <class G>
DS_INLINE void backwardBlockBody(const BackwardBlock& b) {
  const int64_t d = b.d, bq = b.bq, bk = b.bk;
  // A whole diagonal block skips the quarter no query sees (keys h.. for queries ..h), as forward.
  const bool halves = G::kHalves && b.diagonal && bk == kB && bq == kB;
  const int64_t h = bk / 2;
  if (halves) {
    G::template run<false>(h, bq, d, b.k, d, b.qt, kB, b.pt, kB, false);
    G::template run<false>(h, h, d, b.k + h * d, d, b.qt + h, kB, b.pt + h * kB + h, kB, false);
    G::template run<false>(h, bq, d, b.v, d, b.dot, kB, b.dst, kB, false);
    G::template run<false>(h, h, d, b.v + h * d, d, b.dot + h, kB, b.dst + h * kB + h, kB, false);
  } else {
    G::template run<false>(bk, bq, d, b.k, d, b.qt, kB, b.pt, kB, false);
    G::template run<false>(bk, bq, d, b.v, d, b.dot, kB, b.dst, kB, false);
  }
  for (int64_t j = 0; j < bk; ++j) {
    float* pj = b.pt + j * kB;
    float* dj = b.dst + j * kB;
    const int64_t i0 = b.diagonal ? std::min(j, bq) : 0;  // queries before j do not see key j
    for (int64_t i = 0; i < i0; ++i) pj[i] = dj[i] = 0.0f;
#pragma omp simd
    for (int64_t i = i0; i < bq; ++i) {
      pj[i] = expFast(pj[i] * b.scale - b.lse[i]);
      dj[i] = pj[i] * (dj[i] - b.corr[i]) * b.scale;
    }
  }
  if (halves) {
    // dV and dK rows h.. (keys) take queries h.. only; dQ rows ..h (queries) take keys ..h only.
    G::template run<false>(h, d, bq, b.pt, kB, b.dout, d, b.dv, d, true);
    G::template run<false>(h, d, h, b.pt + h * kB + h, kB, b.dout + h * d, d, b.dv + h * d, d, true);
    G::template run<false>(h, d, bq, b.dst, kB, b.q, d, b.dk, d, true);
    G::template run<false>(h, d, h, b.dst + h * kB + h, kB, b.q + h * d, d, b.dk + h * d, d, true);
    G::template run<true>(h, d, h, b.dst, kB, b.k, d, b.dq, d, true);
    G::template run<true>(h, d, bk, b.dst + h, kB, b.k, d, b.dq + h * d, d, true);
    return;
  }
  G::template run<false>(bk, d, bq, b.pt, kB, b.dout, d, b.dv, d, true);
  G::template run<false>(bk, d, bq, b.dst, kB, b.q, d, b.dk, d, true);
  G::template run<true>(bq, d, bk, b.dst, kB, b.k, d, b.dq, d, true);
}
void backwardBlockScalar(const BackwardBlock& b) { backwardBlockBody<GenericGemm<2, 1>>(b); }
DS_TARGET_AVX2 void backwardBlockAvx2(const BackwardBlock& b) { backwardBlockBody<Avx2Gemm>(b); }
DS_TARGET_AVX512 void backwardBlockAvx512(const BackwardBlock& b) { backwardBlockBody<Avx512Gemm>(b); }

void forwardBlockAt(Isa isa, const ForwardBlock& b) {
  if (isa >= Isa::Avx512) return forwardBlockAvx512(b);
  if (isa >= Isa::Avx2) return forwardBlockAvx2(b);
  forwardBlockScalar(b);
}

void backwardBlockAt(Isa isa, const BackwardBlock& b) {
  if (isa >= Isa::Avx512) return backwardBlockAvx512(b);
  if (isa >= Isa::Avx2) return backwardBlockAvx2(b);
  backwardBlockScalar(b);
}

// Rows [r0, r0 + n) of head h as f32 [n, d]: in place when they are f32 and abut, else converted or
// copied into buf row by row.
const float* headRows(Isa isa, DType dt, const void* x, const AttnLayout& L, int64_t h, int64_t r0, int64_t n, int64_t d,
                      float* buf) {
  const int64_t at = headBase(L, h) + r0 * L.sT;
  if (L.sT == d) return tileIn(isa, dt, x, at, n * d, buf);
  const int64_t esz = dtypeBytes(dt);
  forRowsAhead(static_cast<const unsigned char*>(x) + at * esz, n, L.sT * esz, d * esz,
               [&](int64_t i, const unsigned char* row) { toF32(isa, dt, row, buf + i * d, d); });
  return buf;
}

// f32 rows [n, d] into rows [r0, r0 + n) of head h.
void storeRows(Isa isa, DType dt, const float* src, void* x, const AttnLayout& L, int64_t h, int64_t r0, int64_t n, int64_t d) {
  const int64_t at = headBase(L, h) + r0 * L.sT, esz = dtypeBytes(dt);
  if (L.sT == d) return fromF32(isa, dt, src, static_cast<unsigned char*>(x) + at * esz, n * d);
  forRowsAhead(static_cast<unsigned char*>(x) + at * esz, n, L.sT * esz, d * esz,
               [&](int64_t i, unsigned char* row) { fromF32(isa, dt, src + i * d, row, d); });
}

}  // namespace

void attentionForward(const Ctx& c, DType dt, const void* q, const void* k, const void* v, void* out, float* lse,
                      int64_t bh, int64_t t, int64_t d, float scale, const AttnLayout& inL, const AttnLayout& outL) {
  if (bh == 0 || t == 0 || d == 0) return;
  if (attentionOnBf16Dot(c, dt, d)) return attentionForwardBf16(c, q, k, v, out, lse, bh, t, d, scale, inL, outL);
  const int64_t nqb = (t + kB - 1) / kB, td = t * d;
  // The output is written in place when its rows are f32 and abut, else through a conversion buffer.
  const bool inPlace = dt == DType::F32 && outL.sT == d;
  // With heads to spare every item is a whole head (its K and V converted once); with few heads
  // the query blocks of a head are split over items too (its first rows converted per item).
  const int64_t split = bh >= 2 * c.pool->size() ? 1 : nqb, items = bh * split;
  const double work = static_cast<double>(bh) * t * t * d;
  forAttentionItems(c, items, work, [&](int64_t i0, int64_t i1, int tid) {
    // Scratch: f32 K and V of the head, Q^T of a query block, S^T, output accumulator, its
    // conversion buffer, m and l.
    auto* base = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * (2 * td + 3 * kB * d + kB * kB + 2 * kB)));
    float *kf = base, *vf = kf + td, *qt = vf + td, *st = qt + kB * d, *o = st + kB * kB, *ob = o + kB * d;
    float *m = ob + kB * d, *l = m + kB;
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t h = item / split, part = item % split;
      const int64_t qb0 = split == 1 ? 0 : part * nqb / split, qb1 = split == 1 ? nqb : (part + 1) * nqb / split;
      const int64_t rows = std::min(t, qb1 * kB);  // keys any query of the item can see
      const float* ks = headRows(c.isa, dt, k, inL, h, 0, rows, d, kf);  // in place when f32 and contiguous
      const float* vs = headRows(c.isa, dt, v, inL, h, 0, rows, d, vf);
      for (int64_t qb = qb0; qb < qb1; ++qb) {
        const int64_t q0 = qb * kB, bq = std::min(kB, t - q0);
        // Q^T of the block, scaled once here so that the block product yields scale * q . k.
        const float* qsrc = headRows(c.isa, dt, q, inL, h, q0, bq, d, ob);
        transposeInto(c.isa, qsrc, bq, d, d, qt, kB, scale);
        std::fill(o, o + bq * d, 0.0f);
        std::fill(m, m + bq, -__builtin_inff());
        std::fill(l, l + bq, 0.0f);
        for (int64_t k0 = 0; k0 <= q0; k0 += kB) {
          const ForwardBlock blk{qt, ks + k0 * d, vs + k0 * d, st, o, m, l, bq, std::min(kB, t - k0), d, k0 == q0};
          forwardBlockAt(c.isa, blk);
        }
        float* dst = inPlace ? static_cast<float*>(out) + headBase(outL, h) + q0 * d : ob;
        for (int64_t i = 0; i < bq; ++i) {
          const float inv = 1.0f / l[i];
          for (int64_t cc = 0; cc < d; ++cc) dst[i * d + cc] = o[i * d + cc] * inv;
          lse[h * t + q0 + i] = m[i] + std::log(l[i]);
        }
        if (!inPlace) storeRows(c.isa, dt, ob, out, outL, h, q0, bq, d);
      }
    }
  });
}

void attentionBackward(const Ctx& c, DType dt, const void* dout, const void* q, const void* k, const void* v,
                       const void* out, const float* lse, void* dq, void* dk, void* dv, int64_t bh, int64_t t,
                       int64_t d, float scale, const AttnLayout& inL, const AttnLayout& outL) {
  if (bh == 0 || t == 0 || d == 0) return;
  if (attentionOnBf16Dot(c, dt, d))
    return attentionBackwardBf16(c, dout, q, k, v, out, lse, dq, dk, dv, bh, t, d, scale, inL, outL);
  const int64_t td = t * d;
  const double work = static_cast<double>(bh) * t * t * d;
  forAttentionItems(c, bh, work, [&](int64_t h0, int64_t h1, int tid) {
    // Per head: f32 q, k, v, dout; Q^T and dO^T; accumulators dq, dk, dv; corr; the P^T and dS^T
    // blocks; a tile buffer for reading `out`.
    const int64_t tdBlocks = (t + kB - 1) / kB * kB * d;  // Q^T and dO^T are stored in whole blocks
    auto* base = static_cast<float*>(c.pool->scratch(tid, 0, sizeof(float) * (7 * td + 2 * tdBlocks + t + 2 * kB * kB + kTile)));
    float *qf = base, *kf = qf + td, *vf = kf + td, *dof = vf + td, *qt = dof + td, *dot = qt + tdBlocks;
    float *gq = dot + tdBlocks, *gk = gq + td, *gv = gk + td, *corr = gv + td;
    float *pt = corr + t, *dst = pt + kB * kB, *tile = dst + kB * kB;
    for (int64_t h = h0; h < h1; ++h) {
      const float* qs = headRows(c.isa, dt, q, inL, h, 0, t, d, qf);  // in place when f32 and contiguous
      const float* ks = headRows(c.isa, dt, k, inL, h, 0, t, d, kf);
      const float* vs = headRows(c.isa, dt, v, inL, h, 0, t, d, vf);
      const float* dos = headRows(c.isa, dt, dout, outL, h, 0, t, d, dof);
      // Q^T and dO^T block by block ([query block][d][kB]): a block's rows kB apart, not t apart
      // (rows 2 KiB apart at t = 512 fall into two L1 sets: measured 50% slower).
      for (int64_t q0 = 0; q0 < t; q0 += kB) {
        const int64_t bq = std::min(kB, t - q0);
        transposeInto(c.isa, qs + q0 * d, bq, d, d, qt + q0 * d, kB, 1.0f);
        transposeInto(c.isa, dos + q0 * d, bq, d, d, dot + q0 * d, kB, 1.0f);
      }
      // corr_i = sum_j P_ij dP_ij = dout_i . out_i, reading `out` a tile of whole rows at a time.
      const int64_t tileRows = std::max<int64_t>(1, kTile / d);
      for (int64_t r0 = 0; r0 < t; r0 += tileRows) {
        const int64_t nr = std::min(tileRows, t - r0);
        const float* os = headRows(c.isa, dt, out, outL, h, r0, nr, d, tile);
        for (int64_t i = 0; i < nr; ++i) corr[r0 + i] = dotRowAt(c.isa, dos + (r0 + i) * d, os + i * d, d);
      }
      std::fill(gq, gq + 3 * td, 0.0f);
      for (int64_t k0 = 0; k0 < t; k0 += kB) {
        const int64_t bk = std::min(kB, t - k0);
        for (int64_t q0 = k0; q0 < t; q0 += kB) {
          const BackwardBlock blk{qs + q0 * d, ks + k0 * d, vs + k0 * d, dos + q0 * d, qt + q0 * d, dot + q0 * d,
                                  lse + h * t + q0, corr + q0, pt, dst, gq + q0 * d, gk + k0 * d, gv + k0 * d,
                                  std::min(kB, t - q0), bk, d, q0 == k0, scale};
          backwardBlockAt(c.isa, blk);
        }
      }
      storeRows(c.isa, dt, gq, dq, inL, h, 0, t, d);
      storeRows(c.isa, dt, gk, dk, inL, h, 0, t, d);
      storeRows(c.isa, dt, gv, dv, inL, h, 0, t, d);
    }
  });
}

void attentionForward(const Ctx& c, DType dt, const void* q, const void* k, const void* v, void* out, float* lse,
                      int64_t bh, int64_t t, int64_t d, float scale) {
  const AttnLayout L{1, t * d, 0, d};
  attentionForward(c, dt, q, k, v, out, lse, bh, t, d, scale, L, L);
}

void attentionBackward(const Ctx& c, DType dt, const void* dout, const void* q, const void* k, const void* v,
                       const void* out, const float* lse, void* dq, void* dk, void* dv, int64_t bh, int64_t t,
                       int64_t d, float scale) {
  const AttnLayout L{1, t * d, 0, d};
  attentionBackward(c, dt, dout, q, k, v, out, lse, dq, dk, dv, bh, t, d, scale, L, L);
}

}  // namespace ds
