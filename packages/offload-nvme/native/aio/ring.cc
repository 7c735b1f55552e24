// Raw-syscall io_uring: the three mmaps of the ring and the acquire/release ordering of its heads
// and tails, as the kernel's io_uring(7) page describes them.
#include "ds/aio/ring.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ds::aio {

namespace {
int sysSetup(unsigned entries, io_uring_params* p) { return static_cast<int>(syscall(__NR_io_uring_setup, entries, p)); }
int sysEnter(int fd, unsigned submit, unsigned waitMin, unsigned flags) {
  return static_cast<int>(syscall(__NR_io_uring_enter, fd, submit, waitMin, flags, nullptr, 0));
}
template <typename T>
T* at(void* base, unsigned off) {
  return reinterpret_cast<T*>(static_cast<uint8_t*>(base) + off);
}
}  // namespace

Ring::~Ring() {
  if (sqes_) munmap(sqes_, sqesBytes_);
  if (cqMap_ && cqMap_ != sqMap_) munmap(cqMap_, cqMapBytes_);
  if (sqMap_) munmap(sqMap_, sqMapBytes_);
  if (fd_ >= 0) close(fd_);
}

int Ring::init(unsigned entries) {
  io_uring_params p;
  std::memset(&p, 0, sizeof p);
  fd_ = sysSetup(entries, &p);
  if (fd_ < 0) {
    const int e = errno;
    fd_ = -1;
    return -e;
  }
  sqMapBytes_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  cqMapBytes_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  const bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single && cqMapBytes_ > sqMapBytes_) sqMapBytes_ = cqMapBytes_;
  sqMap_ = mmap(nullptr, sqMapBytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQ_RING);
  if (sqMap_ == MAP_FAILED) {
    sqMap_ = nullptr;
    return -errno;
  }
  if (single) {
    cqMap_ = sqMap_;
  } else {
    cqMap_ = mmap(nullptr, cqMapBytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_CQ_RING);
    if (cqMap_ == MAP_FAILED) {
      cqMap_ = nullptr;
      return -errno;
    }
  }
  sqesBytes_ = p.sq_entries * sizeof(io_uring_sqe);
  void* s = mmap(nullptr, sqesBytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQES);
  if (s == MAP_FAILED) return -errno;
  sqes_ = static_cast<io_uring_sqe*>(s);
  sqHead_ = at<unsigned>(sqMap_, p.sq_off.head);
  sqTail_ = at<unsigned>(sqMap_, p.sq_off.tail);
  sqMask_ = *at<unsigned>(sqMap_, p.sq_off.ring_mask);
  sqEntries_ = *at<unsigned>(sqMap_, p.sq_off.ring_entries);
  sqArray_ = at<unsigned>(sqMap_, p.sq_off.array);
  cqHead_ = at<unsigned>(cqMap_, p.cq_off.head);
  cqTail_ = at<unsigned>(cqMap_, p.cq_off.tail);
  cqMask_ = *at<unsigned>(cqMap_, p.cq_off.ring_mask);
  cqes_ = at<io_uring_cqe>(cqMap_, p.cq_off.cqes);
  localTail_ = *sqTail_;
  return 0;
}

io_uring_sqe* Ring::next() {
  const unsigned head = __atomic_load_n(sqHead_, __ATOMIC_ACQUIRE);
  if (localTail_ - head >= sqEntries_) return nullptr;
  const unsigned idx = localTail_ & sqMask_;
  io_uring_sqe* sqe = &sqes_[idx];
  std::memset(sqe, 0, sizeof *sqe);
  sqArray_[idx] = idx;
  localTail_++;
  prepared_++;
  return sqe;
}

int Ring::enter(unsigned n, unsigned waitMin) {
  if (n > prepared_) n = prepared_;
  // Publish the prepared entries before the kernel looks at the tail.
  __atomic_store_n(sqTail_, localTail_ - (prepared_ - n), __ATOMIC_RELEASE);
  for (;;) {
    const int r = sysEnter(fd_, n, waitMin, waitMin > 0 ? IORING_ENTER_GETEVENTS : 0);
    if (r >= 0) {
      const unsigned took = static_cast<unsigned>(r) < n ? static_cast<unsigned>(r) : n;
      prepared_ -= took;
      return static_cast<int>(took);
    }
    if (errno == EINTR) continue;
    return -errno;
  }
}

bool Ring::pop(io_uring_cqe* out) {
  const unsigned head = *cqHead_;
  if (head == __atomic_load_n(cqTail_, __ATOMIC_ACQUIRE)) return false;
  *out = cqes_[head & cqMask_];
  __atomic_store_n(cqHead_, head + 1, __ATOMIC_RELEASE);
  return true;
}

}  // namespace ds::aio
