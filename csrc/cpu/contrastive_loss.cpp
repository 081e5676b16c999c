// Fused CPU kernel of TS2Vec's hierarchical contrastive loss: one or several levels straight from z1, z2.
//
// Each InfoNCE term scores the 2n rows of a group (two views of n items) against each other: the temporal term
// has groups = series and rows = pooled timestamps, the instance term groups = pooled timestamps and rows =
// series.  Rows are read in place from the (pooled) inputs through strides, so a term needs no copy.
//
// Forward: rows in blocks of `kBlock`; similarity tiles S_IJ = Z_I Z_J^T come from BLAS (sgemm/dgemm; bf16 x bf16
// -> fp32 products from bf16_gemm.cpp) into a per-thread scratch tile; an online log-sum-exp per row, the diagonal
// masked inside the tile, its maximum and log-sum kept apart; the positive logit is read from its tile.  S is
// symmetric, so a tile (I, J) with I != J serves the rows of I and, transposed, the rows of J: only half of S is
// ever multiplied.  The tiles run in round-robin rounds in which every block appears once, so no two tiles of a
// round touch the same rows: the rows' statistics and gradients are updated without locks, in an order fixed by
// the schedule (bit-identical results whatever the number of threads).  Groups of at most `kBlock` rows are packed
// and done whole.
//
// Backward: recompute each tile, A = softmax_I(S_IJ) + softmax_J(S_JI)^T - 2 [positives] from the saved row
// statistics (entries below the normal range flushed to zero: BLAS runs many times slower on denormals),
// dZ_I += w A Z_J and dZ_J += w A^T Z_I.  Levels are pooled on the fly, each from the level below (pairs), and
// the gradients flow back down the same chain, coarsest level first, each pair's gradient to its first maximum
// as max_pool1d routes it: every level reads only the level below, never all of z again.
//
// Memory beyond inputs and gradients: the pooled levels (at most B T C values per view, backward only) and two
// levels' gradients, two statistics per row, and one tile per thread.

// at::vec's kernels follow the CPU_CAPABILITY macros: set by setup.py per variant, from the compiler's target in a
// -march build.
#ifndef CPU_CAPABILITY
#if defined(__AVX512F__)
#define CPU_CAPABILITY_AVX512
#elif defined(__AVX2__)
#define CPU_CAPABILITY_AVX2
#endif
#endif

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

extern "C" {
// Fortran BLAS as torch's own BLAS exports it (MKL on x86 builds).
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
}

namespace arl_fast {
namespace {

constexpr int64_t kBlock = 256;  // rows per tile

// Column-major C = alpha * op(A) op(B) + beta * C, as BLAS defines it.
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const char cta = ta ? 'T' : 'N', ctb = tb ? 'T' : 'N';
  const int im = m, in = n, ik = k, ilda = lda, ildb = ldb, ildc = ldc;
  sgemm_(&cta, &ctb, &im, &in, &ik, &alpha, a, &ilda, b, &ildb, &beta, c, &ildc);
}

inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                 const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  const char cta = ta ? 'T' : 'N', ctb = tb ? 'T' : 'N';
  const int im = m, in = n, ik = k, ilda = lda, ildb = ldb, ildc = ldc;
  dgemm_(&cta, &ctb, &im, &in, &ik, &alpha, a, &ilda, b, &ildb, &beta, c, &ildc);
}

inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const at::BFloat16* a,
                 int64_t lda, const at::BFloat16* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  bf16::gemm(ta, tb, m, n, k, alpha, reinterpret_cast<const uint16_t*>(a), lda, reinterpret_cast<const uint16_t*>(b),
             ldb, beta, c, ldc);
}

template <typename acc_t>
using Vec = at::vec::Vectorized<acc_t>;

// exp of a vector: at::vec's polynomial for float, lane by lane for double (the exact path).
inline Vec<float> vexp(const Vec<float>& x) { return x.exp_u20(); }
inline Vec<double> vexp(const Vec<double>& x) { return x.map(std::exp); }

template <typename acc_t>
inline acc_t max_of(const acc_t* x, int64_t len) {
  return at::vec::reduce_all<acc_t>([](Vec<acc_t>& a, Vec<acc_t>& b) { return at::vec::maximum(a, b); }, x, len);
}

// sum_j exp(x_j - shift), in one pass.
template <typename acc_t>
inline acc_t sum_exp(const acc_t* x, int64_t len, acc_t shift) {
  using V = Vec<acc_t>;
  const V s(shift);
  V total(0);
  int64_t j = 0;
  for (; j + V::size() <= len; j += V::size()) total = total + vexp(V::loadu(x + j) - s);
  acc_t sum = at::vec::vec_reduce_all<acc_t>([](V& a, V& b) { return a + b; }, total);
  for (; j < len; ++j) sum += std::exp(x[j] - shift);
  return sum;
}

// Values below the normal range are < 1e-38 of the row's mass: zero them so that BLAS never sees a denormal.
template <typename acc_t>
inline acc_t flush(acc_t x) {
  return x < std::numeric_limits<acc_t>::min() ? acc_t(0) : x;
}

template <typename acc_t>
inline Vec<acc_t> flush(const Vec<acc_t>& x) {
  return Vec<acc_t>::blendv(Vec<acc_t>(0), x, x >= Vec<acc_t>(std::numeric_limits<acc_t>::min()));
}

