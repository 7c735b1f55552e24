// gemm through cuBLASLt: C = alpha * op(A) op(B) + beta * C, row-major, strided batches, f32 or
// bf16 inputs with f32 accumulation (CUBLAS_COMPUTE_32F: no TF32 shortcut, as the cpu kernel), f32
// or bf16 output. cuBLASLt is column-major, so the row-major product C = op(A) op(B) is computed as
// the column-major C^T = op(B)^T op(A)^T: the operands swap places and keep their transposes.
// Each distinct shape gets a plan (descriptors and the heuristic's first algorithm) made once.
#include <map>
#include <tuple>

#include "cublaslt.h"
#include "device.cuh"

namespace ds {
namespace cuda {

namespace {

using PlanKey = std::tuple<int, int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, uint32_t,
                           uint32_t, uint32_t>;

struct Plan {
  lt::MatmulDesc desc = nullptr;
  lt::Layout a = nullptr, b = nullptr, c = nullptr;
  lt::Algo algo{};
};

constexpr size_t kWorkspaceBytes = 32u << 20;  // what NVIDIA recommends for Hopper
constexpr size_t kMaxPlans = 1024;

}  // namespace

struct Cublas {
  lt::Api api;
  lt::Handle handle = nullptr;
  void* workspace = nullptr;
  std::map<PlanKey, Plan> plans;
};

namespace {

void check(const lt::Api& api, lt::Status s, const char* what) {
  if (s == lt::kSuccess) return;
  const char* text = api.statusString ? api.statusString(s) : "unknown";
  throw Error(s == lt::kNotSupported ? Error::Unsupported : Error::Cuda,
              std::string("cuBLASLt ") + what + " failed: " + text + " (status " + std::to_string(s) + ")");
}

void destroyPlan(const lt::Api& api, Plan& p) {
  if (p.desc) api.descDestroy(p.desc);
  for (lt::Layout l : {p.a, p.b, p.c})
    if (l) api.layoutDestroy(l);
}

// Largest power of two (at most 256) dividing every address the batch touches.
uint32_t alignment(const void* p, int64_t stride, int elemBytes, int64_t batch) {
  uint64_t bits = reinterpret_cast<uint64_t>(p);
  if (batch > 1) bits |= static_cast<uint64_t>(stride) * elemBytes;
  uint32_t a = 256;
  while (a > 1 && (bits & (a - 1))) a >>= 1;
  return a;
}

lt::Layout layout(const lt::Api& api, int type, uint64_t rows, uint64_t cols, int64_t ld, int64_t batch, int64_t stride) {
  lt::Layout l = nullptr;
  check(api, api.layoutCreate(&l, type, rows, cols, ld), "layout create");
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    check(api, api.layoutSetAttribute(l, lt::kLayoutBatchCount, &count, sizeof count), "batch count");
    check(api, api.layoutSetAttribute(l, lt::kLayoutStridedBatchOffset, &stride, sizeof stride), "batch stride");
  }
  return l;
}

Plan& planFor(Cublas& cb, const GemmParams& p) {
  const int inBytes = dtypeBytes(p.dtype), outBytes = dtypeBytes(p.outDtype);
  const uint32_t alA = alignment(p.a, p.strideA, inBytes, p.batch), alB = alignment(p.b, p.strideB, inBytes, p.batch);
  const uint32_t alC = alignment(p.c, p.strideC, outBytes, p.batch);
  const PlanKey key{static_cast<int>(p.dtype), static_cast<int>(p.outDtype), p.transA, p.transB, p.batch, p.m, p.n, p.k,
                    p.strideA, p.strideB, p.strideC, alA, alB, alC};
  auto it = cb.plans.find(key);
  if (it != cb.plans.end()) return it->second;
  const lt::Api& api = cb.api;
  if (cb.plans.size() >= kMaxPlans) {
    for (auto& [k, plan] : cb.plans) destroyPlan(api, plan);
    cb.plans.clear();
  }
  const int inType = p.dtype == DType::F32 ? lt::kR32F : lt::kR16BF;
  const int outType = p.outDtype == DType::F32 ? lt::kR32F : lt::kR16BF;
  Plan plan;
  try {
    check(api, api.descCreate(&plan.desc, lt::kCompute32F, lt::kR32F), "matmul desc create");
    // Column-major view: first operand is B (op(B)^T is n x k), second is A (op(A)^T is k x m).
    const int32_t opFirst = p.transB ? lt::kOpT : lt::kOpN, opSecond = p.transA ? lt::kOpT : lt::kOpN;
    check(api, api.descSetAttribute(plan.desc, lt::kDescTransA, &opFirst, sizeof opFirst), "transA");
    check(api, api.descSetAttribute(plan.desc, lt::kDescTransB, &opSecond, sizeof opSecond), "transB");
    // B row-major [k, n] is column-major n x k (ld n); transposed, B is [n, k]: k x n (ld k).
    plan.a = p.transB ? layout(api, inType, p.k, p.n, p.k, p.batch, p.strideB) : layout(api, inType, p.n, p.k, p.n, p.batch, p.strideB);
    plan.b = p.transA ? layout(api, inType, p.m, p.k, p.m, p.batch, p.strideA) : layout(api, inType, p.k, p.m, p.k, p.batch, p.strideA);
    plan.c = layout(api, outType, p.n, p.m, p.n, p.batch, p.strideC);
    lt::Preference pref = nullptr;
    check(api, api.prefCreate(&pref), "preference create");
    const uint64_t ws = kWorkspaceBytes;
    const uint32_t aligns[4] = {alB, alA, alC, alC};  // the column-major A is our B, and so on
    lt::Status s = api.prefSetAttribute(pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof ws);
    const int attrs[4] = {lt::kPrefMinAlignmentA, lt::kPrefMinAlignmentB, lt::kPrefMinAlignmentC, lt::kPrefMinAlignmentD};
    for (int i = 0; i < 4 && s == lt::kSuccess; ++i) s = api.prefSetAttribute(pref, attrs[i], &aligns[i], sizeof aligns[i]);
    lt::HeuristicResult result{};
    int found = 0;
    if (s == lt::kSuccess) s = api.heuristic(cb.handle, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, 1, &result, &found);
    api.prefDestroy(pref);
    check(api, s, "heuristic");
    if (found == 0) {
      throw Error(Error::Unsupported, "cuBLASLt has no algorithm for gemm m=" + std::to_string(p.m) + " n=" + std::to_string(p.n) +
                                          " k=" + std::to_string(p.k) + " batch=" + std::to_string(p.batch) +
                                          " with these dtypes and alignments");
    }
    plan.algo = result.algo;
  } catch (...) {
    destroyPlan(api, plan);
    throw;
  }
  return cb.plans.emplace(key, plan).first->second;
}

void matmul(Device& d, const GemmParams& p) {
  Cublas& cb = *d.cublas;
  Plan& plan = planFor(cb, p);
  check(cb.api,
        cb.api.matmul(cb.handle, plan.desc, &p.alpha, p.b, plan.a, p.a, plan.b, &p.beta, p.c, plan.c, p.c, plan.c, &plan.algo,
                      cb.workspace, kWorkspaceBytes, d.compute),
        "matmul");
}

}  // namespace

Cublas* createCublas(Device& d) {
  auto cb = std::make_unique<Cublas>();
  std::string why;
  if (!lt::load(d.libDirs, &cb->api, &why)) throw Error(Error::Cuda, "cuBLASLt could not be loaded: " + why);
  check(cb->api, cb->api.create(&cb->handle), "create");
  cb->workspace = d.allocator->alloc(kWorkspaceBytes);
  return cb.release();
}

void destroyCublas(Cublas* cb) {
  if (!cb) return;
  for (auto& [k, plan] : cb->plans) destroyPlan(cb->api, plan);
  if (cb->handle) cb->api.destroy(cb->handle);
  delete cb;  // the library stays loaded: other handles (another environment) may use it
}

std::string describeCublas(Device& d) {
  const size_t v = d.cublas->api.getVersion();
  return "cuBLASLt " + std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100) +
         " (" + d.cublas->api.path + ")";
}

