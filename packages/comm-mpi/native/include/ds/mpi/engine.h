// The MPI engine: one progress thread per process owns every MPI call (MPI is initialised there with
// MPI_THREAD_FUNNELED), starts each submitted op as a non-blocking MPI collective, tests the requests
// until they finish, and enforces each op's deadline (MPI itself would wait forever). Liveness of
// peers on this host is checked from their pids; a per-communicator control channel tells, on a
// timeout, which ranks never started the op.
//
// MPI can be initialised once per process, so the engine is a process-wide singleton (the one
// exception to "no process globals": the state it mirrors is process-global in MPI itself).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ds/mpi/abi.h"
#include "ds/mpi/reduce.h"

namespace ds::mpi {

struct Comm {
  int id = 0;
  Handle comm = nullptr;  // the data communicator
  Handle ctl = nullptr;   // its duplicate carrying arrival notes
  int rank = 0, size = 1;
  std::vector<int> pids;  // per group rank: pid when on this host, 0 otherwise
  std::vector<uint32_t> arrived;  // per group rank: collectives it has started (from its notes)
  uint32_t noteIn[2] = {0, 0};  // {sender's group rank, collectives it started}
  Handle noteReq = nullptr;  // the posted receive of the next note
  bool failed = false;
  std::string failure;
};

struct Op {
  OpKind kind = OpKind::Barrier;
  int comm = 0;
  uint32_t seq = 0;
  DType dtype = DType::F32;
  RedOp redop = RedOp::Sum;
  uint64_t count = 0;
  int root = 0;  // broadcast root, send dst, recv src
  int64_t timeoutUs = 0;
  uint8_t* in = nullptr;
  uint8_t* out = nullptr;
  // CreateComm: the world ranks of the members, this rank's position, pids (0: other host).
  std::vector<int> ranks;
  std::vector<int> pids;
  int tag = 0;
  /** Staging for in-place reduceScatter and allToAll. */
  std::vector<uint8_t> scratch;

  // Filled by the engine.
  Handle req = nullptr;
  int64_t startUs = 0, deadlineUs = 0;
  std::atomic<bool> finished{false};
  /** True when the op failed with its MPI request still outstanding (its buffers must stay alive). */
  bool orphaned = false;
  ErrKind err = ErrKind::None;
  std::string message;
  std::vector<int> missing;
  double execMs = 0;
  int result = 0;  // CreateComm: the new comm id
  std::function<void(Op*)> done;
};

class Engine {
 public:
  /** The process's engine; starts the progress thread and MPI on first call. */
  static Engine& get(const std::string& library = "");

  /** Whether MPI came up; otherwise `why` is one sentence. */
  bool ready(std::string& why) const;
  int worldRank() const { return worldRank_; }
  int worldSize() const { return worldSize_; }
  const std::string& version() const { return abi_.version; }
  const std::string& libraryPath() const { return abi_.path; }

  void submit(Op* op);
  /** Blocks until `op` finished or `timeoutUs` passed; true when finished. */
  bool waitFinished(const Op* op, int64_t timeoutUs);
  /**
   * Stops the thread. With `finalize` (a clean exit) it frees the communicators and calls
   * MPI_Finalize, unless an op failed with MPI still holding it. Without it (the process is failing)
   * MPI is left as is: MPI_Finalize would wait for peers that may never come, and mpirun treats a
   * process that leaves without it as failed and stops the job, which is the teardown wanted.
   */
  void shutdown(bool finalize);

 private:
  explicit Engine(const std::string& library);
  /** At process exit (process.exit() skips the addon's cleanup hook): shuts down like shutdown(). */
  ~Engine() { shutdown(false); }
  void loop();
  void start(Op* op);
  bool poll(Op* op, int64_t now);
  void finish(Op* op);
  void failOp(Op* op, ErrKind kind, const std::string& message, std::vector<int> missing, bool orphan);
  void createComm(Op* op);
  void freeComm(Op* op);
  void drainNotes(Comm& c);
  void note(Comm& c, uint32_t seq);
  void postProcess(Op* op);
  std::string where(const Op* op) const;

  Abi abi_;
  std::string why_;
  int worldRank_ = -1, worldSize_ = 0;
  UserOps userOps_;

  std::mutex mu_;
  std::condition_variable cv_, doneCv_;
  std::deque<Op*> queue_;
  bool stop_ = false;
  bool initDone_ = false;
  bool anyOrphan_ = false;
  bool finalize_ = false;
  std::thread thread_;

  // Owned by the progress thread.
  std::vector<Op*> active_;
  std::map<int, std::unique_ptr<Comm>> comms_;
  int nextComm_ = 1;
  struct Note {
    Handle req;
    std::unique_ptr<uint32_t> buf;
  };
  std::vector<Note> notesOut_;
};

bool processAlive(int pid);
int64_t nowUs();

}  // namespace ds::mpi