// One InfoNCE term of one level: G groups of 2n rows of length C, read through strides.
template <typename scalar_t, typename acc_t>
struct Term {
  const scalar_t* view1;  // row r < n of group g at view1 + g * group_stride + r * row_stride
  const scalar_t* view2;  // row r >= n at view2 + g * group_stride + (r - n) * row_stride
  int64_t n, groups, C, row_stride, group_stride;
  acc_t* grad1 = nullptr;  // gradients, same layout as the views (backward only)
  acc_t* grad2 = nullptr;

  const scalar_t* row(int64_t g, int64_t r) const {
    return r < n ? view1 + g * group_stride + r * row_stride : view2 + g * group_stride + (r - n) * row_stride;
  }
  acc_t* grad_row(int64_t g, int64_t r) const {
    return r < n ? grad1 + g * group_stride + r * row_stride : grad2 + g * group_stride + (r - n) * row_stride;
  }
  // Blocks never straddle the two views, so each is one strided matrix: block q covers rows [start, start + len).
  int64_t blocks_per_view() const { return (n + kBlock - 1) / kBlock; }
  int64_t block_start(int64_t q) const {
    const int64_t per_view = blocks_per_view();
    return (q / per_view) * n + (q % per_view) * kBlock;
  }
  int64_t block_len(int64_t q) const {
    const int64_t offset = (q % blocks_per_view()) * kBlock;
    return std::min(kBlock, n - offset);
  }
  bool packed() const { return 2 * n <= kBlock; }  // small groups are packed and done as one tile
};

// Round-robin schedule (the circle method) of the tiles (I, J), I <= J, of an even number `nb` of blocks: nb - 1
// rounds pair every block with every other one once, each block in exactly one tile per round, and a last round
// holds the diagonal tiles.  Tiles of one round never share rows, so they can run in parallel.
std::vector<std::vector<std::pair<int64_t, int64_t>>> tile_rounds(int64_t nb) {
  TORCH_INTERNAL_ASSERT(nb % 2 == 0, "blocks come in pairs, one per view");
  const int64_t last = nb - 1;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> rounds;
  for (int64_t r = 0; r < last; ++r) {
    std::vector<std::pair<int64_t, int64_t>> round{{r, last}};
    for (int64_t k = 1; k < nb / 2; ++k) {
      const int64_t a = (r + k) % last, b = (r - k + last) % last;
      round.emplace_back(std::min(a, b), std::max(a, b));
    }
    rounds.push_back(std::move(round));
  }
  std::vector<std::pair<int64_t, int64_t>> diagonal;
  for (int64_t q = 0; q < nb; ++q) diagonal.emplace_back(q, q);
  rounds.push_back(std::move(diagonal));
  return rounds;
}

// Per-thread scratch: a similarity tile, column statistics, a packed group and its gradient.
template <typename scalar_t, typename acc_t>
struct Scratch {
  std::vector<acc_t> tile, col_max, col_sum;
  std::vector<scalar_t> packed, tile_low;  // tile_low: the tile in the operand dtype (bf16 backward)
  std::vector<acc_t> packed_grad;
  explicit Scratch(int64_t C)
      : tile(kBlock * kBlock), col_max(kBlock), col_sum(kBlock), packed(kBlock * C), tile_low(kBlock * kBlock),
        packed_grad(kBlock * C) {}
};

template <typename scalar_t, typename acc_t>
std::vector<Scratch<scalar_t, acc_t>> make_scratch(int64_t C) {
  std::vector<Scratch<scalar_t, acc_t>> scratch;
  for (int t = 0; t < at::get_num_threads(); ++t) scratch.emplace_back(C);
  return scratch;
}

// Calls fn(group, I, J, scratch) for every tile (I, J), I <= J, of every group, each group's tiles in the order
// of the round-robin schedule.  With enough groups each thread owns whole groups (one parallel region); otherwise
// the rounds run one after the other, their tiles in parallel.  Either way no two concurrent tiles touch the same
// rows and every row sees its tiles in the same order: the results do not depend on the number of threads.
template <typename scalar_t, typename acc_t, typename Fn>
void for_each_tile(const Term<scalar_t, acc_t>& term, std::vector<Scratch<scalar_t, acc_t>>& scratch, const Fn& fn) {
  const auto rounds = tile_rounds(2 * term.blocks_per_view());
  if (term.groups >= 2 * at::get_num_threads()) {
    at::parallel_for(0, term.groups, 1, [&](int64_t begin, int64_t end) {
      auto& s = scratch[at::get_thread_num()];
      for (int64_t g = begin; g < end; ++g)
        for (const auto& round : rounds)
          for (const auto& [I, J] : round) fn(g, I, J, s);
    });
    return;
  }
  for (const auto& round : rounds) {
    const int64_t tiles = static_cast<int64_t>(round.size());
    at::parallel_for(0, term.groups * tiles, 1, [&](int64_t begin, int64_t end) {
      auto& s = scratch[at::get_thread_num()];
      for (int64_t item = begin; item < end; ++item) {
        const auto& [I, J] = round[item % tiles];
        fn(item / tiles, I, J, s);
      }
    });
  }
}

