// The progress thread: starts ops as non-blocking MPI calls, tests them, enforces deadlines.
#include "ds/mpi/engine.h"

#include <climits>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <sched.h>


namespace ds::mpi {

namespace {
constexpr int kNoteTag = 1;
constexpr int kP2pTag = 2;
constexpr int64_t kLivenessUs = 100000;
constexpr int64_t kPatientUs = 100000;

std::string listRanks(const std::vector<int>& r) {
  std::string s;
  for (size_t i = 0; i < r.size(); i++) s += (i ? ", " : "") + std::to_string(r[i]);
  return s;
}

const char* opName(OpKind k) {
  static const char* names[] = {"barrier", "allReduce", "reduceScatter", "allGather", "broadcast", "allToAll", "send", "recv", "createGroup", "destroy"};
  return names[static_cast<int>(k)];
}

bool collective(OpKind k) { return k != OpKind::Send && k != OpKind::Recv && k != OpKind::CreateComm && k != OpKind::FreeComm; }
}  // namespace

int64_t nowUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
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
  const char* close = std::strrchr(buf, ')');
  return !(close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X'));
}

Engine& Engine::get(const std::string& library) {
  // The first call decides the library: MPI can be initialised once per process.
  static Engine engine(library);
  return engine;
}

Engine::Engine(const std::string& library) {
  if (!loadAbi(abi_, why_, library)) return;
  // Open MPI 4's non-blocking allreduce (coll/libnbc) picks a binomial reduce+broadcast for fewer
  // than 4 ranks and for every in-place call, which is ours: several times slower than its ring on
  // large buffers. The ring becomes the default here unless the user chose (overwrite = 0).
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
  thread_ = std::thread([this] {
    int provided = 0;
    int rc = abi_.Init_thread(nullptr, nullptr, 1 /* MPI_THREAD_FUNNELED */, &provided);
    std::string why;
    if (rc != 0) why = "MPI_Init_thread failed: " + errorText(abi_, rc);
    else if (provided < 1) why = "the MPI library gives thread level " + std::to_string(provided) + " but the mpi backend needs MPI_THREAD_FUNNELED (its progress thread makes every MPI call)";
    if (why.empty()) {
      abi_.Comm_set_errhandler(abi_.commWorld, abi_.errorsReturn);
      abi_.Comm_rank(abi_.commWorld, &worldRank_);
      abi_.Comm_size(abi_.commWorld, &worldSize_);
      createUserOps(abi_, userOps_);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      why_ = why;
      initDone_ = true;
    }
    doneCv_.notify_all();
    if (why.empty()) loop();
  });
  std::unique_lock<std::mutex> lock(mu_);
  doneCv_.wait(lock, [this] { return initDone_; });
}

bool Engine::ready(std::string& why) const {
  why = why_;
  return why_.empty();
}

void Engine::submit(Op* op) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_) {
      queue_.push_back(op);
      cv_.notify_one();
      return;
    }
  }
  failOp(op, ErrKind::Aborted, "the MPI engine was shut down (the process is exiting)", {}, false);
}

bool Engine::waitFinished(const Op* op, int64_t timeoutUs) {
  std::unique_lock<std::mutex> lock(mu_);
  return doneCv_.wait_for(lock, std::chrono::microseconds(timeoutUs), [op] { return op->finished.load(); });
}

void Engine::shutdown(bool finalize) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ || !thread_.joinable()) return;
    stop_ = true;
    finalize_ = finalize;
  }
  cv_.notify_all();
  thread_.join();
}

std::string Engine::where(const Op* op) const {
  auto it = comms_.find(op->comm);
  const int rank = it == comms_.end() ? -1 : it->second->rank;
  const int size = it == comms_.end() ? 0 : it->second->size;
  return std::string(opName(op->kind)) + " seq " + std::to_string(op->seq) + " on rank " + std::to_string(rank) + " of " + std::to_string(size);
}

void Engine::failOp(Op* op, ErrKind kind, const std::string& message, std::vector<int> missing, bool orphan) {
  op->err = kind;
  op->message = message;
  op->missing = std::move(missing);
  op->orphaned = orphan;
  if (orphan) anyOrphan_ = true;
  finish(op);
}

