// The TCP transport, for ranks on different hosts. Every pair of ranks holds two sockets: one the
// collective thread uses and one for send/recv. Collectives exchange the same op header as the
// shared-memory path, then move data by direct exchange between every pair in chunks: reduceScatter
// style ops send each rank the slice it owns, the owner reduces in rank order (f32, rounded once,
// so results are bit-identical to the shared-memory path), and the allGather phase of chunk k goes
// out together with the scatter phase of chunk k+1 (pipelining). The volume per rank is a ring's,
// 2(n-1)/n of the buffer for allReduce.
#include "tcp.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include "ds/comm/sync.h"
#include "runner.h"

namespace ds::comm {

namespace {
struct Hello {
  int32_t rank;
  int32_t channel;  // 0 collectives, 1 messages from the higher rank, 2 messages to it
};
struct Ack {
  int32_t status;  // 0 ok, else ErrKind::Mismatch
  int32_t dtype;
  uint64_t count;
};

bool splitAddr(const std::string& addr, std::string& host, std::string& port) {
  const size_t at = addr.rfind(':');
  if (at == std::string::npos) return false;
  host = addr.substr(0, at);
  port = addr.substr(at + 1);
  return true;
}
}  // namespace

void tcpTune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int buf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
}

bool setNonBlocking(int fd, bool on) {
  const int flags = fcntl(fd, F_GETFL, 0);
  return flags >= 0 && fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK)) == 0;
}

int tcpListen(const std::string& host, int* port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.empty() ? nullptr : host.c_str(), "0", &hints, &res) != 0 || !res) throw std::runtime_error("cannot resolve listen address '" + host + "'");
  const int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool ok = fd >= 0 && bind(fd, res->ai_addr, res->ai_addrlen) == 0 && listen(fd, 256) == 0;
  const int err = errno;
  freeaddrinfo(res);
  if (!ok) {
    if (fd >= 0) close(fd);
    throw std::runtime_error(std::string("cannot listen for comm connections: ") + std::strerror(err));
  }
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  *port = ntohs(sa.sin_port);
  return fd;
}

int tcpConnectTo(const std::string& addr) {
  std::string host, port;
  if (!splitAddr(addr, host, port)) {
    errno = EINVAL;
    return -1;
  }
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res) {
    errno = EHOSTUNREACH;
    return -1;
  }
  const int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool ok = fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0;
  const int err = errno;
  freeaddrinfo(res);
  if (!ok) {
    if (fd >= 0) close(fd);
    errno = err;
    return -1;
  }
  tcpTune(fd);
  return fd;
}