// S (rows_i x rows_j, leading dimension kBlock, row-major) = Z_I Z_J^T.  A tile of a block with itself is made
// exactly symmetric (its lower triangle copied from the upper): BLAS kernels need not round S_ij and S_ji alike
// (MKL's AMD kernels do not), and a row's statistics, its positive and the column softmax of the backward must all
// see the same rounded logit, or a saturated row's loss and gradient inherit an ulp of logits in the thousands.
template <typename scalar_t, typename acc_t>
void similarity(const scalar_t* zi, int64_t rows_i, int64_t ld_i, const scalar_t* zj, int64_t rows_j, int64_t ld_j,
                int64_t C, acc_t* S) {
  gemm(true, false, rows_j, rows_i, C, acc_t(1), zj, ld_j, zi, ld_i, acc_t(0), S, kBlock);
  if (zi == zj) {
    for (int64_t i = 1; i < rows_i; ++i)
      for (int64_t j = 0; j < i; ++j) S[i * kBlock + j] = S[j * kBlock + i];
  }
}

// Merge a partial (max, sum of exp(x - max)) into a row's running statistics.
template <typename acc_t>
inline void merge(acc_t& run_max, acc_t& run_sum, acc_t part_max, acc_t part_sum) {
  if (part_max == -std::numeric_limits<acc_t>::infinity()) return;
  if (part_max > run_max) {
    run_sum = run_sum * std::exp(run_max - part_max) + part_sum;
    run_max = part_max;
  } else {
    run_sum += part_sum * std::exp(part_max - run_max);
  }
}

// Row statistics of rows_i rows of S (length rows_j each) merged into (row_max, row_sum).
template <typename acc_t>
void row_statistics(const acc_t* S, int64_t rows_i, int64_t rows_j, acc_t* row_max, acc_t* row_sum) {
  for (int64_t i = 0; i < rows_i; ++i) {
    const acc_t* s = S + i * kBlock;
    const acc_t m = max_of(s, rows_j);
    if (m == -std::numeric_limits<acc_t>::infinity()) continue;
    merge(row_max[i], row_sum[i], m, sum_exp(s, rows_j, m));
  }
}

// Column statistics of S merged into (run_max, run_sum): the rows of J seen through S_JI = S_IJ^T.
template <typename scalar_t, typename acc_t>
void column_statistics(const acc_t* S, int64_t rows_i, int64_t rows_j, acc_t* run_max, acc_t* run_sum,
                       Scratch<scalar_t, acc_t>& scratch) {
  using V = Vec<acc_t>;
  acc_t* cmax = scratch.col_max.data();
  acc_t* csum = scratch.col_sum.data();
  std::copy_n(S, rows_j, cmax);
  for (int64_t i = 1; i < rows_i; ++i) {
    at::vec::map2<acc_t>([](V a, V b) { return at::vec::maximum(a, b); }, cmax, cmax, S + i * kBlock, rows_j);
  }
  std::fill(csum, csum + rows_j, acc_t(0));
  for (int64_t i = 0; i < rows_i; ++i) {
    const acc_t* s = S + i * kBlock;
    int64_t j = 0;
    for (; j + V::size() <= rows_j; j += V::size()) {
      (V::loadu(csum + j) + vexp(V::loadu(s + j) - V::loadu(cmax + j))).store(csum + j);
    }
    for (; j < rows_j; ++j) csum[j] += std::exp(s[j] - cmax[j]);
  }
  for (int64_t j = 0; j < rows_j; ++j) merge(run_max[j], run_sum[j], cmax[j], csum[j]);
}

template <typename acc_t>
inline void mask_diagonal(acc_t* S, int64_t rows) {
  for (int64_t i = 0; i < rows; ++i) S[i * kBlock + i] = -std::numeric_limits<acc_t>::infinity();
}

// The group's 2n rows, copied one after the other (rows of length C).
template <typename scalar_t, typename acc_t>
void pack_group(const Term<scalar_t, acc_t>& term, int64_t g, scalar_t* packed) {
  for (int64_t r = 0; r < 2 * term.n; ++r) std::copy_n(term.row(g, r), term.C, packed + r * term.C);
}

// Calls fn(group, scratch) for every group of a packed term (2n <= kBlock), in parallel over groups, with the
// group's rows copied to scratch.packed and its whole similarity matrix in scratch.tile.
template <typename scalar_t, typename acc_t, typename Fn>
void for_each_packed_group(const Term<scalar_t, acc_t>& term, std::vector<Scratch<scalar_t, acc_t>>& scratch,
                           const Fn& fn) {
  const int64_t rows = 2 * term.n, C = term.C;
  at::parallel_for(0, term.groups, 1, [&](int64_t begin, int64_t end) {
    auto& s = scratch[at::get_thread_num()];
    for (int64_t g = begin; g < end; ++g) {
      pack_group(term, g, s.packed.data());
      similarity(s.packed.data(), rows, C, s.packed.data(), rows, C, C, s.tile.data());
      fn(g, s);
    }
  });
}

// Per-row softmax statistics of a term, G x 2n each: the row maximum m and log l, l = sum_j exp(s_j - m), kept
// apart.  Rounded into one float m + log l, the log-sum-exp of logits in the thousands would carry an ulp of ~1e-4
// into every row loss and every probability, far more than a saturated row's loss or gradient.
template <typename acc_t>
struct RowStats {
  acc_t* max;
  acc_t* logsum;
};

