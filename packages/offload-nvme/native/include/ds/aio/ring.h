// A minimal io_uring through the raw syscalls (io_uring_setup / io_uring_enter and the mmap'd rings),
// so the prebuilt binary needs no liburing. One ring belongs to one I/O thread; nothing here is shared.
#pragma once

#include <linux/io_uring.h>

#include <cstddef>
#include <cstdint>

namespace ds::aio {

class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring();

  /** Sets the ring up with `entries` submission slots; returns 0 or -errno (ENOSYS, EPERM where refused). */
  int init(unsigned entries);
  /** The next free submission entry (zeroed), or nullptr when the queue is full. */
  io_uring_sqe* next();
  /** Hands `n` prepared entries to the kernel and waits for at least `waitMin` completions; returns how many the kernel took, or -errno. */
  int enter(unsigned n, unsigned waitMin);
  /** Pops one completion into `out`; false when none is ready. */
  bool pop(io_uring_cqe* out);
  /** Prepared entries not yet handed over by enter(). */
  unsigned pending() const { return prepared_; }

 private:
  int fd_ = -1;
  void* sqMap_ = nullptr;
  size_t sqMapBytes_ = 0;
  void* cqMap_ = nullptr;
  size_t cqMapBytes_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  size_t sqesBytes_ = 0;
  unsigned* sqHead_ = nullptr;
  unsigned* sqTail_ = nullptr;
  unsigned sqMask_ = 0;
  unsigned sqEntries_ = 0;
  unsigned* sqArray_ = nullptr;
  unsigned* cqHead_ = nullptr;
  unsigned* cqTail_ = nullptr;
  unsigned cqMask_ = 0;
  io_uring_cqe* cqes_ = nullptr;
  unsigned localTail_ = 0;
  unsigned prepared_ = 0;
};

}  // namespace ds::aio
