// Causal attention on bf16 with AVX512_BF16: the flash-style algorithm of attention.cc (key blocks of
// kB with an online softmax forward, P recomputed from lse backward, S^T = K Q^T so that the softmax
// statistics vectorize across queries) with every block product on vdpbf16ps, which multiplies bf16
// pairs and adds both products into an f32 lane: twice the products per instruction of an f32 FMA.
//
// The operands are bf16 as they come (q, k, v, dO: their products are exact in f32); the softmax and
// its gradient are computed in f32 and P and dS are rounded to bf16 (nearest even) only as operands
// of the products that follow (P V, P^T dO, dS^T Q, dS K), as FlashAttention does on GPUs; outputs,
// lse and the gradients accumulate in f32 and are rounded once at the end. The f32 path of
// attention.cc keeps P and dS in f32 instead: on bf16 inputs the two differ by about P's rounding,
// 2^-9 of each weight, which averages over the keys (tests: the same tolerance as the f32 path).
//
// vdpbf16ps takes pairs of consecutive k: A(i, p) is a 32-bit broadcast of A's elements 2p and 2p+1
// in row i, and row p of B interleaves B's rows 2p and 2p+1 ("VNNI" layout, [k/2][n][2]). So each
// operand is laid out once per head or block:
//   S^T = K Q^T    A = K rows as they are (pairs along d), B = Q^T pairs [d/2][query] (a 32-bit
//                  transpose of Q's rows);  dP^T = V dO^T likewise.
//   O += P V       A = P as [key/2][query] pairs (written so by the softmax), B = V interleaved
//                  [key/2][d].
//   dV += P^T dO   A = P^T rows [key][query], B = dO interleaved [query/2][d]; dK += dS^T Q likewise.
//   dQ += dS K     A = dS as [key/2][query] pairs, B = K interleaved [key/2][d].
// An odd count of keys (the last block of an odd t) or queries is padded with zeros: the padded P or
// dS entry is 0 and so is the padded row of the interleaved operand.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ds/attention_rows.h"
#include "ds/exp_avx512.h"
#include "ds/transpose8.h"

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized on their "undefined" pass-through
// operands when inlined (as in gemm.cc); the warning concerns the header, not this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace ds {
namespace {

constexpr int64_t kB = 64;  // query and key block size, as attention.cc

DS_INLINE int64_t roundUp2(int64_t x) { return (x + 1) & ~int64_t{1}; }

// C[m x n] (f32 rows ldc) = or += sum over p < kp of A(i, p) . B(p, j): A(i, p) is the bf16 pair at
// 32-bit index i * ai + p * ap of a; row p of B holds n pairs at 32-bit index p * ldb + j. An R x 16U
// tile of C stays in R * U registers across the k loop; its last 16 columns are masked by `last`.
// (4 x 64 tiles run at the core's vdpbf16ps rate on data in L1, measured beside 14 x 32, 6 x 64 and
// 8 x 48: all within 0.5%.)
template <int R, int U>
DS_TARGET_AVX512BF16 DS_INLINE void dotTile(int64_t kp, const uint32_t* a, int64_t ai, int64_t ap, const uint32_t* b,
                                            int64_t ldb, float* c, int64_t ldc, bool accumulate, __mmask16 last) {
  __m512 acc[R][U];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u)
      acc[r][u] = accumulate ? _mm512_maskz_loadu_ps(u == U - 1 ? last : 0xffff, c + r * ldc + 16 * u) : _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh bv[U];
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u)
      bv[u] = (__m512bh)(u == U - 1 ? _mm512_maskz_loadu_epi32(last, b + 16 * u) : _mm512_loadu_si512(b + 16 * u));
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * ai]));
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u) acc[r][u] = _mm512_dpbf16_ps(acc[r][u], av, bv[u]);
    }
    a += ap;
    b += ldb;
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) _mm512_mask_storeu_ps(c + r * ldc + 16 * u, u == U - 1 ? last : 0xffff, acc[r][u]);
}