void Engine::finish(Op* op) {
  if (op->startUs) op->execMs = static_cast<double>(nowUs() - op->startUs) / 1000.0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    op->finished.store(true);
  }
  doneCv_.notify_all();
  // A copy: the JS thread frees the op (and this function object) once the call below delivers it.
  auto done = op->done;
  if (done) done(op);
}

void Engine::note(Comm& c, uint32_t seq) {
  for (int q = 0; q < c.size; q++) {
    if (q == c.rank) continue;
    Note n{nullptr, std::unique_ptr<uint32_t>(new uint32_t[2])};
    n.buf.get()[0] = static_cast<uint32_t>(c.rank);
    n.buf.get()[1] = seq + 1;
    if (abi_.Isend(n.buf.get(), 2, abi_.tInt32, q, kNoteTag, c.ctl, &n.req) == 0) notesOut_.push_back(std::move(n));
  }
}

void Engine::drainNotes(Comm& c) {
  for (;;) {
    int flag = 0;
    if (!c.noteReq || abi_.Test(&c.noteReq, &flag, nullptr) != 0 || !flag) return;
    const uint32_t* in = c.noteIn;
    const int from = static_cast<int>(in[0]);
    if (from >= 0 && from < c.size && in[1] > c.arrived[from]) c.arrived[from] = in[1];
    c.noteReq = nullptr;
    abi_.Irecv(c.noteIn, 2, abi_.tInt32, Abi::kAnySource, kNoteTag, c.ctl, &c.noteReq);
  }
}

void Engine::createComm(Op* op) {
  const int n = static_cast<int>(op->ranks.size());
  Handle worldGroup = nullptr, group = nullptr, comm = nullptr, ctl = nullptr;
  int rc = abi_.Comm_group(abi_.commWorld, &worldGroup);
  if (rc == 0) rc = abi_.Group_incl(worldGroup, n, op->ranks.data(), &group);
  if (rc == 0) rc = abi_.Comm_create_group(abi_.commWorld, group, op->tag, &comm);
  if (group) abi_.Group_free(&group);
  if (worldGroup) abi_.Group_free(&worldGroup);
  if (rc == 0) rc = abi_.Comm_set_errhandler(comm, abi_.errorsReturn);
  if (rc == 0) rc = abi_.Comm_dup(comm, &ctl);
  if (rc != 0) {
    failOp(op, ErrKind::Setup, "MPI could not create the communicator of world ranks [" + listRanks(op->ranks) + "]: " + errorText(abi_, rc), {}, false);
    return;
  }
  auto c = std::make_unique<Comm>();
  c->id = nextComm_++;
  c->comm = comm;
  c->ctl = ctl;
  abi_.Comm_rank(comm, &c->rank);
  abi_.Comm_size(comm, &c->size);
  c->pids = op->pids;
  c->pids.resize(static_cast<size_t>(c->size), 0);
  c->arrived.assign(static_cast<size_t>(c->size), 0);
  abi_.Irecv(c->noteIn, 2, abi_.tInt32, Abi::kAnySource, kNoteTag, ctl, &c->noteReq);
  op->result = c->id;
  comms_[c->id] = std::move(c);
  finish(op);
}

void Engine::freeComm(Op* op) {
  auto it = comms_.find(op->comm);
  if (it != comms_.end()) {
    Comm& c = *it->second;
    // A failed communicator may still have requests MPI will never finish: leave it to the process end.
    if (!c.failed) {
      if (c.noteReq) {
        abi_.Cancel(&c.noteReq);
        abi_.Wait(&c.noteReq, nullptr);
      }
      abi_.Comm_free(&c.ctl);
      abi_.Comm_free(&c.comm);
      comms_.erase(it);
    }
  }
  finish(op);
}

