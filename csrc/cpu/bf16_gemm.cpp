// bf16 x bf16 -> fp32 matrix products of the loss kernel's bf16 tiles.
//
// MKL's cblas_gemm_bf16bf16f32 uses AMX on CPUs that have it, but on CPUs with AVX512-BF16 and no AMX (AMD Zen 4
// and later) it runs at the float32 rate.  There the products go through the micro-kernel below instead: each
// vdpbf16ps multiplies 16 pairs of bf16 and adds them to 16 float32 sums, twice the work of a float32 FMA per
// instruction.  Elsewhere (AMX, or no AVX512-BF16) MKL does them.  ARL_FAST_BF16_GEMM=mkl forces MKL, to compare.
//
// The products are column-major BLAS calls, C (m x n) = alpha op(A) op(B) + beta C.  Read row-major, C^T (n x m,
// rows ldc apart) = X Y with X = op(B)^T (n x k) and Y = op(A)^T (k x m).  Y is packed into panels of 16 columns
// whose words are the pairs (Y[2p][s], Y[2p + 1][s]); X's pairs (X[r][2p], X[r][2p + 1]) are broadcast, read in
// place where they are adjacent in memory (op(B) = B) and packed as pairs of rows otherwise.  Sums are float32,
// as in MKL, in the order of k; k odd pairs the last element with a zero.  The instruction flushes products and
// sums below float32's normal range to zero (as the loss kernel flushes its tiles): never more than the smallest
// normal float per product.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(CPU_CAPABILITY_AVX512) || (defined(__AVX512F__) && defined(__AVX512BW__))
#define ARL_FAST_OWN_BF16_GEMM 1
#include <immintrin.h>
#endif

extern "C" {
// MKL's bf16 x bf16 -> fp32 gemm (AMX where the CPU has it), as torch's own MKL exports it.
void cblas_gemm_bf16bf16f32(int layout, int transa, int transb, int m, int n, int k, float alpha,
                            const uint16_t* a, int lda, const uint16_t* b, int ldb, float beta, float* c, int ldc);
}