template <int U>
DS_TARGET_AVX512BF16 DS_INLINE void dotRows(int64_t m, int64_t kp, const uint32_t* a, int64_t ai, int64_t ap,
                                            const uint32_t* b, int64_t ldb, float* c, int64_t ldc, bool accumulate,
                                            __mmask16 last) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) dotTile<4, U>(kp, a + i * ai, ai, ap, b, ldb, c + i * ldc, ldc, accumulate, last);
  for (; i < m; ++i) dotTile<1, U>(kp, a + i * ai, ai, ap, b, ldb, c + i * ldc, ldc, accumulate, last);
}

// The whole product, in column strips of at most 64.
DS_TARGET_AVX512BF16 void dotGemm(int64_t m, int64_t n, int64_t kp, const uint32_t* a, int64_t ai, int64_t ap,
                                  const uint32_t* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (kp <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  for (int64_t j = 0; j < n; j += 64) {
    const int64_t w = std::min<int64_t>(64, n - j), u = (w + 15) / 16, tail = w - 16 * (u - 1);
    const __mmask16 last = tail == 16 ? 0xffff : static_cast<__mmask16>((1u << tail) - 1);
    switch (u) {
      case 1: dotRows<1>(m, kp, a, ai, ap, b + j, ldb, c + j, ldc, accumulate, last); break;
      case 2: dotRows<2>(m, kp, a, ai, ap, b + j, ldb, c + j, ldc, accumulate, last); break;
      case 3: dotRows<3>(m, kp, a, ai, ap, b + j, ldb, c + j, ldc, accumulate, last); break;
      default: dotRows<4>(m, kp, a, ai, ap, b + j, ldb, c + j, ldc, accumulate, last); break;
    }
  }
}

// Rows [r0, r0 + n) of head h of a bf16 tensor into dst [n][d], contiguous.
void copyRows(const void* x, const AttnLayout& L, int64_t h, int64_t r0, int64_t n, int64_t d, uint16_t* dst) {
  const auto* src = static_cast<const unsigned char*>(x) + (headBase(L, h) + r0 * L.sT) * 2;
  forRowsAhead(src, n, L.sT * 2, d * 2, [&](int64_t i, const unsigned char* row) { std::memcpy(dst + i * d, row, d * 2); });
}

// Rows [r0, r0 + n) of contiguous rows x [.][d] interleaved in pairs: dst[p][c] = x[2p][c] | x[2p+1][c] << 16
// for the ceil(n / 2) pairs, the row past an odd n taken as 0.
DS_TARGET_AVX512BF16 void interleavePairs(const uint16_t* x, int64_t n, int64_t d, uint32_t* dst) {
  for (int64_t p = 0; p < n / 2; ++p) {
    const uint16_t *r0 = x + 2 * p * d, *r1 = r0 + d;
    uint32_t* o = dst + p * d;
#pragma omp simd
    for (int64_t c = 0; c < d; ++c) o[c] = static_cast<uint32_t>(r0[c]) | static_cast<uint32_t>(r1[c]) << 16;
  }
  if (n % 2) {
    const uint16_t* r0 = x + (n - 1) * d;
    uint32_t* o = dst + (n / 2) * d;
    for (int64_t c = 0; c < d; ++c) o[c] = r0[c];
  }
}

// The d / 2 pairs of each of the n <= kB contiguous rows x [n][d] transposed: dst[p][i] = pair p of row i
// (rows of dst kB apart), 16 rows at a time through the GEMM packing's 32-bit strip transpose.
void transposePairs(const uint16_t* x, int64_t n, int64_t d, uint32_t* dst) {
  for (int64_t i0 = 0; i0 < n; i0 += 16) {
    const int rows = static_cast<int>(std::min<int64_t>(16, n - i0));
    const unsigned char* lines[16];
    for (int r = 0; r < rows; ++r) lines[r] = reinterpret_cast<const unsigned char*>(x + (i0 + r) * d);
    transposeStrip(lines, rows, d / 2, rows, kB, dst + i0);
  }
}

// 16 f32 lanes of rows j and j + 1 rounded to bf16 and interleaved: lane i of the result is row j's
// lane i in its low half and row j + 1's in its high half.
DS_TARGET_AVX512BF16 DS_INLINE __m512i pairLanes(__m512 lo, __m512 hi) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5,
                                       20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

// sum_c x[c] y[c] over d (even) bf16 elements, in f32 lanes (corr = dO . O per query).
DS_TARGET_AVX512BF16 float dotBf16(const uint16_t* x, const uint16_t* y, int64_t d) {
  __m512 acc = _mm512_setzero_ps();
  const auto *x32 = reinterpret_cast<const uint32_t*>(x), *y32 = reinterpret_cast<const uint32_t*>(y);
  const int64_t np = d / 2;
  for (int64_t p = 0; p < np; p += 16) {
    const __mmask16 m = np - p >= 16 ? 0xffff : static_cast<__mmask16>((1u << (np - p)) - 1);
    acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_maskz_loadu_epi32(m, x32 + p), (__m512bh)_mm512_maskz_loadu_epi32(m, y32 + p));
  }
  return _mm512_reduce_add_ps(acc);
}