void Engine::start(Op* op) {
  op->startUs = nowUs();
  op->deadlineUs = op->startUs + op->timeoutUs;
  if (op->kind == OpKind::CreateComm) return createComm(op);
  if (op->kind == OpKind::FreeComm) return freeComm(op);
  auto it = comms_.find(op->comm);
  if (it == comms_.end()) return failOp(op, ErrKind::Aborted, "the process group was destroyed", {}, false);
  Comm& c = *it->second;
  if (c.failed) return failOp(op, ErrKind::Aborted, "the group is unusable after an earlier failure (" + c.failure + "); destroy it and create a new one", {}, false);
  if (op->count > static_cast<uint64_t>(INT_MAX)) return failOp(op, ErrKind::Mpi, "MPI counts are 32-bit: " + std::to_string(op->count) + " elements is too many for one op; split the buffer", {}, false);
  const int n = static_cast<int>(op->count);
  const bool half = op->dtype == DType::BF16 || op->dtype == DType::F16;
  Handle t = op->dtype == DType::F32 ? abi_.tFloat : half ? abi_.tUint16 : op->dtype == DType::I32 ? abi_.tInt32 : abi_.tUint8;
  Handle rop = mpiOpFor(abi_, userOps_, op->dtype, op->redop);
  if (collective(op->kind)) note(c, op->seq);
  const size_t esz = dtypeSize(op->dtype);
  const size_t bytes = op->count * esz;
  int rc = 0;
  switch (op->kind) {
    case OpKind::Barrier: rc = abi_.Ibarrier(c.comm, &op->req); break;
    case OpKind::AllReduce: rc = abi_.Iallreduce(Abi::inPlace(), op->out, n, t, rop, c.comm, &op->req); break;
    case OpKind::ReduceScatter: {
      // In place (output = block `rank` of input): MPI writes block 0 of the receive buffer, so the
      // result goes to a scratch block and is copied out when the op finishes.
      const bool overlap = op->out >= op->in && op->out < op->in + bytes * static_cast<size_t>(c.size);
      if (overlap) {
        op->scratch.resize(bytes);
        rc = abi_.Ireduce_scatter_block(op->in, op->scratch.data(), n, t, rop, c.comm, &op->req);
      } else {
        rc = abi_.Ireduce_scatter_block(op->in, op->out, n, t, rop, c.comm, &op->req);
      }
      break;
    }
    case OpKind::AllGather: {
      const bool inPlace = op->in == op->out + bytes * static_cast<size_t>(c.rank);
      rc = abi_.Iallgather(inPlace ? Abi::inPlace() : op->in, n, t, op->out, n, t, c.comm, &op->req);
      break;
    }
    case OpKind::Broadcast: rc = abi_.Ibcast(op->out, n, t, op->root, c.comm, &op->req); break;
    case OpKind::AllToAll: {
      const int block = n / c.size;
      const uint8_t* src = op->in;
      if (op->in == op->out) {
        op->scratch.assign(op->in, op->in + bytes);
        src = op->scratch.data();
      }
      rc = abi_.Ialltoall(src, block, t, op->out, block, t, c.comm, &op->req);
      break;
    }
    case OpKind::Send: rc = abi_.Isend(op->in, n, t, op->root, kP2pTag, c.comm, &op->req); break;
    case OpKind::Recv: rc = abi_.Irecv(op->out, n, t, op->root, kP2pTag, c.comm, &op->req); break;
    default: break;
  }
  if (rc != 0) {
    c.failed = true;
    c.failure = where(op) + ": " + errorText(abi_, rc);
    return failOp(op, ErrKind::Mpi, "MPI refused to start it: " + errorText(abi_, rc), {}, false);
  }
  active_.push_back(op);
}

void Engine::postProcess(Op* op) {
  auto it = comms_.find(op->comm);
  const int size = it == comms_.end() ? 1 : it->second->size;
  if (op->kind == OpKind::ReduceScatter && !op->scratch.empty()) std::memcpy(op->out, op->scratch.data(), op->scratch.size());
  if (op->redop == RedOp::Avg && (op->kind == OpKind::AllReduce || op->kind == OpKind::ReduceScatter)) averageInPlace(op->dtype, op->out, op->count, size);
}

// True when the op left the active list (finished or failed).
bool Engine::poll(Op* op, int64_t now) {
  Comm& c = *comms_.at(op->comm);
  int flag = 0;
  const int rc = abi_.Test(&op->req, &flag, nullptr);
  if (rc != 0) {
    c.failed = true;
    c.failure = where(op) + ": " + errorText(abi_, rc);
    failOp(op, ErrKind::Mpi, "MPI reported: " + errorText(abi_, rc), {}, true);
    return true;
  }
  if (flag) {
    postProcess(op);
    finish(op);
    return true;
  }
  if (now < op->deadlineUs) return false;
  std::vector<int> missing;
  if (collective(op->kind)) {
    drainNotes(c);
    for (int q = 0; q < c.size; q++)
      if (q != c.rank && c.arrived[q] <= op->seq) missing.push_back(q);
  } else {
    missing.push_back(op->root);
  }
  std::string msg = "timed out after " + std::to_string(op->timeoutUs / 1000) + " ms; ";
  if (!missing.empty()) msg += "rank(s) " + listRanks(missing) + " did not arrive";
  else msg += "every rank started it but MPI did not complete it (check that all ranks passed the same count, dtype and root)";
  c.failed = true;
  c.failure = where(op) + " " + msg;
  failOp(op, ErrKind::Timeout, msg, missing, true);
  return true;
}