// Writes the term's row statistics and returns the sum over its rows of the row losses, in a fixed order.  A row's
// loss is lse(s~) - s_pos with lse(s~) = m + log l from the tiles' rounded logits s~; its error against the exact
// loss is sum_j p_j e_j - e'_pos, e the tiles' rounding, e'_pos that of the positive used.  Taking the positive
// from its tile (e' = e_pos) cancels the row's dominant error where p_pos -> 1 (a saturated row's loss is then
// log l, as in the reference), an exact positive (e' = 0) where p_pos -> 0: the loss uses
// s~_pos - (1 - p_pos) (s~_pos - s_pos), which leaves sum_{j != pos} p_j e_j, the negatives' share only.
template <typename scalar_t, typename acc_t>
double forward_term(const Term<scalar_t, acc_t>& term, RowStats<acc_t> stats,
                    std::vector<Scratch<scalar_t, acc_t>>& scratch) {
  const int64_t n = term.n, rows = 2 * n, C = term.C;
  std::vector<acc_t> run_max(term.groups * rows, -std::numeric_limits<acc_t>::infinity());
  std::vector<acc_t> run_sum(term.groups * rows, acc_t(0));
  std::vector<acc_t> positive(term.groups * n);  // s(r, r + n), shared by rows r and r + n
  if (term.packed()) {
    for_each_packed_group(term, scratch, [&](int64_t g, Scratch<scalar_t, acc_t>& s) {
      for (int64_t r = 0; r < n; ++r) positive[g * n + r] = s.tile[r * kBlock + r + n];
      mask_diagonal(s.tile.data(), rows);
      row_statistics(s.tile.data(), rows, rows, &run_max[g * rows], &run_sum[g * rows]);
    });
  } else {
    const int64_t per_view = term.blocks_per_view();
    for_each_tile(term, scratch, [&](int64_t g, int64_t I, int64_t J, Scratch<scalar_t, acc_t>& s) {
      const int64_t i0 = term.block_start(I), ni = term.block_len(I);
      const int64_t j0 = term.block_start(J), nj = term.block_len(J);
      similarity(term.row(g, i0), ni, term.row_stride, term.row(g, j0), nj, term.row_stride, C, s.tile.data());
      if (J == I + per_view) {  // the positives' tile: row i of block I pairs with row i of block J
        for (int64_t i = 0; i < ni; ++i) positive[g * n + i0 + i] = s.tile[i * kBlock + i];
      }
      if (I == J) mask_diagonal(s.tile.data(), ni);
      row_statistics(s.tile.data(), ni, nj, &run_max[g * rows + i0], &run_sum[g * rows + i0]);
      if (I != J) column_statistics(s.tile.data(), ni, nj, &run_max[g * rows + j0], &run_sum[g * rows + j0], s);
    });
  }
  std::vector<double> per_group(term.groups);
  at::parallel_for(0, term.groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      double sum = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t k = g * rows + r;
        stats.max[k] = run_max[k];
        stats.logsum[k] = std::log(run_sum[k]);
      }
      for (int64_t r = 0; r < n; ++r) {
        const scalar_t* a = term.row(g, r);
        const scalar_t* b = term.row(g, r + n);
        double exact = 0;
        for (int64_t c = 0; c < C; ++c) exact += static_cast<double>(a[c]) * static_cast<double>(b[c]);
        const double rounded = positive[g * n + r];
        for (const int64_t k : {g * rows + r, g * rows + r + n}) {
          const double shifted = (rounded - double(run_max[k])) - double(stats.logsum[k]);  // log p_pos
          sum += -shifted - std::expm1(shifted) * (rounded - exact);  // -log p_pos + (p_pos - 1) e_pos
        }
      }
      per_group[g] = sum;
    }
  });
  double total = 0;
  for (double v : per_group) total += v;
  return total;
}

// |x| below the normal range flushed to zero (entries that may be negative).
template <typename acc_t>
inline acc_t flush_magnitude(acc_t x) {
  return std::abs(x) < std::numeric_limits<acc_t>::min() ? acc_t(0) : x;
}

// A = softmax_I(S) + softmax_J(S^T)^T - 2 [positive pairs] in place, flushed: p_ij = exp((S_ij - m_i) - log l_i).
// The -2 is the positives' gradient (-2 z_pos for every row), folded into the one entry per row where it cancels:
// there A = expm1(..._i) + expm1(..._j), exact where a saturated row's p_pos is within an ulp of 1, whereas
// A Z - 2 z_pos would leave a rounding error of the size of z in a gradient that is nearly zero.
// positive_col(i) is the column of row i's positive in this tile, or -1.
template <typename acc_t, typename PositiveCol>
void probabilities(acc_t* S, int64_t rows_i, int64_t rows_j, RowStats<const acc_t> stats_i,
                   RowStats<const acc_t> stats_j, bool diagonal, const PositiveCol& positive_col) {
  using V = Vec<acc_t>;
  for (int64_t i = 0; i < rows_i; ++i) {
    acc_t* s = S + i * kBlock;
    const int64_t jp = positive_col(i);
    const acc_t x_pos = jp >= 0 ? s[jp] : acc_t(0);
    const V max_i(stats_i.max[i]), logsum_i(stats_i.logsum[i]);
    int64_t j = 0;
    for (; j + V::size() <= rows_j; j += V::size()) {
      const V x = V::loadu(s + j);
      const V p_i = vexp((x - max_i) - logsum_i);
      const V p_j = vexp((x - V::loadu(stats_j.max + j)) - V::loadu(stats_j.logsum + j));
      flush(p_i + p_j).store(s + j);
    }
    for (; j < rows_j; ++j) {
      s[j] = flush(std::exp((s[j] - stats_i.max[i]) - stats_i.logsum[i]) +
                   std::exp((s[j] - stats_j.max[j]) - stats_j.logsum[j]));
    }
    if (diagonal) s[i] = 0;
    if (jp >= 0) {
      s[jp] = flush_magnitude(std::expm1((x_pos - stats_i.max[i]) - stats_i.logsum[i]) +
                              std::expm1((x_pos - stats_j.max[jp]) - stats_j.logsum[jp]));
    }
  }
}

