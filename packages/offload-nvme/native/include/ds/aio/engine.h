// The async I/O engine behind @ds/offload-nvme (DeepSpeed's aio_handle, csrc/aio): requests are
// split into block_size chunks spread over intra_op_parallelism I/O threads, each keeping up to
// queue_depth chunks in flight on its own io_uring, or, where io_uring is refused (seccomp, old
// kernels, DS_AIO_BACKEND=threads), on a pool of threads doing pread/pwrite. Chunks whose file offset
// and length are 4096-aligned go through the file's O_DIRECT descriptor (through an aligned bounce
// buffer when the caller's memory is not aligned); the rest through its buffered descriptor.
// Errors never abort: a failed chunk records errno and file offset in its request.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ds::aio {

constexpr size_t kAlign = 4096;

struct Config {
  size_t blockSize = 1 << 20;
  unsigned queueDepth = 8;
  unsigned threads = 1;
  bool singleSubmit = false;
  bool overlapEvents = true;
  bool useUring = true;
};

/** An open file: a buffered descriptor, and an O_DIRECT one where the file system allows it. */
struct File {
  std::string path;
  int fdBuffered = -1;
  int fdDirect = -1;
  ~File();
};

enum class Kind { Read, Write };

struct Request {
  Kind kind = Kind::Read;
  uint8_t* data = nullptr;
  size_t bytes = 0;
  uint64_t offset = 0;
  std::shared_ptr<File> file;
  std::atomic<size_t> left{0};
  std::mutex mu;
  int err = 0;              // errno of the first failed chunk (0: none)
  uint64_t errOffset = 0;   // its file offset
  std::string errWhat;      // what failed ("pwrite", "short read at end of file", ...)
  std::function<void(Request*)> onDone;  // runs once, on an I/O thread, when every chunk finished
  void fail(int e, uint64_t at, const char* what);
};

struct Chunk {
  Request* req = nullptr;
  uint8_t* data = nullptr;
  size_t bytes = 0;
  uint64_t offset = 0;
  bool direct = false;
};

class Worker;

class Engine {
 public:
  /** Starts the I/O threads; `uringErr` gets -errno when io_uring was asked for and refused (then threads run). */
  Engine(const Config& cfg, int* uringErr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /** Splits the request into chunks and queues them; `onDone` runs when all finished. */
  void submit(Request* r);
  /** Waits for queued work and joins the threads. */
  void shutdown();
  bool usesUring() const { return uring_; }
  const Config& config() const { return cfg_; }

 private:
  Config cfg_;
  bool uring_ = false;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<size_t> rotate_{0};
  bool down_ = false;
};

/** Finishes one chunk's share of its request (errors already recorded); runs onDone at the last. */
void chunkDone(Chunk* c);
/** Synchronous transfer of a chunk (the thread path, and the rest of a short io_uring transfer). */
void transferSync(Chunk* c, size_t from, uint8_t* bounce);

}  // namespace ds::aio