void Engine::loop() {
  int64_t nextLiveness = nowUs() + kLivenessUs;
  int64_t lastProgressUs = nowUs();
  int idle = 0;
  for (;;) {
    std::deque<Op*> fresh;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (active_.empty() && queue_.empty() && !stop_) cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) break;
      fresh.swap(queue_);
    }
    for (Op* op : fresh) start(op);
    const int64_t now = nowUs();
    bool progressed = !fresh.empty();
    if (active_.empty()) lastProgressUs = now;
    for (size_t i = 0; i < active_.size();) {
      if (poll(active_[i], now)) {
        active_.erase(active_.begin() + static_cast<long>(i));
        progressed = true;
      } else {
        i++;
      }
    }
    if (now >= nextLiveness && !active_.empty()) {
      nextLiveness = now + kLivenessUs;
      // A peer process on this host that exited fails every op of every group it belongs to.
      for (size_t i = 0; i < active_.size();) {
        Op* op = active_[i];
        Comm& c = *comms_.at(op->comm);
        int dead = -1;
        for (int q = 0; q < c.size && dead < 0; q++)
          if (q != c.rank && !processAlive(c.pids[q])) dead = q;
        if (dead < 0) {
          i++;
          continue;
        }
        const std::string msg = "rank " + std::to_string(dead) + " (pid " + std::to_string(c.pids[dead]) + ") exited while the op was in flight";
        c.failed = true;
        c.failure = where(op) + ": " + msg;
        active_.erase(active_.begin() + static_cast<long>(i));
        failOp(op, ErrKind::PeerDead, msg, {dead}, true);
      }
      for (auto& [id, c] : comms_)
        if (!c->failed) drainNotes(*c);
      for (size_t i = 0; i < notesOut_.size();) {
        int flag = 0;
        if (abi_.Test(&notesOut_[i].req, &flag, nullptr) != 0 || flag) notesOut_.erase(notesOut_.begin() + static_cast<long>(i));
        else i++;
      }
    }
    // Open MPI moves a large message a fragment per progress call, so while ops are in flight the
    // thread keeps testing, yielding the core between tests. Only after 100 ms with nothing finishing
    // (a peer is late) does it also sleep briefly every 32 tests.
    if (progressed) {
      lastProgressUs = now;
      idle = 0;
    } else if (now - lastProgressUs < kPatientUs || (++idle & 31) != 0) {
      sched_yield();
    } else {
      timespec ts{0, 50000};
      nanosleep(&ts, nullptr);
    }
  }
  // Shutting down: ops still in flight can never be delivered.
  for (Op* op : active_) failOp(op, ErrKind::Aborted, "the process is exiting with the op in flight", {}, true);
  active_.clear();
  std::deque<Op*> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(queue_);
  }
  for (Op* op : left) failOp(op, ErrKind::Aborted, "the process is exiting", {}, false);
  // MPI_Finalize would wait forever on a request that can never finish; after such a failure the
  // process leaves without it (mpirun then reports the job as failed, which it is).
  if (anyOrphan_ || !finalize_) return;
  for (auto& [id, c] : comms_) {
    if (c->failed) return;
    if (c->noteReq) {
      abi_.Cancel(&c->noteReq);
      abi_.Wait(&c->noteReq, nullptr);
    }
  }
  for (auto& n : notesOut_) abi_.Wait(&n.req, nullptr);
  notesOut_.clear();
  for (auto& [id, c] : comms_) {
    abi_.Comm_free(&c->ctl);
    abi_.Comm_free(&c->comm);
  }
  comms_.clear();
  abi_.Finalize();
}

}  // namespace ds::mpi
