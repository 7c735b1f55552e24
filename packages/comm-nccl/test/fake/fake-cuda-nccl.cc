// A stand-in for libcudart and libnccl in one shared object, for testing the addon's worker, watchdog
// and error paths on machines without a GPU (c10d's fake-backend idea, one level down). "Device"
// memory is host memory from malloc; a "kernel" completes when it is queued, unless a fault is
// injected; NCCL runs a world of one rank (every collective is a copy). It checks what the addon
// hands NCCL (the config struct, pointers it allocated) and logs the lifecycle calls.
//
// Faults, read from the environment at each call:
//   FAKE_NCCL_HANG_AT=k      the k-th collective (1-based) never finishes on the GPU, until ncclCommAbort
//   FAKE_NCCL_ASYNC_AT=k     from the k-th collective on, ncclCommGetAsyncError reports ncclRemoteError
//   FAKE_NCCL_LOG=path       append one line per lifecycle call (init, finalize, destroy, abort)
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

namespace {

struct Stream {
  std::atomic<bool> blocked{false};
};
struct Event {
  std::atomic<bool> done{true};
};
struct Comm {
  int pollsLeft = 3;  // set-up and each call settle after a few polls (exercises ncclInProgress)
  bool aborted = false;
  Stream* hung = nullptr;
};

std::mutex mu;
std::map<uintptr_t, size_t> allocations;
std::atomic<int> collectives{0};
Stream legacy;

int envInt(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : 0;
}

void logLine(const char* what) {
  const char* path = std::getenv("FAKE_NCCL_LOG");
  if (!path) return;
  std::lock_guard<std::mutex> lock(mu);
  if (FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%s\n", what);
    std::fclose(f);
  }
}

Stream* streamOf(void* s) { return s ? static_cast<Stream*>(s) : &legacy; }

bool isDevice(const void* p) {
  std::lock_guard<std::mutex> lock(mu);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = allocations.upper_bound(a);
  if (it == allocations.begin()) return false;
  --it;
  return a >= it->first && a < it->first + (it->second ? it->second : 1);
}

struct UniqueId {
  char internal[128];
};

struct Config {
  size_t size;
  unsigned magic, version;
  int blocking;
};

}  // namespace