// Lanes [16u, 16u + 16) of a kB-wide row: which are below `i0` (as a mask).
DS_TARGET_AVX512BF16 DS_INLINE __mmask16 lanesBelow(int u, int64_t i0) {
  const __m512i lane = _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(16 * u));
  return _mm512_cmp_epi32_mask(lane, _mm512_set1_epi32(static_cast<int>(i0)), _MM_CMPINT_LT);
}

// Forward softmax of one block, all kB query lanes: S^T rows [0, bkp) scaled and masked in place (a
// query sees keys at or before it on the diagonal; a padded key row sees nothing) with the new running
// max mx = max(m, column max) in the same pass; alpha = exp(m - mx); then P = exp(s - mx) two key rows
// at a time, written straight into pv as bf16 pairs, with its column sums (of the f32 values) in sum.
DS_TARGET_AVX512BF16 void softmaxBlock(float* st, int64_t bk, int64_t bkp, bool diagonal, float scale, const float* m,
                                       float* mx, float* alpha, float* sum, uint32_t* pv) {
  const __m512 vs = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-__builtin_inff());
  __m512 mv[4], sv[4];
  for (int u = 0; u < 4; ++u) mv[u] = _mm512_loadu_ps(m + 16 * u);
  for (int64_t j = 0; j < bkp; ++j) {
    float* sj = st + j * kB;
    const int64_t i0 = j >= bk ? kB : diagonal ? j : 0;
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const __m512 v = _mm512_mask_mov_ps(_mm512_mul_ps(_mm512_loadu_ps(sj + 16 * u), vs), lanesBelow(u, i0), ninf);
      _mm512_storeu_ps(sj + 16 * u, v);
      mv[u] = _mm512_max_ps(mv[u], v);
    }
  }
  for (int u = 0; u < 4; ++u) {
    _mm512_storeu_ps(alpha + 16 * u, exp16(_mm512_sub_ps(_mm512_loadu_ps(m + 16 * u), mv[u])));
    _mm512_storeu_ps(mx + 16 * u, mv[u]);
    sv[u] = _mm512_setzero_ps();
  }
  for (int64_t j = 0; j < bkp; j += 2) {
    const float *s0 = st + j * kB, *s1 = s0 + kB;
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const __m512 e0 = exp16(_mm512_sub_ps(_mm512_loadu_ps(s0 + 16 * u), mv[u]));  // masked: exp(-inf) = 0
      const __m512 e1 = exp16(_mm512_sub_ps(_mm512_loadu_ps(s1 + 16 * u), mv[u]));
      sv[u] = _mm512_add_ps(_mm512_add_ps(sv[u], e0), e1);
      _mm512_storeu_si512(pv + (j / 2) * kB + 16 * u, pairLanes(e0, e1));
    }
  }
  for (int u = 0; u < 4; ++u) _mm512_storeu_ps(sum + 16 * u, sv[u]);
}

