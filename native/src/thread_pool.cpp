#include "thread_pool.h"

#include <algorithm>
#include <chrono>
#include <memory>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace l4 {

namespace {

// How long a thread spins waiting for the next job (or for the last part of one) before sleeping.
const auto kSpin = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until done() or kSpin has passed; returns done().
template <class F>
bool spin_until(F done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1;; i++) {
    if (done()) return true;
    cpu_relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() > deadline) return done();
  }
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  for (int i = 1; i < std::max(1, num_threads); i++) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_++;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_range(int part) {
  int64_t begin = n_ * part / parts_, end = n_ * (part + 1) / parts_;
  try {
    if (begin < end) (*fn_)(begin, end);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  while (true) {
    if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleeping_workers_++;
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      sleeping_workers_--;
    }
    seen = generation_.load(std::memory_order_acquire);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;
    }
    if (index >= parts_) continue;
    run_range(index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (caller_sleeping_) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  int parts = int(std::min<int64_t>(size(), std::max<int64_t>(1, n / std::max<int64_t>(1, grain))));
  if (parts == 1) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> job(job_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    n_ = n;
    parts_ = parts;
    error_ = nullptr;
    pending_.store(parts - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    if (sleeping_workers_ > 0) wake_.notify_all();
  }
  run_range(0);
  if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lock(mutex_);
    caller_sleeping_ = true;
    done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    caller_sleeping_ = false;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  fn_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

namespace {
std::mutex g_pool_mutex;
std::shared_ptr<ThreadPool> g_pool;
int hardware_threads() { return std::max(1u, std::thread::hardware_concurrency()); }
}  // namespace

std::shared_ptr<ThreadPool> pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) g_pool = std::make_shared<ThreadPool>(hardware_threads());
  return g_pool;
}

void set_num_threads(int n) {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  g_pool = std::make_shared<ThreadPool>(n > 0 ? n : hardware_threads());
}

int num_threads() { return pool()->size(); }

void parallel_items(int64_t n, int64_t cost, const std::function<void(int64_t, int64_t)>& fn) {
  // Below this many operations per thread, waking a thread costs more than it saves.
  const int64_t kMinOpsPerThread = 32768;
  pool()->parallel_for(n, fn, std::max<int64_t>(1, kMinOpsPerThread / std::max<int64_t>(1, cost)));
}

}  // namespace l4
