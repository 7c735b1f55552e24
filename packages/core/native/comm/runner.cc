// The waiting, header exchange and failure reporting that every op shares.
#include "runner.h"

#include <cstring>
#include <sched.h>

#include "ds/comm/sync.h"

namespace ds::comm {

namespace {
constexpr int64_t kSliceUs = 20000;      // how long one futex sleep may last
constexpr int64_t kLivenessUs = 100000;  // how often sleeping waiters check peer processes

std::atomic<uint32_t>* stepWord(Group& g, int q) { return &g.ctl(q)->step; }
std::atomic<uint32_t>* stepWaiters(Group& g, int q) { return &g.ctl(q)->stepWaiters; }

std::string listRanks(const std::vector<int>& r) {
  std::string s;
  for (size_t i = 0; i < r.size(); i++) s += (i ? ", " : "") + std::to_string(r[i]);
  return s;
}
}  // namespace

const char* opName(OpKind k) {
  static const char* names[] = {"barrier", "allReduce", "reduceScatter", "allGather", "broadcast", "allToAll", "send", "recv", "connect"};
  return names[static_cast<int>(k)];
}
const char* dtypeName(DType d) {
  static const char* names[] = {"f32", "bf16", "f16", "i32", "u8"};
  return names[static_cast<int>(d)];
}

Runner::Runner(Group& g, Op& op) : g_(g), op_(op), deadline_(nowUs() + op.timeoutUs), esz_(dtypeSize(op.dtype)) {
  for (int q = 0; q < g.size_; q++)
    if (q != g.rank_) others_.push_back(q);
}

bool Runner::fail(ErrKind kind, const std::string& message, std::vector<int> missing) {
  op_.err = kind;
  op_.message = message;
  op_.missing = std::move(missing);
  g_.abortGroup(std::string(opName(op_.kind)) + " seq " + std::to_string(op_.seq) + ": " + message, kind);
  return false;
}

// Checks what can end a wait early; false (with the op failed) when one did.
bool Runner::health(const std::vector<int>& watch, int64_t& nextLiveness) {
  if (g_.stopping_.load()) return fail(ErrKind::Aborted, "the process group was destroyed while the op was in flight");
  for (int q = 0; q < g_.size_; q++) {
    const uint32_t kind = q == g_.rank_ ? 0 : g_.ctl(q)->abort.load(std::memory_order_acquire);
    if (kind == 0) continue;
    char reason[sizeof(RankCtl::reason)];
    std::memcpy(reason, g_.ctl(q)->reason, sizeof reason);
    reason[sizeof reason - 1] = 0;
    // A peer's timeout or a dead process is reported as that kind here too, so every survivor
    // gets the same error class; the missing ranks are the ones this rank still waits for.
    const ErrKind k = kind == static_cast<uint32_t>(ErrKind::Timeout) || kind == static_cast<uint32_t>(ErrKind::PeerDead) ? static_cast<ErrKind>(kind) : ErrKind::Aborted;
    return fail(k, "rank " + std::to_string(q) + " failed first (" + reason + ")", k == ErrKind::Aborted ? std::vector<int>{q} : watch);
  }
  const int64_t now = nowUs();
  if (now >= nextLiveness) {
    nextLiveness = now + kLivenessUs;
    for (int q : watch) {
      const int pid = g_.ctl(q)->pid;
      if (!processAlive(pid)) return fail(ErrKind::PeerDead, "rank " + std::to_string(q) + " (pid " + std::to_string(pid) + ") exited", {q});
    }
  }
  return true;
}

bool Runner::waitRanks(const std::vector<int>& ranks, std::atomic<uint32_t>* (*word)(Group&, int), std::atomic<uint32_t>* (*waiters)(Group&, int),
                       uint32_t target, const char* what) {
  int64_t nextLiveness = nowUs() + kLivenessUs;
  for (int q : ranks) {
    // pollFirst(): a caller with nothing else to do polls before it sleeps, so a core left idle is
    // not given up to the hypervisor, whose wake-up of an idle vCPU takes 0.2-5 ms on the VMs we use.
    for (int i = 0; pollUntil_ != 0 && !reached(word(g_, q)->load(std::memory_order_acquire), target); i++) {
      if ((i & 63) == 63) {
        if (nowUs() >= pollUntil_) break;
        sched_yield();
      }
      cpuRelax();
    }
    while (!waitSlice(word(g_, q), waiters(g_, q), target, g_.spin_, kSliceUs)) {
      std::vector<int> pending;
      for (int p : ranks)
        if (!reached(word(g_, p)->load(), target)) pending.push_back(p);
      if (!health(pending, nextLiveness)) return false;
      if (nowUs() >= deadline_) {
        return fail(ErrKind::Timeout, std::string("timed out after ") + std::to_string(op_.timeoutUs / 1000) + " ms " + what + "; rank(s) " + listRanks(pending) +
                                          " did not arrive",
                    pending);
      }
    }
  }
  return true;
}

bool Runner::syncAll() {
  const uint32_t target = ++g_.step_;
  RankCtl* me = g_.ctl(g_.rank_);
  publish(&me->step, &me->stepWaiters, target);
  return waitRanks(others_, stepWord, stepWaiters, target, "waiting for peers");
}

bool Runner::postHeaderAndSync(int staged, int64_t regId, uint64_t regOffset) {
  OpHeader& h = g_.ctl(g_.rank_)->hdr[op_.seq & 1];
  h.seq = op_.seq;
  h.kind = static_cast<int32_t>(op_.kind);
  h.dtype = static_cast<int32_t>(op_.dtype);
  h.redop = static_cast<int32_t>(op_.redop);
  h.count = op_.count;
  h.root = op_.root;
  h.staged = staged;
  h.regId = regId;
  h.regOffset = regOffset;
  return syncAll() && checkHeaders();
}

// Every rank compares every header with its own, so all ranks reach the same verdict.
bool Runner::checkHeaders() {
  const OpHeader& mine = headerOf(g_.rank_);
  for (int q : others_) {
    const OpHeader& h = headerOf(q);
    std::string diff;
    if (h.seq != mine.seq) diff = "is at op sequence " + std::to_string(h.seq);
    else if (h.kind != mine.kind) diff = std::string("called ") + opName(static_cast<OpKind>(h.kind));
    else if (h.dtype != mine.dtype) diff = std::string("passed dtype ") + dtypeName(static_cast<DType>(h.dtype));
    else if (h.count != mine.count) diff = "passed " + std::to_string(h.count) + " elements";
    else if (h.redop != mine.redop) diff = "used a different reduce op";
    else if (h.root != mine.root) diff = "named root " + std::to_string(h.root);
    if (diff.empty()) continue;
    return fail(ErrKind::Mismatch,
                "rank " + std::to_string(q) + " " + diff + " where rank " + std::to_string(g_.rank_) + " called " + opName(op_.kind) + " with " +
                    std::to_string(op_.count) + " " + dtypeName(op_.dtype) + " elements (root " + std::to_string(op_.root) + ")",
                {q});
  }
  return true;
}

bool Runner::findRegistration(const uint8_t* p, size_t bytes, Registration& out, uint64_t& offset) {
  std::lock_guard<std::mutex> lock(g_.regMu_);
  for (const auto& reg : g_.regs_) {
    if (p >= reg.own && p + bytes <= reg.own + reg.bytes) {
      out = reg;
      offset = static_cast<uint64_t>(p - reg.own);
      return true;
    }
  }
  return false;
}

void Runner::run() {
  if (g_.failed_.load()) {
    std::lock_guard<std::mutex> lock(g_.failMu_);
    op_.err = ErrKind::Aborted;
    op_.message = "the group is unusable after an earlier failure (" + g_.failure_ + "); destroy it and create a new one";
    return;
  }
  if (g_.tcp_) {
    switch (op_.kind) {
      case OpKind::Connect: tcpConnect(); break;
      case OpKind::Barrier: tcpHeaders(0); break;
      case OpKind::AllReduce: tcpAllReduce(); break;
      case OpKind::ReduceScatter: tcpReduceScatter(); break;
      case OpKind::AllGather: tcpAllGather(); break;
      case OpKind::Broadcast: tcpBroadcast(); break;
      case OpKind::AllToAll: tcpAllToAll(); break;
      case OpKind::Send: tcpSend(); break;
      case OpKind::Recv: tcpRecv(); break;
    }
    return;
  }
  switch (op_.kind) {
    case OpKind::Connect: fail(ErrKind::Invalid, "connect is for TCP groups"); break;
    case OpKind::Barrier: barrier(); break;
    case OpKind::AllReduce: allReduce(); break;
    case OpKind::ReduceScatter: reduceScatter(); break;
    case OpKind::AllGather: allGather(); break;
    case OpKind::Broadcast: broadcast(); break;
    case OpKind::AllToAll: allToAll(); break;
    case OpKind::Send: op_.ackOnly ? sendAck() : send(); break;
    case OpKind::Recv: recv(); break;
  }
}

void Group::run(Op* op) { Runner(*this, *op).run(); }

}  // namespace ds::comm
