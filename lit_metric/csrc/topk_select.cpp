// Streaming exact top-K selection for lit_metric's self-retrieval k-NN (see lit_metric/functional/_topk_ext.py).
//
// Every reference row r owns a candidate buffer of C >= K + 16 slots (a value and an int32 id each), a fill
// count and an admission threshold thr[r].  `feed` takes one block S = X[i0:i0+bi] @ X[j0:j0+bj]^T of a
// symmetric score matrix and appends every score strictly above the row's threshold to the buffers of rows
// i0.. (along S's rows) and, with `both`, of rows j0.. (along S's columns): each block is computed once for
// two row sets.  A full buffer is cut to its K best (linear-time selection) and its threshold rises to the
// K-th best value; rejecting a score costs a share of one SIMD comparison.  `finish` sorts the K best of
// every row to the front of its buffer.
//
// Exactness: a score is dropped only when it is <= its row's threshold at that time, and a threshold never
// exceeds the K-th best score kept at the end, so the kept K are the K best up to ties with the K-th value,
// which the caller resolves (it fetches one neighbour more than it returns and recomputes rows tied there).
// A row with fewer than K scores above its starting threshold is reported (fill -1) for the caller to redo.
#include <torch/extension.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

constexpr int64_t kLanes = 16;
// a buffer has at least K + kSlack slots, so that a cut always frees some
constexpr int64_t kSlack = 16;

struct Slot {
  float value;
  int32_t id;
};
static_assert(sizeof(Slot) == 8, "a slot is two 32-bit words (the Python side views them as (N, C, 2))");

// bit t set where x[t] > t_ (one threshold) ...
inline unsigned above_mask(const float* x, float t_) {
#if defined(__SSE2__)
  const __m128 tv = _mm_set1_ps(t_);
  return static_cast<unsigned>(_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(x), tv))) |
         static_cast<unsigned>(_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(x + 4), tv))) << 4 |
         static_cast<unsigned>(_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(x + 8), tv))) << 8 |
         static_cast<unsigned>(_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(x + 12), tv))) << 12;
#else
  unsigned m = 0;
  for (int64_t i = 0; i < kLanes; ++i) m |= static_cast<unsigned>(x[i] > t_) << i;
  return m;
#endif
}

// ... or x[t] > t_[t] (one threshold per lane)
inline unsigned above_mask(const float* x, const float* t_) {
#if defined(__SSE2__)
  return static_cast<unsigned>(_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(x), _mm_loadu_ps(t_)))) |
         static_cast<unsigned>(_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(x + 4), _mm_loadu_ps(t_ + 4)))) << 4 |
         static_cast<unsigned>(_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(x + 8), _mm_loadu_ps(t_ + 8)))) << 8 |
         static_cast<unsigned>(_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(x + 12), _mm_loadu_ps(t_ + 12)))) << 12;
#else
  unsigned m = 0;
  for (int64_t i = 0; i < kLanes; ++i) m |= static_cast<unsigned>(x[i] > t_[i]) << i;
  return m;
#endif
}

// best first; equal values by lower id (the caller re-sorts ties by its own rule anyway)
inline bool better(const Slot& a, const Slot& b) { return a.value > b.value || (a.value == b.value && a.id < b.id); }

struct Buffers {
  Slot* slots;    // (N, C)
  int32_t* fill;  // (N,)
  float* thr;     // (N,)
  int64_t cap;    // C
  int64_t k;      // K

  Slot* row(int64_t r) const { return slots + r * cap; }

  // keep the K best of row r's buffer; the threshold becomes the K-th best value
  __attribute__((noinline)) void cut(int64_t r) const {
    Slot* b = row(r);
    std::nth_element(b, b + (k - 1), b + fill[r], better);
    fill[r] = static_cast<int32_t>(k);
    thr[r] = std::max(thr[r], b[k - 1].value);
  }

  inline void push(int64_t r, float x, int64_t id) const {
    const int64_t f = fill[r];
    row(r)[f] = Slot{x, static_cast<int32_t>(id)};
    fill[r] = static_cast<int32_t>(f + 1);
    if (f + 1 == cap) cut(r);
  }

  // start fetching the line row r's next append goes to
  void prefetch_tail(int64_t r) const { __builtin_prefetch(row(r) + fill[r], 1); }
};