// Backward of one block, all kB query lanes, two key rows at a time: P^T = exp(scale S^T - lse) and
// dS^T = P^T (dP^T - corr) scale, zero outside lanes [i0, bq) (causal mask, padded key rows, lanes past
// a short query block: they are read as padding of a pair), written as bf16 rows (P^T and dS^T, for
// dV and dK) and as bf16 pairs (dS, for dQ).
DS_TARGET_AVX512BF16 void gradBlock(const float* pt, const float* dpt, int64_t bk, int64_t bkp, int64_t bq, bool diagonal,
                                    float scale, const float* lq, const float* cq, uint16_t* ptb, uint16_t* dsb,
                                    uint32_t* dsv) {
  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t j = 0; j < bkp; j += 2) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const __m512 l = _mm512_loadu_ps(lq + 16 * u), cr = _mm512_loadu_ps(cq + 16 * u);
      const __mmask16 past = static_cast<__mmask16>(~lanesBelow(u, bq));
      __m512 ds[2];
      for (int e = 0; e < 2; ++e) {
        const int64_t row = j + e, at = row * kB + 16 * u;
        const int64_t i0 = row >= bk ? bq : diagonal ? std::min(row, bq) : 0;
        const __mmask16 live = static_cast<__mmask16>(~lanesBelow(u, i0) & ~past);
        const __m512 pe = _mm512_maskz_mov_ps(live, exp16(_mm512_fmsub_ps(_mm512_loadu_ps(pt + at), vs, l)));
        ds[e] = _mm512_maskz_mov_ps(live, _mm512_mul_ps(_mm512_mul_ps(pe, _mm512_sub_ps(_mm512_loadu_ps(dpt + at), cr)), vs));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(ptb + at), (__m256i)_mm512_cvtneps_pbh(pe));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dsb + at), (__m256i)_mm512_cvtneps_pbh(ds[e]));
      }
      _mm512_storeu_si512(dsv + (j / 2) * kB + 16 * u, pairLanes(ds[0], ds[1]));
    }
  }
}

struct ForwardItem {
  const void *q, *k, *v;
  void* out;
  float* lse;
  const AttnLayout *inL, *outL;
  int64_t h, qb0, qb1, t, d;
  float scale;
  void* scratch;
};

// Bytes of scratch a forward item needs at t, d (64-byte aligned pieces).
constexpr int64_t align64(int64_t bytes) { return (bytes + 63) & ~int64_t{63}; }
int64_t forwardScratchBytes(int64_t t, int64_t d) {
  return align64(2 * t * d) * 2 + align64(4 * (t / 2 + 1) * d) + align64(2 * kB * d) + align64(4 * (d / 2) * kB) +
         align64(4 * kB * kB) + align64(4 * (kB / 2) * kB) + align64(4 * kB * d) * 2 + align64(4 * kB) * 4;
}