namespace arl_fast {
namespace bf16 {

constexpr int kColMajor = 102, kNoTrans = 111, kTrans = 112;  // CBLAS enums

// Whether this build and CPU can run the micro-kernel (AVX512-BF16's vdpbf16ps).
inline bool own_available() {
#ifdef ARL_FAST_OWN_BF16_GEMM
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

// Which implementation runs the bf16 products on this CPU: "avx512_bf16" (the micro-kernel) or "mkl".
inline const std::string& implementation() {
  static const std::string chosen = [] {
    const char* forced = std::getenv("ARL_FAST_BF16_GEMM");
    if (forced && std::string(forced) == "mkl") return std::string("mkl");
    if (own_available() && !__builtin_cpu_supports("amx-bf16")) return std::string("avx512_bf16");
    return std::string("mkl");
  }();
  return chosen;
}

inline void mkl_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a,
                     int64_t lda, const uint16_t* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_gemm_bf16bf16f32(kColMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, m, n, k, alpha, a, lda, b, ldb,
                         beta, c, ldc);
}

#ifdef ARL_FAST_OWN_BF16_GEMM

#define ARL_FAST_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

constexpr int kRows = 12;   // rows of X per micro-tile: 12 x 2 float32 accumulators in registers
constexpr int kPanel = 16;  // columns of Y per packed panel (one zmm of float32 sums)

inline uint32_t load_pair(const uint16_t* p) {
  uint32_t word;
  std::memcpy(&word, p, sizeof(word));
  return word;
}

// In-register transpose of a 16 x 16 matrix of 32-bit words (v[i] holds row i).
ARL_FAST_BF16_TARGET
inline void transpose16x16(__m512i v[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    v[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    v[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    v[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    v[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // Lane L (128 bits) of v[4g + j] now holds rows 4g..4g+3 of column 4L + j: column 4L + j is lane L of v[j],
  // v[4 + j], v[8 + j], v[12 + j], gathered by a 4 x 4 transpose of lanes.
  for (int j = 0; j < 4; ++j) {
    const __m512i a = v[j], b = v[4 + j], c = v[8 + j], d = v[12 + j];
    const __m512i ab_lo = _mm512_shuffle_i32x4(a, b, 0x88), ab_hi = _mm512_shuffle_i32x4(a, b, 0xDD);
    const __m512i cd_lo = _mm512_shuffle_i32x4(c, d, 0x88), cd_hi = _mm512_shuffle_i32x4(c, d, 0xDD);
    t[j] = _mm512_shuffle_i32x4(ab_lo, cd_lo, 0x88);
    t[4 + j] = _mm512_shuffle_i32x4(ab_hi, cd_hi, 0x88);
    t[8 + j] = _mm512_shuffle_i32x4(ab_lo, cd_lo, 0xDD);
    t[12 + j] = _mm512_shuffle_i32x4(ab_hi, cd_hi, 0xDD);
  }
  for (int i = 0; i < 16; ++i) v[i] = t[i];
}

// out[0, count) = the words (lo[r], hi[r]) (hi = nullptr: zeros), 16 at a time.
ARL_FAST_BF16_TARGET
inline void interleave(const uint16_t* lo, const uint16_t* hi, int64_t count, uint32_t* out) {
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int64_t r = 0; r < count; r += 16) {
    const __mmask16 mask = static_cast<__mmask16>(count - r >= 16 ? 0xFFFF : (1u << (count - r)) - 1);
    const __m256i a = _mm256_maskz_loadu_epi16(mask, lo + r);
    const __m256i b = hi ? _mm256_maskz_loadu_epi16(mask, hi + r) : _mm256_setzero_si256();
    const __m512i words = _mm512_permutexvar_epi16(order, _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1));
    _mm512_mask_storeu_epi32(out + r, mask, words);
  }
}

// Y's pairs of rows as panels: word (p, s) of panel q at out[(q * kp + p) * 16 + s] is (Y[2p][16q + s],
// Y[2p + 1][16q + s]), zero beyond k rows and m columns.  Y[j][s] = y[j * row + s * col] (one of row, col is 1).
ARL_FAST_BF16_TARGET
void pack_panels(const uint16_t* y, int64_t row, int64_t col, int64_t k, int64_t m, uint32_t* out) {
  const int64_t kp = (k + 1) / 2, panels = (m + kPanel - 1) / kPanel;
  if (col == 1) {  // rows contiguous: interleave two rows, 16 columns at a time
    for (int64_t q = 0; q < panels; ++q) {
      const int64_t s0 = q * kPanel, width = std::min<int64_t>(kPanel, m - s0);
      for (int64_t p = 0; p < kp; ++p) {
        uint32_t* dst = out + (q * kp + p) * kPanel;
        if (width < kPanel) std::fill(dst, dst + kPanel, 0u);
        interleave(y + 2 * p * row + s0, 2 * p + 1 < k ? y + (2 * p + 1) * row + s0 : nullptr, width, dst);
      }
    }
    return;
  }
  // columns contiguous (Y[j][s] = y[s * col + j]): each column's pairs are adjacent words, transposed into panels
  // 16 x 16 words at a time
  const int64_t full = k / 2;
  for (int64_t q = 0; q < panels; ++q) {
    uint32_t* panel = out + q * kp * kPanel;
    const int64_t width = std::min<int64_t>(kPanel, m - q * kPanel);
    const uint16_t* src = y + q * kPanel * col;
    int64_t p = 0;
    if (width == kPanel) {
      for (; p + 16 <= full; p += 16) {
        __m512i v[16];
        for (int s = 0; s < 16; ++s) v[s] = _mm512_loadu_si512(src + s * col + 2 * p);
        transpose16x16(v);
        for (int i = 0; i < 16; ++i) _mm512_storeu_si512(panel + (p + i) * kPanel, v[i]);
      }
    }
    for (; p < full; ++p)
      for (int64_t s = 0; s < kPanel; ++s) panel[p * kPanel + s] = s < width ? load_pair(src + s * col + 2 * p) : 0u;
    if (k % 2)
      for (int64_t s = 0; s < kPanel; ++s) panel[full * kPanel + s] = s < width ? src[s * col + k - 1] : 0u;
  }
}

// X's pairs for X[r][j] = x[j * ld + r] (X^T's rows contiguous): word (p, r) at out[p * n + r] is (X[r][2p],
// X[r][2p + 1]), the pair's second element zero where 2p + 1 = k.
ARL_FAST_BF16_TARGET
void pack_pairs_of_rows(const uint16_t* x, int64_t ld, int64_t k, int64_t n, uint32_t* out) {
  for (int64_t p = 0; p < (k + 1) / 2; ++p)
    interleave(x + 2 * p * ld, 2 * p + 1 < k ? x + (2 * p + 1) * ld : nullptr, n, out + p * n);
}

// C^T rows [0, RB) x columns [0, width) (width <= 32) of alpha X Y + beta C^T.  X's word (r, p) is read at
// x + r * xr + p * xp (in uint16 units), as a pair, or for p = kp - 1 with k odd as one element and a zero.
template <int RB>
ARL_FAST_BF16_TARGET void micro_tile(const uint16_t* x, int64_t xr, int64_t xp, int64_t k, const uint32_t* y0,
                                     const uint32_t* y1, float* c, int64_t ldc, int64_t width, float alpha,
                                     float beta) {
  __m512 acc0[RB], acc1[RB];
  for (int i = 0; i < RB; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  const int64_t full = k / 2;
  for (int64_t p = 0; p < full; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(y0 + p * kPanel);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(y1 + p * kPanel);
    const uint16_t* xp_ = x + p * xp;
#pragma GCC unroll 12
    for (int i = 0; i < RB; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(load_pair(xp_ + i * xr)));
      acc0[i] = _mm512_dpbf16_ps(acc0[i], a, b0);
      acc1[i] = _mm512_dpbf16_ps(acc1[i], a, b1);
    }
  }
  if (k % 2) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(y0 + full * kPanel);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(y1 + full * kPanel);
    for (int i = 0; i < RB; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(x[i * xr + full * xp]));
      acc0[i] = _mm512_dpbf16_ps(acc0[i], a, b0);
      acc1[i] = _mm512_dpbf16_ps(acc1[i], a, b1);
    }
  }
  const __mmask16 m0 = static_cast<__mmask16>(width >= 16 ? 0xFFFF : (1u << width) - 1);
  const __mmask16 m1 = static_cast<__mmask16>(width >= 32 ? 0xFFFF : width > 16 ? (1u << (width - 16)) - 1 : 0);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int i = 0; i < RB; ++i) {
    float* out = c + i * ldc;
    __m512 r0 = _mm512_mul_ps(va, acc0[i]), r1 = _mm512_mul_ps(va, acc1[i]);
    if (beta != 0.0f) {  // BLAS: beta = 0 never reads C
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, out), r0);
      r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, out + 16), r1);
    }
    _mm512_mask_storeu_ps(out, m0, r0);
    _mm512_mask_storeu_ps(out + 16, m1, r1);
  }
}

