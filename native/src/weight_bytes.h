// Storage for the weights the engine holds itself: quantized, converted or packed copies of a checkpoint's tensors,
// and the float weights it copies out of the mapped checkpoint (WeightLoader::resident). Backed by transparent huge
// pages where the kernel allows it.
//
// Why: decode streams every weight once per token, and with 4 KiB pages each 4 KiB of the stream costs a TLB miss
// and restarts the hardware prefetcher. Measured on a 2-core Zen 4 VM reading 1 GiB with two threads: 4 KiB pages
// 31.7 / 48.6 GB/s against 33.3 / 57.7 GB/s with MADV_HUGEPAGE (in the host's slow / fast bandwidth phase); a
// mapped file's page cache read 32.0 / 48-52 GB/s. Linux's default THP mode is "madvise", so a plain std::vector
// never gets them.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace l4 {

template <typename T>
struct HugePageAllocator {
  using value_type = T;
  // Below this, a buffer cannot hold one aligned 2 MiB page anyway: the ordinary heap serves it.
  static constexpr size_t kHugePage = size_t(2) << 20;
  static constexpr size_t kMinMappedBytes = kHugePage;
  static size_t page_round(size_t bytes) {
    static const size_t page = size_t(sysconf(_SC_PAGESIZE));
    return (bytes + page - 1) / page * page;
  }

  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}

  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kMinMappedBytes) return static_cast<T*>(::operator new(bytes));
    // Huge pages need 2 MiB-aligned addresses, which mmap only gives lengths that are multiples of 2 MiB: map
    // 2 MiB more, keep the aligned part. Its tail past the last whole huge page stays in 4 KiB pages, so RSS
    // grows by no more than the bytes asked for.
    const size_t mapped = page_round(bytes) + kHugePage;
    void* raw = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t start = reinterpret_cast<uintptr_t>(raw), aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
    if (aligned > start) munmap(raw, aligned - start);
    const size_t tail = start + mapped - (aligned + page_round(bytes));
    if (tail) munmap(reinterpret_cast<void*>(aligned + page_round(bytes)), tail);
    madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);  // advice only: without THP support the mapping keeps 4 KiB pages
    return reinterpret_cast<T*>(aligned);
  }
  void deallocate(T* p, size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kMinMappedBytes) return ::operator delete(p);
    munmap(p, page_round(bytes));
  }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const { return false; }
};

using WeightBytes = std::vector<uint8_t, HugePageAllocator<uint8_t>>;

}  // namespace l4