// The tile's probabilities as BLAS operands: the tile itself, or a bf16 copy for the bf16 gemm.
template <typename scalar_t, typename acc_t>
const scalar_t* operand(const acc_t* A, int64_t rows_i, int64_t rows_j, Scratch<scalar_t, acc_t>& s) {
  if constexpr (std::is_same<scalar_t, acc_t>::value) {
    return A;
  } else {
    for (int64_t i = 0; i < rows_i; ++i) at::vec::convert(A + i * kBlock, s.tile_low.data() + i * kBlock, rows_j);
    return s.tile_low.data();
  }
}

// grad += w * d(sum of row losses)/dz for every row of the term.
template <typename scalar_t, typename acc_t>
void backward_term(const Term<scalar_t, acc_t>& term, RowStats<const acc_t> stats, acc_t w,
                   std::vector<Scratch<scalar_t, acc_t>>& scratch) {
  const int64_t n = term.n, rows = 2 * n, C = term.C;
  const auto stats_at = [&](int64_t k) { return RowStats<const acc_t>{stats.max + k, stats.logsum + k}; };
  if (term.packed()) {
    const auto partner = [n](int64_t r) { return r < n ? r + n : r - n; };
    for_each_packed_group(term, scratch, [&](int64_t g, Scratch<scalar_t, acc_t>& s) {
      probabilities(s.tile.data(), rows, rows, stats_at(g * rows), stats_at(g * rows), true, partner);
      const scalar_t* A = operand(s.tile.data(), rows, rows, s);
      // dZ^T (C x rows) = Z^T A^T: column-major views of the row-major Z and A.
      gemm(false, false, C, rows, rows, w, s.packed.data(), C, A, kBlock, acc_t(0), s.packed_grad.data(), C);
      for (int64_t r = 0; r < rows; ++r) {
        acc_t* out = term.grad_row(g, r);
        const acc_t* d = s.packed_grad.data() + r * C;
        for (int64_t c = 0; c < C; ++c) out[c] += d[c];
      }
    });
    return;
  }
  const int64_t per_view = term.blocks_per_view();
  for_each_tile(term, scratch, [&](int64_t g, int64_t I, int64_t J, Scratch<scalar_t, acc_t>& s) {
    const int64_t i0 = term.block_start(I), ni = term.block_len(I);
    const int64_t j0 = term.block_start(J), nj = term.block_len(J);
    const scalar_t* zi = term.row(g, i0);
    const scalar_t* zj = term.row(g, j0);
    const int64_t ld = term.row_stride;
    const bool positives = J == I + per_view;  // row i of block I pairs with row i of block J
    similarity(zi, ni, ld, zj, nj, ld, C, s.tile.data());
    probabilities(s.tile.data(), ni, nj, stats_at(g * rows + i0), stats_at(g * rows + j0), I == J,
                  [positives](int64_t i) { return positives ? i : int64_t(-1); });
    const scalar_t* A = operand(s.tile.data(), ni, nj, s);
    // dZ_I^T += w Z_J^T A^T  and  dZ_J^T += w Z_I^T A (column-major views of row-major blocks).
    gemm(false, false, C, ni, nj, w, zj, ld, A, kBlock, acc_t(1), term.grad_row(g, i0), ld);
    if (I != J) gemm(false, true, C, nj, ni, w, zi, ld, A, kBlock, acc_t(1), term.grad_row(g, j0), ld);
  });
}

// Items per parallel chunk for loops that touch `per_item` values each: small levels run on one thread instead
// of paying for a parallel region.
inline int64_t grain(int64_t per_item) {
  return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, per_item));
}

// out (B, T >> level, C) = max of z over windows of 2**level along time (floor, as max_pool1d).
template <typename scalar_t>
void pool(const scalar_t* z, int64_t B, int64_t T, int64_t C, int64_t level, scalar_t* out) {
  const int64_t window = int64_t(1) << level, Tl = T >> level;
  at::parallel_for(0, B * Tl, grain(window * C), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / Tl, t = item % Tl;
      const scalar_t* src = z + (b * T + t * window) * C;
      scalar_t* dst = out + item * C;
      std::copy_n(src, C, dst);
      for (int64_t w = 1; w < window; ++w)
        for (int64_t c = 0; c < C; ++c) dst[c] = src[w * C + c] > dst[c] ? src[w * C + c] : dst[c];
    }
  });
}

