// Socket helpers of the TCP transport (blocking setup; ops use non-blocking I/O with poll).
#pragma once
#include <string>

namespace ds::comm {

/** Listens on host (any port); returns the fd and stores the port; throws std::runtime_error. */
int tcpListen(const std::string& host, int* port);
/** Connects to "host:port"; -1 with errno set on failure. */
int tcpConnectTo(const std::string& addr);
void tcpTune(int fd);
bool setNonBlocking(int fd, bool on);

}  // namespace ds::comm