template <int RB = kRows>
ARL_FAST_BF16_TARGET void micro_tile_rows(int rows, const uint16_t* x, int64_t xr, int64_t xp, int64_t k,
                                          const uint32_t* y0, const uint32_t* y1, float* c, int64_t ldc,
                                          int64_t width, float alpha, float beta) {
  if constexpr (RB >= 1) {
    if (rows == RB) return micro_tile<RB>(x, xr, xp, k, y0, y1, c, ldc, width, alpha, beta);
    return micro_tile_rows<RB - 1>(rows, x, xr, xp, k, y0, y1, c, ldc, width, alpha, beta);
  }
}

// Per-thread packing buffers (each tile runs on one thread).
struct Buffers {
  std::vector<uint32_t> panels, pairs;
};

inline Buffers& buffers() {
  thread_local Buffers b;
  return b;
}

ARL_FAST_BF16_TARGET
void own_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a, int64_t lda,
              const uint16_t* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  const int64_t kp = (k + 1) / 2, panels = (m + kPanel - 1) / kPanel;
  Buffers& buf = buffers();
  // Y = op(A)^T: Y[j][s] = A(s, j) = a[j * lda + s] (op(A) = A), or A(j, s) = a[s * lda + j] (op(A) = A^T).
  buf.panels.resize(std::max<int64_t>(1, (panels + 1) * kp * kPanel));
  if (ta) {
    pack_panels(a, 1, lda, k, m, buf.panels.data());
  } else {
    pack_panels(a, lda, 1, k, m, buf.panels.data());
  }
  std::fill(buf.panels.begin() + panels * kp * kPanel, buf.panels.begin() + (panels + 1) * kp * kPanel, 0u);
  // X = op(B)^T: X[r][j] = B(j, r) = b[r * ldb + j] (op(B) = B: pairs adjacent, read in place), or
  // B(r, j) = b[j * ldb + r] (op(B) = B^T: pairs of rows packed).
  const uint16_t* x = b;
  int64_t xr = ldb, xp = 2;
  if (tb) {
    buf.pairs.resize(std::max<int64_t>(1, kp * n));
    pack_pairs_of_rows(b, ldb, k, n, buf.pairs.data());
    x = reinterpret_cast<const uint16_t*>(buf.pairs.data());
    xr = 2, xp = 2 * n;
  }
  for (int64_t q = 0; q < panels; q += 2) {
    const uint32_t* y0 = buf.panels.data() + q * kp * kPanel;
    const uint32_t* y1 = y0 + kp * kPanel;  // the zero panel past the last one when q + 1 == panels
    const int64_t width = std::min<int64_t>(2 * kPanel, m - q * kPanel);
    for (int64_t r = 0; r < n; r += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, n - r));
      micro_tile_rows(rows, x + r * xr, xr, xp, k, y0, y1, c + r * ldc + q * kPanel, ldc, width, alpha, beta);
    }
  }
}