// dz[b, t*, c] += grad[b, t, c], t* the first maximum of z[b, window t, c] (max_pool1d's choice), found as the
// first row of the window equal to the pooled value.  With level 1 this is one step down the pooling chain:
// the first maximum of a window of 2**level is the first maximum of the half whose maximum came first.
template <typename scalar_t, typename acc_t>
void unpool_add(const scalar_t* z, const scalar_t* pooled, const acc_t* grad, int64_t B, int64_t T, int64_t C,
                int64_t level, acc_t* dz) {
  const int64_t window = int64_t(1) << level, Tl = T >> level;
  at::parallel_for(0, B * Tl, grain(window * C), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t first = (item / Tl) * T + (item % Tl) * window;
      const scalar_t* p = pooled + item * C;
      const acc_t* g = grad + item * C;
      int64_t c = 0;
      if constexpr (std::is_same<scalar_t, acc_t>::value) {
        using V = Vec<acc_t>;
        for (; c + V::size() <= C; c += V::size()) {
          const V pv = V::loadu(p + c), gv = V::loadu(g + c);
          V taken(0);  // all-ones bits in the lanes whose maximum is already found
          for (int64_t w = 0; w < window; ++w) {
            const V hit = V::blendv(V::loadu(z + (first + w) * C + c) == pv, V(0), taken);
            acc_t* out = dz + (first + w) * C + c;
            (V::loadu(out) + (gv & hit)).store(out);
            taken = taken | hit;
          }
        }
      }
      for (; c < C; ++c) {
        int64_t w = 0;
        while (w + 1 < window && z[(first + w) * C + c] != p[c]) ++w;
        dz[(first + w) * C + c] += g[c];
      }
    }
  });
}

// The inputs of one level, (B, T_l, C) per view: z itself at level 0, else pooled.
struct Pooled {
  at::Tensor view1, view2;
};

// Level `level` pooled from z (window 2**level), or from the level below it (pairs): walking up the levels one at
// a time, each pooling pass reads the level below, not z, so all levels together read about 2 B T C values.
template <typename scalar_t>
Pooled pool_level(const at::Tensor& z1, const at::Tensor& z2, const Pooled* below, int64_t level) {
  if (level == 0) return {z1, z2};
  const at::Tensor& src1 = below ? below->view1 : z1;
  const at::Tensor& src2 = below ? below->view2 : z2;
  const int64_t B = src1.size(0), T = src1.size(1), C = src1.size(2), window_level = below ? 1 : level;
  const auto shape = {B, T >> window_level, C};
  Pooled out{at::empty(shape, src1.options()), at::empty(shape, src1.options())};
  pool(src1.data_ptr<scalar_t>(), B, T, C, window_level, out.view1.data_ptr<scalar_t>());
  pool(src2.data_ptr<scalar_t>(), B, T, C, window_level, out.view2.data_ptr<scalar_t>());
  return out;
}

template <typename scalar_t, typename acc_t>
Term<scalar_t, acc_t> temporal_term(const scalar_t* p1, const scalar_t* p2, int64_t B, int64_t Tl, int64_t C) {
  return {p1, p2, Tl, B, C, C, Tl * C};
}

template <typename scalar_t, typename acc_t>
Term<scalar_t, acc_t> instance_term(const scalar_t* p1, const scalar_t* p2, int64_t B, int64_t Tl, int64_t C) {
  return {p1, p2, B, Tl, C, Tl * C, C};
}

// Rows of the levels [first_level, level): 2 B T_l temporal and 2 B T_l instance rows each.
int64_t rows_before(int64_t B, int64_t T, int64_t first_level, int64_t level) {
  int64_t rows = 0;
  for (int64_t l = first_level; l < level; ++l) rows += 4 * B * (T >> l);
  return rows;
}

// Size of the flat row-statistics tensor: a maximum and a log-sum per row.
int64_t stats_size(int64_t B, int64_t T, int64_t first_level, int64_t num_levels) {
  return 2 * rows_before(B, T, first_level, first_level + num_levels);
}

// Where a term's statistics live in the flat tensor: per level, the maxima of the temporal rows (B x 2 T_l) and of
// the instance rows (T_l x 2B), then their log-sums in the same order.
template <typename acc_t>
RowStats<acc_t> term_stats(acc_t* flat, int64_t B, int64_t T, int64_t first_level, int64_t level, bool instance) {
  const int64_t Tl = T >> level;
  acc_t* max = flat + 2 * rows_before(B, T, first_level, level) + (instance ? 2 * B * Tl : 0);
  return {max, max + 4 * B * Tl};
}

struct LevelPlan {
  bool instance, temporal;
  double instance_weight, temporal_weight;  // coefficients of each term's mean in the level's loss
};

LevelPlan plan(int64_t B, int64_t Tl, int64_t level, double alpha, int64_t temporal_unit) {
  LevelPlan p;
  p.instance = alpha != 0 && B > 1;
  p.temporal = alpha != 1 && level >= temporal_unit && Tl > 1;
  p.instance_weight = alpha / double(Tl * 2 * B);
  p.temporal_weight = (1 - alpha) / double(B * 2 * Tl);
  return p;
}

