// Cross-process waiting on a 32-bit counter in shared memory: spin briefly, then sleep on the
// futex in short slices so the caller can check its deadline, peer liveness and abort flags.
#pragma once
#include <atomic>
#include <cstdint>

namespace ds::comm {

/** True when counter value `v` has reached `target` (wrap-around safe). */
inline bool reached(uint32_t v, uint32_t target) { return static_cast<int32_t>(v - target) >= 0; }

/** A spin-wait's pause. */
inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/** Stores `value` and wakes sleepers when the waiter count says there are any. */
void publish(std::atomic<uint32_t>* word, std::atomic<uint32_t>* waiters, uint32_t value);

/**
 * Waits until `word` reaches `target` or `sliceUs` passes; returns whether it was reached.
 * `spin` is how many times to poll before sleeping.
 */
bool waitSlice(std::atomic<uint32_t>* word, std::atomic<uint32_t>* waiters, uint32_t target, int spin, int64_t sliceUs);

/** Monotonic clock in microseconds. */
int64_t nowUs();

/** False when process `pid` is gone or a zombie (checked through /proc). */
bool processAlive(int pid);

}  // namespace ds::comm