// One forward item: query blocks [qb0, qb1) of head h.
DS_TARGET_AVX512BF16 void forwardItem(const ForwardItem& it) {
  const int64_t t = it.t, d = it.d, np = d / 2;
  const int64_t rows = std::min(t, it.qb1 * kB);  // keys any query of the item can see
  auto* p = static_cast<unsigned char*>(it.scratch);
  const auto take = [&](int64_t bytes) { void* r = p; p += align64(bytes); return r; };
  auto* kr = static_cast<uint16_t*>(take(2 * t * d));   // K rows [rows][d]
  auto* vr = static_cast<uint16_t*>(take(2 * t * d));   // V rows [rows][d]
  auto* vv = static_cast<uint32_t*>(take(4 * (t / 2 + 1) * d));  // V interleaved [rows/2][d]
  auto* qr = static_cast<uint16_t*>(take(2 * kB * d));  // Q rows of a block [kB][d]
  auto* qt = static_cast<uint32_t*>(take(4 * np * kB)); // Q^T pairs [d/2][kB]
  auto* st = static_cast<float*>(take(4 * kB * kB));    // S^T, then P^T, f32 [kB][kB]
  auto* pv = static_cast<uint32_t*>(take(4 * (kB / 2) * kB));  // P as pairs [kB/2][kB]
  auto* o = static_cast<float*>(take(4 * kB * d));      // output accumulator [kB][d]
  auto* ob = static_cast<float*>(take(4 * kB * d));     // normalized output rows
  auto *m = static_cast<float*>(take(4 * kB)), *l = static_cast<float*>(take(4 * kB));
  auto *mx = static_cast<float*>(take(4 * kB)), *alpha = static_cast<float*>(take(4 * kB));
  // Lanes past a short query block are computed on but never read: keep them finite.
  std::fill(st, st + kB * kB, 0.0f);
  copyRows(it.k, *it.inL, it.h, 0, rows, d, kr);
  copyRows(it.v, *it.inL, it.h, 0, rows, d, vr);
  interleavePairs(vr, rows, d, vv);
  const auto* k32 = reinterpret_cast<const uint32_t*>(kr);
  const float scale = it.scale;
  for (int64_t qb = it.qb0; qb < it.qb1; ++qb) {
    const int64_t q0 = qb * kB, bq = std::min(kB, t - q0);
    copyRows(it.q, *it.inL, it.h, q0, bq, d, qr);
    transposePairs(qr, bq, d, qt);
    std::fill(o, o + bq * d, 0.0f);
    std::fill(m, m + kB, -__builtin_inff());
    std::fill(l, l + kB, 0.0f);
    for (int64_t k0 = 0; k0 <= q0; k0 += kB) {
      const int64_t bk = std::min(kB, t - k0), bkp = roundUp2(bk);
      const bool diagonal = k0 == q0;
      // A whole diagonal block in halves: keys [h, kB) see only queries [h, kB), so the top-right
      // quarter of S^T is not computed (the mask below writes it).
      const bool halves = diagonal && bk == kB && bq == kB;
      const int64_t hb = kB / 2;
      if (halves) {
        dotGemm(hb, bq, np, k32 + k0 * np, np, 1, qt, kB, st, kB, false);
        dotGemm(hb, hb, np, k32 + (k0 + hb) * np, np, 1, qt + hb, kB, st + hb * kB + hb, kB, false);
      } else {
        dotGemm(bk, bq, np, k32 + k0 * np, np, 1, qt, kB, st, kB, false);
      }
      float sum[kB];
      softmaxBlock(st, bk, bkp, diagonal, scale, m, mx, alpha, sum, pv);
      for (int64_t i = 0; i < bq; ++i) {
        l[i] = l[i] * alpha[i] + sum[i];
        m[i] = mx[i];
        float* oi = o + i * d;
        const float a = alpha[i];
#pragma omp simd
        for (int64_t c = 0; c < d; ++c) oi[c] *= a;
      }
      const uint32_t* vb = vv + (k0 / 2) * d;
      if (halves) {
        // Queries [0, h) see keys [0, h) only (their P is 0 beyond).
        dotGemm(hb, d, hb / 2, pv, 1, kB, vb, d, o, d, true);
        dotGemm(hb, d, kB / 2, pv + hb, 1, kB, vb, d, o + hb * d, d, true);
      } else {
        dotGemm(bq, d, bkp / 2, pv, 1, kB, vb, d, o, d, true);
      }
    }
    for (int64_t i = 0; i < bq; ++i) {
      const float inv = 1.0f / l[i];
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) ob[i * d + c] = o[i * d + c] * inv;
      it.lse[it.h * t + q0 + i] = m[i] + std::log(l[i]);
    }
    auto* dst = static_cast<unsigned char*>(it.out) + (headBase(*it.outL, it.h) + q0 * it.outL->sT) * 2;
    forRowsAhead(dst, bq, it.outL->sT * 2, d * 2,
                 [&](int64_t i, unsigned char* row) { fromF32(Isa::Avx512, DType::BF16, ob + i * d, row, d); });
  }
}