extern "C" {

// ---- CUDA runtime ----
int cudaGetDeviceCount(int* n) { *n = 1; return 0; }
int cudaSetDevice(int d) { return d == 0 ? 0 : 101; }
int cudaDriverGetVersion(int* v) { *v = 13000; return 0; }
int cudaRuntimeGetVersion(int* v) { *v = 13000; return 0; }
const char* cudaGetErrorString(int e) { return e == 600 ? "device not ready" : "fake CUDA error"; }
int cudaGetLastError() { return 0; }
int cudaStreamCreateWithFlags(void** s, unsigned) { *s = new Stream(); return 0; }
int cudaStreamDestroy(void* s) { delete static_cast<Stream*>(s); return 0; }
int cudaStreamSynchronize(void*) { return 0; }
int cudaStreamWaitEvent(void*, void*, unsigned) { return 0; }
int cudaEventCreate(void** e) { *e = new Event(); return 0; }
int cudaEventDestroy(void* e) { delete static_cast<Event*>(e); return 0; }
int cudaEventRecord(void* e, void* s) {
  static_cast<Event*>(e)->done = !streamOf(s)->blocked.load();
  return 0;
}
int cudaEventQuery(void* e) { return static_cast<Event*>(e)->done.load() ? 0 : 600; }
int cudaEventElapsedTime(float* ms, void*, void*) { *ms = 0.25f; return 0; }
int cudaPointerGetAttributes(void* attr, const void* p) {
  int* a = static_cast<int*>(attr);
  a[0] = isDevice(p) ? 2 : 0;  // cudaMemoryTypeDevice, else unregistered host memory
  a[1] = isDevice(p) ? 0 : -2;
  return 0;
}
int cudaMalloc(void** p, size_t n) {
  *p = std::malloc(n ? n : 1);
  std::lock_guard<std::mutex> lock(mu);
  allocations[reinterpret_cast<uintptr_t>(*p)] = n;
  return 0;
}
int cudaFree(void* p) {
  {
    std::lock_guard<std::mutex> lock(mu);
    allocations.erase(reinterpret_cast<uintptr_t>(p));
  }
  std::free(p);
  return 0;
}
int cudaMallocAsync(void** p, size_t n, void*) { return cudaMalloc(p, n); }
int cudaFreeAsync(void* p, void*) { return cudaFree(p); }
int cudaMemcpy(void* d, const void* s, size_t n, int) { std::memmove(d, s, n); return 0; }
int cudaMemcpyAsync(void* d, const void* s, size_t n, int, void*) { std::memmove(d, s, n); return 0; }

// ---- NCCL (one rank) ----
int ncclGetVersion(int* v) { *v = 22703; return 0; }
int ncclGetUniqueId(void* id) { std::memset(id, 7, 128); return 0; }
const char* ncclGetErrorString(int r) { return r == 6 ? "remote process exited or there was a network error" : r == 5 ? "invalid usage" : "fake NCCL error"; }
const char* ncclGetLastError(void*) { return ""; }

int ncclCommInitRankConfig(void** comm, int nranks, UniqueId id, int rank, Config* config) {
  if (id.internal[0] != 7 || id.internal[127] != 7) return 4;  // not the id ncclGetUniqueId made
  if (!config || config->magic != 0xcafebeef || config->version != 21400 || config->size != sizeof(Config) || config->blocking != 0) {
    logLine("init: bad config");
    return 4;  // ncclInvalidArgument
  }
  if (nranks != 1 || rank != 0) return 5;  // the fake is a world of one
  *comm = new Comm();
  logLine("init");
  return 7;  // ncclInProgress: the addon must poll ncclCommGetAsyncError
}

int ncclCommGetAsyncError(void* c, int* state) {
  Comm* comm = static_cast<Comm*>(c);
  const int asyncAt = envInt("FAKE_NCCL_ASYNC_AT");
  if (asyncAt > 0 && collectives.load() >= asyncAt) *state = 6;
  else if (comm->pollsLeft > 0) {
    comm->pollsLeft--;
    *state = 7;
  } else *state = 0;
  return 0;
}

int ncclCommFinalize(void* c) { static_cast<Comm*>(c)->pollsLeft = 2; logLine("finalize"); return 7; }
int ncclCommDestroy(void* c) { delete static_cast<Comm*>(c); logLine("destroy"); return 0; }
int ncclCommAbort(void* c) {
  Comm* comm = static_cast<Comm*>(c);
  if (comm->hung) comm->hung->blocked = false;
  delete comm;
  logLine("abort");
  return 0;
}

static bool inGroup = false, groupQueued = false;
int ncclGroupStart() { inGroup = true; groupQueued = false; return 0; }
int ncclGroupEnd() {
  inGroup = false;
  return groupQueued ? 7 : 0;  // a non-blocking group settles through ncclCommGetAsyncError
}

static int collective(void* c, void* s, void* out, const void* in, size_t bytes) {
  Comm* comm = static_cast<Comm*>(c);
  if ((in && !isDevice(in)) || (out && !isDevice(out))) return 4;  // the addon passed a host pointer
  if (bytes && out != in) std::memmove(out, in, bytes);
  const int k = ++collectives;
  if (k == envInt("FAKE_NCCL_HANG_AT")) {
    comm->hung = streamOf(s);
    comm->hung->blocked = true;
  }
  comm->pollsLeft = 1;
  if (inGroup) {
    groupQueued = true;
    return 0;
  }
  return 7;
}

static size_t esz(int dt) { return dt == 7 || dt == 2 ? 4 : dt == 6 || dt == 9 ? 2 : 1; }

int ncclAllReduce(const void* in, void* out, size_t n, int dt, int, void* c, void* s) { return collective(c, s, out, in, n * esz(dt)); }
int ncclReduceScatter(const void* in, void* out, size_t n, int dt, int, void* c, void* s) { return collective(c, s, out, in, n * esz(dt)); }
int ncclAllGather(const void* in, void* out, size_t n, int dt, void* c, void* s) { return collective(c, s, out, in, n * esz(dt)); }
int ncclBroadcast(const void* in, void* out, size_t n, int dt, int, void* c, void* s) { return collective(c, s, out, in, n * esz(dt)); }

// A send to self is held until the matching receive of the same group (allToAll with one rank).
static const void* pendingSend = nullptr;
int ncclSend(const void* in, size_t, int, int, void*, void*) {
  if (!isDevice(in)) return 4;
  pendingSend = in;
  return 0;
}
int ncclRecv(void* out, size_t n, int dt, int, void* c, void* s) {
  const void* in = pendingSend;
  pendingSend = nullptr;
  return collective(c, s, out, in, n * esz(dt));
}

}  // extern "C"