// Block rows r: with `rows`, row i0 + r takes S[r, c] (id j0 + c); with `cols`, row j0 + c takes S[r, c] (id
// i0 + r).  A lane found above its threshold is pushed even if a cut raises the threshold meanwhile: a score
// below the threshold in a buffer is harmless (the next cut drops it).
void scan(const Buffers& B, const float* s, int64_t bi, int64_t bj, int64_t i0, int64_t j0, bool rows, bool cols) {
  const float* col_thr = B.thr + j0;  // the thresholds of rows j0.., contiguous
  if (cols)
    for (int64_t c = 0; c < bj; ++c) B.prefetch_tail(j0 + c);
  for (int64_t r = 0; r < bi; ++r) {
    const int64_t h = i0 + r;
    if (rows && r + 2 < bi) B.prefetch_tail(h + 2);
    const float* row = s + r * bj;
    int64_t c = 0;
    for (; c + kLanes <= bj; c += kLanes) {
      if (rows) {
        for (unsigned m = above_mask(row + c, B.thr[h]); m; m &= m - 1) {
          const int t = __builtin_ctz(m);
          B.push(h, row[c + t], j0 + c + t);
        }
      }
      if (cols) {
        for (unsigned m = above_mask(row + c, col_thr + c); m; m &= m - 1) {
          const int t = __builtin_ctz(m);
          B.push(j0 + c + t, row[c + t], h);
        }
      }
    }
    for (; c < bj; ++c) {
      if (rows && row[c] > B.thr[h]) B.push(h, row[c], j0 + c);
      if (cols && row[c] > col_thr[c]) B.push(j0 + c, row[c], h);
    }
  }
}

Buffers buffers(torch::Tensor& slots, torch::Tensor& fill, torch::Tensor& thr, int64_t k) {
  TORCH_CHECK(slots.dim() == 3 && slots.size(2) == 2 && slots.scalar_type() == torch::kFloat32 &&
                  slots.is_contiguous() && slots.is_cpu(),
              "slots must be a contiguous (N, C, 2) float32 CPU tensor");
  const int64_t n = slots.size(0), cap = slots.size(1);
  TORCH_CHECK(fill.numel() == n && fill.scalar_type() == torch::kInt32 && fill.is_contiguous(), "bad fill");
  TORCH_CHECK(thr.numel() == n && thr.scalar_type() == torch::kFloat32 && thr.is_contiguous(), "bad thr");
  TORCH_CHECK(k >= 1 && cap >= k + kSlack, "need 1 <= K and C >= K + 16");
  return Buffers{reinterpret_cast<Slot*>(slots.data_ptr<float>()), fill.data_ptr<int32_t>(), thr.data_ptr<float>(),
                 cap, k};
}

void feed(const torch::Tensor& s, torch::Tensor& slots, torch::Tensor& fill, torch::Tensor& thr, int64_t k,
          int64_t i0, int64_t j0, bool both) {
  TORCH_CHECK(s.dim() == 2 && s.scalar_type() == torch::kFloat32 && s.is_contiguous() && s.is_cpu(),
              "scores must be a contiguous 2-D float32 CPU tensor");
  const Buffers B = buffers(slots, fill, thr, k);
  const int64_t bi = s.size(0), bj = s.size(1), n = slots.size(0);
  TORCH_CHECK(i0 >= 0 && i0 + bi <= n && j0 >= 0 && j0 + bj <= (both ? n : int64_t{1} << 31), "block out of range");
  TORCH_CHECK(!both || j0 >= i0 + bi || i0 >= j0 + bj, "a block fed to both sides must not overlap itself");
  scan(B, s.data_ptr<float>(), bi, bj, i0, j0, true, both);
}

// Sort the K best of every row to the front of its buffer, best first (rows split over `threads` threads); a
// row with fewer than K admitted scores gets fill -1 instead.
void finish(torch::Tensor& slots, torch::Tensor& fill, torch::Tensor& thr, int64_t k, int64_t threads) {
  const Buffers B = buffers(slots, fill, thr, k);
  const int64_t n = slots.size(0);
  const int64_t parts = std::max<int64_t>(1, std::min(threads, n));
  auto work = [&](int64_t t) {
    for (int64_t r = n * t / parts; r < n * (t + 1) / parts; ++r) {
      if (B.fill[r] < k) {
        B.fill[r] = -1;
        continue;
      }
      Slot* b = B.row(r);
      std::nth_element(b, b + (k - 1), b + B.fill[r], better);
      std::sort(b, b + k, better);
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < parts; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("feed", &feed, "append a score block's admissible scores to the row (and column) buffers",
        py::call_guard<py::gil_scoped_release>());
  m.def("finish", &finish, "sort the K best of every row to the front of its buffer",
        py::call_guard<py::gil_scoped_release>());
}