void check_inputs(const at::Tensor& z1, const at::Tensor& z2, int64_t first_level, int64_t num_levels) {
  TORCH_CHECK(z1.dim() == 3 && z1.sizes() == z2.sizes(), "z1 and z2 must be (B, T, C) tensors of the same shape");
  TORCH_CHECK(z1.scalar_type() == z2.scalar_type(), "z1 and z2 must have the same dtype");
  TORCH_CHECK(z1.device().is_cpu() && z2.device().is_cpu(), "the cpp kernels take CPU tensors");
  TORCH_CHECK(z1.is_contiguous() && z2.is_contiguous(), "z1 and z2 must be contiguous");
  const auto dtype = z1.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16,
              "the cpp kernels take float32, float64 or bfloat16, got ", dtype);
  TORCH_CHECK(z1.numel() > 0, "z1 and z2 must be non-empty");
  const int64_t T = z1.size(1);
  TORCH_CHECK(first_level >= 0 && num_levels >= 1 && (T >> (first_level + num_levels - 1)) >= 1,
              "levels [", first_level, ", ", first_level + num_levels, ") do not exist for length ", T);
  TORCH_CHECK(std::max(z1.size(0), T) * 2 * z1.size(2) < std::numeric_limits<int>::max(),
              "inputs too large for 32-bit BLAS indices");
}

at::ScalarType acc_dtype(at::ScalarType dtype) { return dtype == at::kDouble ? at::kDouble : at::kFloat; }

template <typename scalar_t, typename acc_t>
std::tuple<at::Tensor, at::Tensor> forward_impl(const at::Tensor& z1, const at::Tensor& z2, int64_t first_level,
                                                int64_t num_levels, double alpha, int64_t temporal_unit) {
  const int64_t B = z1.size(0), T = z1.size(1), C = z1.size(2);
  auto acc_options = z1.options().dtype(acc_dtype(z1.scalar_type()));
  at::Tensor losses = at::zeros({num_levels}, acc_options);
  at::Tensor stats = at::zeros({stats_size(B, T, first_level, num_levels)}, acc_options);
  auto scratch = make_scratch<scalar_t, acc_t>(C);
  Pooled pooled;
  for (int64_t level = first_level; level < first_level + num_levels; ++level) {
    const int64_t Tl = T >> level;
    const LevelPlan p = plan(B, Tl, level, alpha, temporal_unit);
    pooled = pool_level<scalar_t>(z1, z2, level == first_level ? nullptr : &pooled, level);
    const scalar_t* v1 = pooled.view1.data_ptr<scalar_t>();
    const scalar_t* v2 = pooled.view2.data_ptr<scalar_t>();
    acc_t* flat = stats.data_ptr<acc_t>();
    double loss = 0;
    if (p.temporal) {
      auto term = temporal_term<scalar_t, acc_t>(v1, v2, B, Tl, C);
      loss += p.temporal_weight * forward_term(term, term_stats(flat, B, T, first_level, level, false), scratch);
    }
    if (p.instance) {
      auto term = instance_term<scalar_t, acc_t>(v1, v2, B, Tl, C);
      loss += p.instance_weight * forward_term(term, term_stats(flat, B, T, first_level, level, true), scratch);
    }
    losses.data_ptr<acc_t>()[level - first_level] = static_cast<acc_t>(loss);
  }
  return {losses, stats};
}

// Adds the level's terms' gradients (w = upstream gradient x term weight) to d1, d2, of the level's shape.
template <typename scalar_t, typename acc_t>
void backward_level(const Pooled& pooled, const at::Tensor& d1, const at::Tensor& d2, const acc_t* flat, double g,
                    int64_t B, int64_t T, int64_t C, int64_t first_level, int64_t level, const LevelPlan& p,
                    std::vector<Scratch<scalar_t, acc_t>>& scratch) {
  const int64_t Tl = T >> level;
  const scalar_t* v1 = pooled.view1.data_ptr<scalar_t>();
  const scalar_t* v2 = pooled.view2.data_ptr<scalar_t>();
  const auto add_term = [&](Term<scalar_t, acc_t> term, bool instance, double weight) {
    term.grad1 = d1.data_ptr<acc_t>();
    term.grad2 = d2.data_ptr<acc_t>();
    backward_term(term, term_stats(flat, B, T, first_level, level, instance), static_cast<acc_t>(g * weight),
                  scratch);
  };
  if (p.temporal) add_term(temporal_term<scalar_t, acc_t>(v1, v2, B, Tl, C), false, p.temporal_weight);
  if (p.instance) add_term(instance_term<scalar_t, acc_t>(v1, v2, B, Tl, C), true, p.instance_weight);
}

