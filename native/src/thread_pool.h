// A fixed pool of worker threads for data-parallel loops (matmuls, attention heads, experts).
#pragma once
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
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int parts_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

// The process-wide pool the engine uses; sized to the hardware threads until set_num_threads.
// Callers hold the returned pointer for the duration of a job, so resizing never frees a pool in use.
std::shared_ptr<ThreadPool> pool();
void set_num_threads(int n);  // n <= 0 means one per hardware thread
int num_threads();

}  // namespace l4