#endif  // ARL_FAST_OWN_BF16_GEMM

// Column-major C = alpha op(A) op(B) + beta C with bf16 A, B and float32 C: the micro-kernel or MKL, per CPU.
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a, int64_t lda,
                 const uint16_t* b, int64_t ldb, float beta, float* c, int64_t ldc) {
#ifdef ARL_FAST_OWN_BF16_GEMM
  if (implementation() == "avx512_bf16") return own_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
  mkl_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Row-major torch semantics for the tests: alpha op(a) @ op(b) + beta c (op transposes where asked), through the
// micro-kernel ("avx512_bf16") or MKL ("mkl") whatever this CPU would choose.
at::Tensor gemm_op(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c, bool transpose_a, bool transpose_b,
                   double alpha, double beta, c10::string_view implementation) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && c.dim() == 2, "a, b and c must be matrices");
  TORCH_CHECK(a.scalar_type() == at::kBFloat16 && b.scalar_type() == at::kBFloat16 && c.scalar_type() == at::kFloat,
              "a and b must be bfloat16 and c float32");
  const at::Tensor ac = a.contiguous(), bc = b.contiguous();
  at::Tensor out = c.contiguous().clone();
  const int64_t M = transpose_a ? a.size(1) : a.size(0), K = transpose_a ? a.size(0) : a.size(1);
  const int64_t N = transpose_b ? b.size(0) : b.size(1);
  TORCH_CHECK((transpose_b ? b.size(1) : b.size(0)) == K && c.size(0) == M && c.size(1) == N, "shapes do not match");
  // Row-major R = op(a) op(b) is column-major R^T = op(b)^T op(a)^T, each matrix its own column-major transpose.
  const auto* pa = reinterpret_cast<const uint16_t*>(ac.data_ptr<at::BFloat16>());
  const auto* pb = reinterpret_cast<const uint16_t*>(bc.data_ptr<at::BFloat16>());
  const bool ta = transpose_b, tb = transpose_a;
  const int64_t lda = transpose_b ? K : N, ldb = transpose_a ? M : K;
  if (implementation == "mkl") {
    mkl_gemm(ta, tb, N, M, K, float(alpha), pb, lda, pa, ldb, float(beta), out.data_ptr<float>(), N);
  } else {
    TORCH_CHECK(implementation == "avx512_bf16", "implementation must be 'avx512_bf16' or 'mkl'");
    TORCH_CHECK(own_available(), "this CPU or build has no AVX512-BF16 micro-kernel");
#ifdef ARL_FAST_OWN_BF16_GEMM
    own_gemm(ta, tb, N, M, K, float(alpha), pb, lda, pa, ldb, float(beta), out.data_ptr<float>(), N);
#endif
  }
  return out;
}

std::string implementation_op() { return implementation(); }

}  // namespace bf16
}  // namespace arl_fast

TORCH_LIBRARY_FRAGMENT(arl_fast, m) {
  // The bf16 products' implementation on this CPU ("avx512_bf16" or "mkl"), and one product for the tests.
  m.def("cpp_bf16_gemm_implementation() -> str", &arl_fast::bf16::implementation_op);
  m.def("cpp_bf16_gemm(Tensor a, Tensor b, Tensor c, bool transpose_a, bool transpose_b, float alpha, float beta,"
        " str implementation) -> Tensor",
        &arl_fast::bf16::gemm_op);
}
