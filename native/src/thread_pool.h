// A fixed pool of worker threads for data-parallel loops (matmuls, attention heads, experts).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace l4 {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  int size() const { return int(workers_.size()) + 1; }

  // Splits [0, n) into at most size() contiguous ranges of at least `grain` items and runs
  // fn(begin, end) on each, the calling thread included; returns when all are done and rethrows
  // the first exception. Calls from different threads are serialised; do not nest.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

 private:
  void worker_loop(int index);
  void run_range(int part);

  std::vector<std::thread> workers_;
  std::mutex job_mutex_;  // one job at a time
  // A decode step is ~100 short jobs: workers and the caller spin briefly before sleeping on these, so a
  // job starts and ends in a microsecond or two instead of a futex wake-up each.
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  int sleeping_workers_ = 0;  // guarded by mutex_
  bool caller_sleeping_ = false;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int parts_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

// The process-wide pool the engine uses; sized to the hardware threads until set_num_threads.
// Callers hold the returned pointer for the duration of a job, so resizing never frees a pool in use.
std::shared_ptr<ThreadPool> pool();
void set_num_threads(int n);  // n <= 0 means one per hardware thread
int num_threads();

// Runs fn(begin, end) over [0, n) items of about `cost` operations each, on as many threads of pool() as the
// work is worth: the one place that decides when a loop is too small to hand out.
void parallel_items(int64_t n, int64_t cost, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace l4
