#include "ds/comm/sync.h"

#include <climits>
#include <cstdio>
#include <ctime>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ds::comm {

namespace {
long futex(std::atomic<uint32_t>* word, int op, uint32_t val, const timespec* ts) {
  // Shared (not FUTEX_PRIVATE) futexes: the word lives in memory mapped by several processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, val, ts, nullptr, 0);
}

}  // namespace

int64_t nowUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

void publish(std::atomic<uint32_t>* word, std::atomic<uint32_t>* waiters, uint32_t value) {
  word->store(value, std::memory_order_seq_cst);
  if (waiters->load(std::memory_order_seq_cst) != 0) futex(word, FUTEX_WAKE, INT_MAX, nullptr);
}

bool waitSlice(std::atomic<uint32_t>* word, std::atomic<uint32_t>* waiters, uint32_t target, int spin, int64_t sliceUs) {
  for (int i = 0; i < spin; i++) {
    if (reached(word->load(std::memory_order_acquire), target)) return true;
    cpuRelax();
  }
  const uint32_t seen = word->load(std::memory_order_seq_cst);
  if (reached(seen, target)) return true;
  waiters->fetch_add(1, std::memory_order_seq_cst);
  timespec ts{static_cast<time_t>(sliceUs / 1000000), static_cast<long>((sliceUs % 1000000) * 1000)};
  // The kernel compares the word with `seen` atomically, so a publish between the load above and
  // this call makes it return at once instead of sleeping through the wake-up.
  futex(word, FUTEX_WAIT, seen, &ts);
  waiters->fetch_sub(1, std::memory_order_seq_cst);
  return reached(word->load(std::memory_order_acquire), target);
}

bool processAlive(int pid) {
  if (pid <= 0) return true;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return false;
  char buf[512];
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  // The state letter follows the ')' that closes the command name.
  const char* close = nullptr;
  for (const char* p = buf; *p; p++)
    if (*p == ')') close = p;
  if (!close || !close[1] || !close[2]) return true;
  const char state = close[2];
  return state != 'Z' && state != 'X';
}

}  // namespace ds::comm