void gemm(Device& d, const GemmParams& p) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  const int64_t mn = p.m * p.n;
  auto eachC = [&](auto&& f) {
    for (int64_t i = 0; i < p.batch; ++i) f(static_cast<unsigned char*>(p.c) + i * p.strideC * dtypeBytes(p.outDtype));
  };
  if (p.k == 0) {  // an empty sum: C = beta * C, and beta = 0 never reads C
    eachC([&](void* c) {
      if (p.beta == 0.0f) fill(d, p.outDtype, c, mn, 0.0);
      else scale(d, p.outDtype, c, c, mn, p.beta, 0.0f);
    });
    return;
  }
  if (p.dtype == DType::F32 && p.outDtype == DType::BF16) {
    // cuBLASLt has no f32-in bf16-out product: compute into f32 scratch, round once into C.
    auto* tmp = static_cast<float*>(d.scratchFor(static_cast<size_t>(p.batch * mn) * 4));
    if (p.beta != 0.0f) {
      int64_t i = 0;
      eachC([&](void* c) { cast(d, DType::BF16, c, DType::F32, tmp + (i++) * mn, mn); });
    }
    GemmParams q = p;
    q.outDtype = DType::F32;
    q.c = tmp;
    q.strideC = mn;
    matmul(d, q);
    int64_t i = 0;
    eachC([&](void* c) { cast(d, DType::F32, tmp + (i++) * mn, DType::BF16, c, mn); });
    return;
  }
  matmul(d, p);
}

}  // namespace cuda
}  // namespace ds
