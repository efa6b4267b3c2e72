// Streaming exact top-K selection for lit_metric's self-retrieval k-NN (see lit_metric/functional/_topk_ext.py).
//
// Every reference row r owns a candidate buffer of C > K slots (values and int32 ids), a fill count and an
// admission threshold thr[r].  `feed` takes one block S = X[i0:i0+bi] @ X[j0:j0+bj]^T of a symmetric score
// matrix and appends every score strictly above the row's threshold to the buffer of rows i0.. (along S's
// rows) and, with `both`, of rows j0.. (along S's columns): a block is computed once for two row sets.  A
// full buffer is cut to its K best with a linear-time selection and the threshold rises to the K-th best
// value; rejecting a score costs one SIMD comparison.  `finish` sorts the K best of every row.
//
// Exactness: a score is dropped only if it is <= the row's threshold at that time, and the threshold never
// exceeds the K-th best score kept at the end; so the kept K are the K best, up to ties with the K-th value,
// which the caller resolves (it fetches one neighbour more than it returns and recomputes rows tied there).
// A row whose buffer holds fewer than K scores above its starting threshold is reported (ids -1) so the
// caller can redo it with a lower threshold.
#include <torch/extension.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

namespace {

constexpr int64_t kLanes = 16;

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

struct Buffers {
  float* vals;    // (N, C)
  int32_t* ids;   // (N, C)
  int32_t* fill;  // (N,)
  float* thr;     // (N,)
  int64_t cap;    // C
  int64_t k;      // K

  // keep the K best of row r's full buffer; the threshold becomes the K-th best value
  __attribute__((noinline)) void cut(int64_t r) const {
    float* v = vals + r * cap;
    int32_t* id = ids + r * cap;
    const int64_t n = fill[r];
    thread_local std::vector<int32_t> order;
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
    std::nth_element(order.begin(), order.begin() + (k - 1), order.end(),
                     [v](int32_t a, int32_t b) { return v[a] > v[b]; });
    thread_local std::vector<float> kv;
    thread_local std::vector<int32_t> ki;
    kv.resize(k);
    ki.resize(k);
    float lowest = v[order[k - 1]];
    for (int64_t t = 0; t < k; ++t) {
      kv[t] = v[order[t]];
      ki[t] = id[order[t]];
    }
    std::copy(kv.begin(), kv.end(), v);
    std::copy(ki.begin(), ki.end(), id);
    fill[r] = static_cast<int32_t>(k);
    thr[r] = std::max(thr[r], lowest);
  }

  // append; true when the buffer was full and got cut (the row's threshold rose)
  inline bool push(int64_t r, float x, int64_t id) const {
    const int64_t f = fill[r];
    vals[r * cap + f] = x;
    ids[r * cap + f] = static_cast<int32_t>(id);
    fill[r] = static_cast<int32_t>(f + 1);
    if (f + 1 < cap) return false;
    cut(r);
    return true;
  }
};

// One pass over the block rows [r0, r1): row i0 + r takes S[r, c] (id j0 + c); with `both`, row j0 + c takes
// S[r, c] (id i0 + r) too.  A lane found above its threshold is pushed even if a cut raises the threshold
// meanwhile: a score below the threshold in a buffer is harmless (the next cut drops it).
void scan(const Buffers& B, const float* s, int64_t bj, int64_t r0, int64_t r1, int64_t i0, int64_t j0, bool both) {
  float* col_thr = B.thr + j0;  // the thresholds of rows j0.., contiguous
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t h = i0 + r;
    const float* row = s + r * bj;
    int64_t c = 0;
    for (; c + kLanes <= bj; c += kLanes) {
      for (unsigned m = above_mask(row + c, B.thr[h]); m; m &= m - 1) {
        const int t = __builtin_ctz(m);
        B.push(h, row[c + t], j0 + c + t);
      }
      if (!both) continue;
      for (unsigned m = above_mask(row + c, col_thr + c); m; m &= m - 1) {
        const int t = __builtin_ctz(m);
        B.push(j0 + c + t, row[c + t], h);
      }
    }
    for (; c < bj; ++c) {
      if (row[c] > B.thr[h]) B.push(h, row[c], j0 + c);
      if (both && row[c] > col_thr[c]) B.push(j0 + c, row[c], h);
    }
  }
}