// The levels' inputs are pooled up the chain once, then their gradients flow down it: from the coarsest level to
// the first, a level's gradient is its own terms' plus the level above's routed one pair step down, so every step
// reads one level, never the whole of z again.
template <typename scalar_t, typename acc_t>
std::tuple<at::Tensor, at::Tensor> backward_impl(const at::Tensor& grad_losses, const at::Tensor& z1,
                                                 const at::Tensor& z2, const at::Tensor& stats, int64_t first_level,
                                                 int64_t num_levels, double alpha, int64_t temporal_unit) {
  const int64_t B = z1.size(0), T = z1.size(1), C = z1.size(2);
  auto acc_options = z1.options().dtype(acc_dtype(z1.scalar_type()));
  at::Tensor grad = grad_losses.to(acc_dtype(z1.scalar_type())).contiguous();
  const acc_t* flat = stats.data_ptr<acc_t>();
  auto scratch = make_scratch<scalar_t, acc_t>(C);
  std::vector<Pooled> pooled;  // pooled[k]: the inputs of level first_level + k
  for (int64_t k = 0; k < num_levels; ++k)
    pooled.push_back(pool_level<scalar_t>(z1, z2, k == 0 ? nullptr : &pooled[k - 1], first_level + k));
  at::Tensor d1, d2;  // gradient of the level above the current one, undefined while it is zero
  for (int64_t k = num_levels - 1; k >= 0; --k) {
    const int64_t level = first_level + k, Tl = T >> level;
    const LevelPlan p = plan(B, Tl, level, alpha, temporal_unit);
    const double g = static_cast<double>(grad.data_ptr<acc_t>()[k]);
    const bool own = g != 0 && (p.instance || p.temporal);
    if (!own && !d1.defined()) continue;
    at::Tensor below1 = at::zeros({B, Tl, C}, acc_options), below2 = at::zeros({B, Tl, C}, acc_options);
    // The level's own terms first, then the level above's gradient one pair step down: each added once to the
    // other, not tile by tile onto a larger sum (which would round every tile's share at that sum's magnitude).
    if (own) backward_level(pooled[k], below1, below2, flat, g, B, T, C, first_level, level, p, scratch);
    if (d1.defined()) {
      const Pooled& here = pooled[k];
      const Pooled& above = pooled[k + 1];
      unpool_add(here.view1.data_ptr<scalar_t>(), above.view1.data_ptr<scalar_t>(), d1.data_ptr<acc_t>(), B, Tl, C,
                 1, below1.data_ptr<acc_t>());
      unpool_add(here.view2.data_ptr<scalar_t>(), above.view2.data_ptr<scalar_t>(), d2.data_ptr<acc_t>(), B, Tl, C,
                 1, below2.data_ptr<acc_t>());
    }
    d1 = below1;
    d2 = below2;
    if (k + 1 < num_levels) pooled[k + 1] = Pooled{};  // no longer needed
  }
  if (!d1.defined()) {
    d1 = at::zeros({B, T >> first_level, C}, acc_options);
    d2 = at::zeros({B, T >> first_level, C}, acc_options);
  }
  if (first_level > 0) {  // the first level's gradient, from its window of z to z
    at::Tensor dz1 = at::zeros({B, T, C}, acc_options), dz2 = at::zeros({B, T, C}, acc_options);
    unpool_add(z1.data_ptr<scalar_t>(), pooled[0].view1.data_ptr<scalar_t>(), d1.data_ptr<acc_t>(), B, T, C,
               first_level, dz1.data_ptr<acc_t>());
    unpool_add(z2.data_ptr<scalar_t>(), pooled[0].view2.data_ptr<scalar_t>(), d2.data_ptr<acc_t>(), B, T, C,
               first_level, dz2.data_ptr<acc_t>());
    d1 = dz1;
    d2 = dz2;
  }
  return {d1.to(z1.scalar_type()), d2.to(z2.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor> level_losses_cpu(const at::Tensor& z1, const at::Tensor& z2, int64_t first_level,
                                                    int64_t num_levels, double alpha, int64_t temporal_unit) {
  check_inputs(z1, z2, first_level, num_levels);
  switch (z1.scalar_type()) {
    case at::kDouble:
      return forward_impl<double, double>(z1, z2, first_level, num_levels, alpha, temporal_unit);
    case at::kBFloat16:
      return forward_impl<at::BFloat16, float>(z1, z2, first_level, num_levels, alpha, temporal_unit);
    default:
      return forward_impl<float, float>(z1, z2, first_level, num_levels, alpha, temporal_unit);
  }
}

std::tuple<at::Tensor, at::Tensor> level_losses_backward_cpu(const at::Tensor& grad_losses, const at::Tensor& z1,
                                                             const at::Tensor& z2, const at::Tensor& stats,
                                                             int64_t first_level, int64_t num_levels, double alpha,
                                                             int64_t temporal_unit) {
  check_inputs(z1, z2, first_level, num_levels);
  const int64_t B = z1.size(0), T = z1.size(1);
  TORCH_CHECK(grad_losses.numel() == num_levels, "grad_losses must have one entry per level");
  TORCH_CHECK(stats.is_contiguous() && stats.scalar_type() == acc_dtype(z1.scalar_type()) &&
                  stats.numel() == stats_size(B, T, first_level, num_levels),
              "row_stats must be the row statistics the forward returned");
  switch (z1.scalar_type()) {
    case at::kDouble:
      return backward_impl<double, double>(grad_losses, z1, z2, stats, first_level, num_levels, alpha, temporal_unit);
    case at::kBFloat16:
      return backward_impl<at::BFloat16, float>(grad_losses, z1, z2, stats, first_level, num_levels, alpha,
                                                temporal_unit);
    default:
      return backward_impl<float, float>(grad_losses, z1, z2, stats, first_level, num_levels, alpha, temporal_unit);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(arl_fast, CPU, m) {
  m.impl("cpp_level_losses", &level_losses_cpu);
  m.impl("cpp_level_losses_backward", &level_losses_backward_cpu);
}

}  // namespace arl_fast