// Builds the mesh: connect to every lower rank (their listen backlog accepts at once), then
// accept from every higher rank; a hello names the rank and channel of each connection.
bool Runner::tcpConnect() {
  const int n = g_.size_, r = g_.rank_;
  for (int q = 0; q < r; q++) {
    for (int ch = 0; ch < 3; ch++) {
      int fd = -1;
      while ((fd = tcpConnectTo(op_.addrs[q])) < 0) {
        if (g_.stopping_.load()) return fail(ErrKind::Aborted, "the process group was destroyed while connecting");
        if (nowUs() >= deadline_) return fail(ErrKind::Timeout, "could not connect to rank " + std::to_string(q) + " at " + op_.addrs[q] + ": " + std::strerror(errno), {q});
        usleep(20000);
      }
      const Hello h{r, ch};
      if (write(fd, &h, sizeof h) != static_cast<ssize_t>(sizeof h)) {
        close(fd);
        return fail(ErrKind::PeerDead, "lost the connection to rank " + std::to_string(q) + " while connecting", {q});
      }
      (ch == 0 ? g_.collFd_ : ch == 1 ? g_.p2pOut_ : g_.p2pIn_)[q] = fd;
    }
  }
  int expected = 3 * (n - 1 - r);
  while (expected > 0) {
    pollfd p{g_.listenFd_, POLLIN, 0};
    const int64_t left = deadline_ - nowUs();
    if (left <= 0 || g_.stopping_.load()) {
      std::vector<int> missing;
      for (int q = r + 1; q < n; q++)
        if (g_.collFd_[q] < 0 || g_.p2pOut_[q] < 0 || g_.p2pIn_[q] < 0) missing.push_back(q);
      return fail(ErrKind::Timeout, "ranks did not connect in time", missing);
    }
    if (poll(&p, 1, static_cast<int>(left / 1000 < 100 ? left / 1000 + 1 : 100)) <= 0) continue;
    const int fd = accept4(g_.listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    Hello h{};
    if (read(fd, &h, sizeof h) != static_cast<ssize_t>(sizeof h) || h.rank <= r || h.rank >= n || h.channel < 0 || h.channel > 2) {
      close(fd);
      continue;
    }
    tcpTune(fd);
    int& slot = (h.channel == 0 ? g_.collFd_ : h.channel == 1 ? g_.p2pIn_ : g_.p2pOut_)[h.rank];
    if (slot >= 0) close(slot);
    slot = fd;
    expected--;
  }
  for (int q = 0; q < n; q++) {
    if (q == r) continue;
    for (int fd : {g_.collFd_[q], g_.p2pOut_[q], g_.p2pIn_[q]}) setNonBlocking(fd, true);
  }
  return true;
}

bool Runner::exchange(std::vector<Flow>& flows, const char* what, const std::function<bool(const Flow&)>& onRecvDone) {
  std::vector<pollfd> fds;
  std::vector<Flow*> live;
  for (;;) {
    fds.clear();
    live.clear();
    for (auto& f : flows) {
      while (f.seg < f.segs.size() && f.off == f.segs[f.seg].n) f.seg++, f.off = 0;
      if (f.seg == f.segs.size()) continue;
      fds.push_back({f.fd, static_cast<short>(f.send ? POLLOUT : POLLIN), 0});
      live.push_back(&f);
    }
    if (live.empty()) return true;
    if (g_.stopping_.load()) return fail(ErrKind::Aborted, "the process group was destroyed while the op was in flight");
    const int64_t left = deadline_ - nowUs();
    if (left <= 0) {
      std::vector<int> missing;
      for (Flow* f : live)
        if (!f->send) missing.push_back(f->peer);
      if (missing.empty())
        for (Flow* f : live) missing.push_back(f->peer);
      std::string list;
      for (size_t i = 0; i < missing.size(); i++) list += (i ? ", " : "") + std::to_string(missing[i]);
      return fail(ErrKind::Timeout, "timed out after " + std::to_string(op_.timeoutUs / 1000) + " ms " + what + "; rank(s) " + list + " did not arrive", missing);
    }
    if (poll(fds.data(), fds.size(), static_cast<int>(left / 1000 < 100 ? left / 1000 + 1 : 100)) < 0 && errno != EINTR) return fail(ErrKind::Invalid, std::string("poll failed: ") + std::strerror(errno));
    for (size_t i = 0; i < fds.size(); i++) {
      if (!fds[i].revents) continue;
      Flow& f = *live[i];
      Seg& s = f.segs[f.seg];
      const ssize_t k = f.send ? ::send(f.fd, s.p + f.off, s.n - f.off, MSG_NOSIGNAL | MSG_DONTWAIT) : ::recv(f.fd, s.p + f.off, s.n - f.off, MSG_DONTWAIT);
      if (k > 0) {
        f.off += static_cast<size_t>(k);
        if (!f.send && f.off == s.n && f.seg + 1 == f.segs.size() && onRecvDone && !onRecvDone(f)) return false;
        continue;
      }
      if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      return fail(ErrKind::PeerDead, "rank " + std::to_string(f.peer) + " closed its connection (it exited or failed)", {f.peer});
    }
  }
}

bool Runner::tcpHeaders(int32_t staged) {
  OpHeader& mine = g_.tcpHdr_[g_.rank_];
  mine = OpHeader{op_.seq, static_cast<int32_t>(op_.kind), static_cast<int32_t>(op_.dtype), static_cast<int32_t>(op_.redop), op_.count, op_.root, staged, -1, 0};
  std::vector<Flow> flows;
  for (int q : others_) {
    flows.push_back({g_.collFd_[q], q, true, {{reinterpret_cast<uint8_t*>(&mine), sizeof mine}}});
    flows.push_back({g_.collFd_[q], q, false, {{reinterpret_cast<uint8_t*>(&g_.tcpHdr_[q]), sizeof(OpHeader)}}});
  }
  return exchange(flows, "waiting for peers") && checkHeaders();
}

}  // namespace ds::comm