Buffers buffers(torch::Tensor& vals, torch::Tensor& ids, torch::Tensor& fill, torch::Tensor& thr, int64_t k) {
  TORCH_CHECK(vals.dim() == 2 && vals.scalar_type() == torch::kFloat32 && vals.is_contiguous() && vals.is_cpu(),
              "vals must be a contiguous (N, C) float32 CPU tensor");
  TORCH_CHECK(ids.sizes() == vals.sizes() && ids.scalar_type() == torch::kInt32 && ids.is_contiguous(),
              "ids must be a contiguous int32 tensor shaped like vals");
  const int64_t n = vals.size(0), cap = vals.size(1);
  TORCH_CHECK(fill.numel() == n && fill.scalar_type() == torch::kInt32 && fill.is_contiguous(), "bad fill");
  TORCH_CHECK(thr.numel() == n && thr.scalar_type() == torch::kFloat32 && thr.is_contiguous(), "bad thr");
  TORCH_CHECK(k >= 1 && cap > k, "need 1 <= K < C");
  return Buffers{vals.data_ptr<float>(), ids.data_ptr<int32_t>(), fill.data_ptr<int32_t>(), thr.data_ptr<float>(),
                 cap, k};
}

// run task(t) for t in [0, n) on up to `threads` threads (the calling one included)
template <typename F>
void run_tasks(int64_t n, int64_t threads, const F& task) {
  const int64_t workers = std::max<int64_t>(1, std::min(n, threads));
  std::vector<std::thread> pool;
  for (int64_t w = 1; w < workers; ++w)
    pool.emplace_back([&, w] {
      for (int64_t t = w; t < n; t += workers) task(t);
    });
  for (int64_t t = 0; t < n; t += workers) task(t);
  for (auto& th : pool) th.join();
}

void feed(const torch::Tensor& s, torch::Tensor& vals, torch::Tensor& ids, torch::Tensor& fill, torch::Tensor& thr,
          int64_t k, int64_t i0, int64_t j0, bool both) {
  TORCH_CHECK(s.dim() == 2 && s.scalar_type() == torch::kFloat32 && s.is_contiguous() && s.is_cpu(),
              "scores must be a contiguous 2-D float32 CPU tensor");
  const Buffers B = buffers(vals, ids, fill, thr, k);
  const int64_t bi = s.size(0), bj = s.size(1), n = vals.size(0);
  TORCH_CHECK(i0 >= 0 && i0 + bi <= n && j0 >= 0 && j0 + bj <= (both ? n : int64_t{1} << 31), "block out of range");
  TORCH_CHECK(!both || j0 >= i0 + bi || i0 >= j0 + bj, "a block fed to both sides must not overlap itself");
  scan(B, s.data_ptr<float>(), bj, 0, bi, i0, j0, both);
}

// sort the K best of every row into the first K slots of its buffer (best first); a row with fewer than K
// admitted scores gets fill -1 instead
void finish(torch::Tensor& vals, torch::Tensor& ids, torch::Tensor& fill, torch::Tensor& thr, int64_t k,
            int64_t threads) {
  const Buffers B = buffers(vals, ids, fill, thr, k);
  const int64_t n = vals.size(0);
  const int64_t parts = std::max<int64_t>(1, threads);
  run_tasks(parts, threads, [&](int64_t t) {
    std::vector<std::pair<float, int32_t>> row;
    for (int64_t r = n * t / parts; r < n * (t + 1) / parts; ++r) {
      const int64_t f = B.fill[r];
      if (f < k) {
        B.fill[r] = -1;
        continue;
      }
      float* v = B.vals + r * B.cap;
      int32_t* id = B.ids + r * B.cap;
      row.resize(f);
      for (int64_t j = 0; j < f; ++j) row[j] = {v[j], id[j]};
      // best first; equal values by lower id (the caller re-sorts ties by its own rule anyway)
      auto better = [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      };
      std::nth_element(row.begin(), row.begin() + (k - 1), row.end(), better);
      std::sort(row.begin(), row.begin() + k, better);
      for (int64_t j = 0; j < k; ++j) {
        v[j] = row[j].first;
        id[j] = row[j].second;
      }
    }
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("feed", &feed, "append a score block's admissible scores to the row (and column) buffers",
        py::call_guard<py::gil_scoped_release>());
  m.def("finish", &finish, "sort the K best of every row to the front of its buffer",
        py::call_guard<py::gil_scoped_release>());
}