struct BackwardHead {
  const void *dout, *q, *k, *v, *out;
  const float* lse;
  void *dq, *dk, *dv;
  const AttnLayout *inL, *outL;
  int64_t h, t, d;
  float scale;
  void* scratch;
};

int64_t backwardScratchBytes(int64_t t, int64_t d) {
  const int64_t tb = (t + kB - 1) / kB * kB;  // Q^T and dO^T pairs are stored in whole blocks
  return align64(2 * t * d) * 4 + align64(2 * d) + align64(4 * (t / 2 + 1) * d) * 3 + align64(4 * (d / 2) * tb) * 2 +
         align64(4 * t * d) * 3 + align64(4 * t) + align64(4 * kB * kB) * 2 + align64(2 * kB * kB) * 2 +
         align64(4 * (kB / 2) * kB);
}

// One head backward: P^T = exp(scale K Q^T - lse); dP^T = V dO^T; dS^T = P^T (dP^T - corr) scale;
// dV += P^T dO; dK += dS^T Q; dQ += dS K, over key blocks and the query blocks at or below the diagonal.
DS_TARGET_AVX512BF16 void backwardHead(const BackwardHead& it) {
  const int64_t t = it.t, d = it.d, np = d / 2, h = it.h;
  const int64_t tb = (t + kB - 1) / kB * kB;
  auto* p = static_cast<unsigned char*>(it.scratch);
  const auto take = [&](int64_t bytes) { void* r = p; p += align64(bytes); return r; };
  auto* qr = static_cast<uint16_t*>(take(2 * t * d));
  auto* kr = static_cast<uint16_t*>(take(2 * t * d));
  auto* vr = static_cast<uint16_t*>(take(2 * t * d));
  auto* dr = static_cast<uint16_t*>(take(2 * t * d));
  auto* orow = static_cast<uint16_t*>(take(2 * d));
  auto* kv = static_cast<uint32_t*>(take(4 * (t / 2 + 1) * d));   // K interleaved [t/2][d]
  auto* qv = static_cast<uint32_t*>(take(4 * (t / 2 + 1) * d));   // Q interleaved
  auto* dov = static_cast<uint32_t*>(take(4 * (t / 2 + 1) * d));  // dO interleaved
  auto* qt = static_cast<uint32_t*>(take(4 * np * tb));   // Q^T pairs per query block [t/kB][d/2][kB]
  auto* dot = static_cast<uint32_t*>(take(4 * np * tb));  // dO^T pairs likewise
  auto* gq = static_cast<float*>(take(4 * t * d));
  auto* gk = static_cast<float*>(take(4 * t * d));
  auto* gv = static_cast<float*>(take(4 * t * d));
  auto* corr = static_cast<float*>(take(4 * t));
  auto* pt = static_cast<float*>(take(4 * kB * kB));   // P^T f32 [key][query]
  auto* dst = static_cast<float*>(take(4 * kB * kB));  // dP^T, then dS^T f32
  auto* ptb = static_cast<uint16_t*>(take(2 * kB * kB));  // P^T bf16 rows
  auto* dsb = static_cast<uint16_t*>(take(2 * kB * kB));  // dS^T bf16 rows
  auto* dsv = static_cast<uint32_t*>(take(4 * (kB / 2) * kB));  // dS as pairs [key/2][query]
  const AttnLayout &inL = *it.inL, &outL = *it.outL;
  copyRows(it.q, inL, h, 0, t, d, qr);
  copyRows(it.k, inL, h, 0, t, d, kr);
  copyRows(it.v, inL, h, 0, t, d, vr);
  copyRows(it.dout, outL, h, 0, t, d, dr);
  interleavePairs(kr, t, d, kv);
  interleavePairs(qr, t, d, qv);
  interleavePairs(dr, t, d, dov);
  for (int64_t q0 = 0; q0 < t; q0 += kB) {
    const int64_t bq = std::min(kB, t - q0);
    transposePairs(qr + q0 * d, bq, d, qt + q0 * np);
    transposePairs(dr + q0 * d, bq, d, dot + q0 * np);
  }
  // corr_i = sum_j P_ij dP_ij = dout_i . out_i.
  const auto* ob = static_cast<const unsigned char*>(it.out) + headBase(outL, h) * 2;
  forRowsAhead(ob, t, outL.sT * 2, d * 2, [&](int64_t i, const unsigned char* row) {
    std::memcpy(orow, row, d * 2);
    corr[i] = dotBf16(dr + i * d, orow, d);
  });
  std::fill(gq, gq + t * d, 0.0f);
  std::fill(gk, gk + t * d, 0.0f);
  std::fill(gv, gv + t * d, 0.0f);
  const auto *k32 = reinterpret_cast<const uint32_t*>(kr), *v32 = reinterpret_cast<const uint32_t*>(vr);
  const auto *ptb32 = reinterpret_cast<const uint32_t*>(ptb), *dsb32 = reinterpret_cast<const uint32_t*>(dsb);
  const float scale = it.scale;
  const float* lse = it.lse + h * t;
  const int64_t hb = kB / 2;
  for (int64_t k0 = 0; k0 < t; k0 += kB) {
    const int64_t bk = std::min(kB, t - k0), bkp = roundUp2(bk);
    for (int64_t q0 = k0; q0 < t; q0 += kB) {
      const int64_t bq = std::min(kB, t - q0), bqp = roundUp2(bq);
      const bool diagonal = q0 == k0;
      const bool halves = diagonal && bk == kB && bq == kB;
      const uint32_t *qtb = qt + q0 * np, *dotb = dot + q0 * np;
      if (halves) {
        dotGemm(hb, bq, np, k32 + k0 * np, np, 1, qtb, kB, pt, kB, false);
        dotGemm(hb, hb, np, k32 + (k0 + hb) * np, np, 1, qtb + hb, kB, pt + hb * kB + hb, kB, false);
        dotGemm(hb, bq, np, v32 + k0 * np, np, 1, dotb, kB, dst, kB, false);
        dotGemm(hb, hb, np, v32 + (k0 + hb) * np, np, 1, dotb + hb, kB, dst + hb * kB + hb, kB, false);
      } else {
        dotGemm(bk, bq, np, k32 + k0 * np, np, 1, qtb, kB, pt, kB, false);
        dotGemm(bk, bq, np, v32 + k0 * np, np, 1, dotb, kB, dst, kB, false);
      }
      // lse and corr of the block's queries, 0 past a short block (its lanes are computed, then zeroed).
      float lq[kB], cq[kB];
      for (int64_t i = 0; i < kB; ++i) {
        lq[i] = i < bq ? lse[q0 + i] : 0.0f;
        cq[i] = i < bq ? corr[q0 + i] : 0.0f;
      }
      gradBlock(pt, dst, bk, bkp, bq, diagonal, scale, lq, cq, ptb, dsb, dsv);
      const int64_t qp = bqp / 2;
      const uint32_t *dob = dov + (q0 / 2) * d, *qb = qv + (q0 / 2) * d;
      if (halves) {
        // dV and dK rows h.. (keys) take queries h.. only; dQ rows ..h (queries) take keys ..h only.
        dotGemm(hb, d, qp, ptb32, kB / 2, 1, dob, d, gv + k0 * d, d, true);
        dotGemm(hb, d, hb / 2, ptb32 + hb * (kB / 2) + hb / 2, kB / 2, 1, dob + (hb / 2) * d, d, gv + (k0 + hb) * d, d, true);
        dotGemm(hb, d, qp, dsb32, kB / 2, 1, qb, d, gk + k0 * d, d, true);
        dotGemm(hb, d, hb / 2, dsb32 + hb * (kB / 2) + hb / 2, kB / 2, 1, qb + (hb / 2) * d, d, gk + (k0 + hb) * d, d, true);
        dotGemm(hb, d, hb / 2, dsv, 1, kB, kv + (k0 / 2) * d, d, gq + q0 * d, d, true);
        dotGemm(hb, d, kB / 2, dsv + hb, 1, kB, kv + (k0 / 2) * d, d, gq + (q0 + hb) * d, d, true);
      } else {
        dotGemm(bk, d, qp, ptb32, kB / 2, 1, dob, d, gv + k0 * d, d, true);
        dotGemm(bk, d, qp, dsb32, kB / 2, 1, qb, d, gk + k0 * d, d, true);
        dotGemm(bq, d, bkp / 2, dsv, 1, kB, kv + (k0 / 2) * d, d, gq + q0 * d, d, true);
      }
    }
  }
  const auto store = [&](const float* g, void* x, const AttnLayout& L) {
    auto* base = static_cast<unsigned char*>(x) + headBase(L, h) * 2;
    forRowsAhead(base, t, L.sT * 2, d * 2, [&](int64_t i, unsigned char* row) { fromF32(Isa::Avx512, DType::BF16, g + i * d, row, d); });
  };
  store(gq, it.dq, inL);
  store(gk, it.dk, inL);
  store(gv, it.dv, inL);
}

}  // namespace

void attentionForwardBf16(const Ctx& c, const void* q, const void* k, const void* v, void* out, float* lse, int64_t bh,
                          int64_t t, int64_t d, float scale, const AttnLayout& inL, const AttnLayout& outL) {
  const int64_t nqb = (t + kB - 1) / kB;
  // With heads to spare every item is a whole head (its K and V laid out once); with few heads the
  // query blocks of a head are split over items too.
  const int64_t split = bh >= 2 * c.pool->size() ? 1 : nqb, items = bh * split;
  const double work = static_cast<double>(bh) * t * t * d;
  const size_t bytes = static_cast<size_t>(forwardScratchBytes(t, d));
  forAttentionItems(c, items, work, [&](int64_t i0, int64_t i1, int tid) {
    void* scratch = c.pool->scratch(tid, 0, bytes);
    for (int64_t item = i0; item < i1; ++item) {
      const int64_t h = item / split, part = item % split;
      const int64_t qb0 = split == 1 ? 0 : part * nqb / split, qb1 = split == 1 ? nqb : (part + 1) * nqb / split;
      forwardItem(ForwardItem{q, k, v, out, lse, &inL, &outL, h, qb0, qb1, t, d, scale, scratch});
    }
  });
}

void attentionBackwardBf16(const Ctx& c, const void* dout, const void* q, const void* k, const void* v, const void* out,
                           const float* lse, void* dq, void* dk, void* dv, int64_t bh, int64_t t, int64_t d, float scale,
                           const AttnLayout& inL, const AttnLayout& outL) {
  const double work = static_cast<double>(bh) * t * t * d;
  const size_t bytes = static_cast<size_t>(backwardScratchBytes(t, d));
  forAttentionItems(c, bh, work, [&](int64_t h0, int64_t h1, int tid) {
    void* scratch = c.pool->scratch(tid, 0, bytes);
    for (int64_t h = h0; h < h1; ++h) backwardHead(BackwardHead{dout, q, k, v, out, lse, dq, dk, dv, &inL, &outL, h, t, d, scale, scratch});
  });
}

}  // namespace ds
