// Finding and loading cuBLASLt at run time (see cublaslt.h). Built without CUDA headers.
#include <dlfcn.h>
#include <glob.h>
#include <link.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cublaslt.h"

namespace ds {
namespace cuda {
namespace lt {
namespace {

// Directories a pattern names that exist, newest-looking last-sorted first (cuda-13.0 before cuda-12.4).
std::vector<std::string> expand(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (glob(pattern.c_str(), GLOB_ONLYDIR, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  std::sort(out.rbegin(), out.rend());
  return out;
}

std::vector<std::string> searchDirs(const std::vector<std::string>& extra) {
  std::vector<std::string> patterns(extra);
  patterns.insert(patterns.end(), {"/usr/local/cuda/lib64", "/usr/local/cuda-*/lib64", "/usr/local/cuda/targets/*/lib",
                                   "/usr/lib/x86_64-linux-gnu"});
  // Python's nvidia-* wheels: nvidia-cublas(-cu12) installs nvidia/cublas/lib, the CUDA 13 wheels nvidia/cu13/lib.
  for (const char* site : {"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
                           "/usr/lib/python3/dist-packages", "/usr/lib/python3*/site-packages",
                           "/opt/conda/lib/python3*/site-packages", "/root/.local/lib/python3*/site-packages",
                           "/home/*/.local/lib/python3*/site-packages", "/root/.pyenv/versions/*/lib/python3*/site-packages"}) {
    patterns.push_back(std::string(site) + "/nvidia/*/lib");
  }
  std::vector<std::string> dirs;
  for (const auto& p : patterns)
    for (auto& d : expand(p))
      if (std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(std::move(d));
  return dirs;
}

template <class Fn>
bool sym(void* lib, const char* name, Fn* out, std::string* missing) {
  *out = reinterpret_cast<Fn>(dlsym(lib, name));
  if (!*out) *missing += std::string(missing->empty() ? "" : ", ") + name;
  return *out != nullptr;
}

bool bind(void* lib, Api* api, std::string* why) {
  std::string missing;
  sym(lib, "cublasLtCreate", &api->create, &missing);
  sym(lib, "cublasLtDestroy", &api->destroy, &missing);
  sym(lib, "cublasLtGetVersion", &api->getVersion, &missing);
  sym(lib, "cublasLtGetStatusString", &api->statusString, &missing);
  sym(lib, "cublasLtMatmulDescCreate", &api->descCreate, &missing);
  sym(lib, "cublasLtMatmulDescDestroy", &api->descDestroy, &missing);
  sym(lib, "cublasLtMatmulDescSetAttribute", &api->descSetAttribute, &missing);
  sym(lib, "cublasLtMatrixLayoutCreate", &api->layoutCreate, &missing);
  sym(lib, "cublasLtMatrixLayoutDestroy", &api->layoutDestroy, &missing);
  sym(lib, "cublasLtMatrixLayoutSetAttribute", &api->layoutSetAttribute, &missing);
  sym(lib, "cublasLtMatmulPreferenceCreate", &api->prefCreate, &missing);
  sym(lib, "cublasLtMatmulPreferenceDestroy", &api->prefDestroy, &missing);
  sym(lib, "cublasLtMatmulPreferenceSetAttribute", &api->prefSetAttribute, &missing);
  sym(lib, "cublasLtMatmulAlgoGetHeuristic", &api->heuristic, &missing);
  sym(lib, "cublasLtMatmul", &api->matmul, &missing);
  if (missing.empty()) return true;
  *why = "it lacks " + missing;
  return false;
}

std::string loadedPath(void* lib, const std::string& fallback) {
  link_map* map = nullptr;
  if (dlinfo(lib, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name && map->l_name[0]) return map->l_name;
  return fallback;
}

}  // namespace

bool load(const std::vector<std::string>& extraDirs, Api* api, std::string* why) {
  const char* sonames[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"};
  const std::vector<std::string> dirs = searchDirs(extraDirs);
  std::string tried;
  for (const char* so : sonames) {
    std::vector<std::string> candidates{so};  // the loader's own search first
    for (const auto& d : dirs) candidates.push_back(d + "/" + so);
    for (const auto& c : candidates) {
      void* lib = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!lib) continue;
      std::string bad;
      if (!bind(lib, api, &bad)) {
        tried += (tried.empty() ? "" : "; ") + c + " (" + bad + ")";
        dlclose(lib);
        continue;
      }
      api->lib = lib;
      api->path = loadedPath(lib, c);
      return true;
    }
  }
  std::string where = "LD_LIBRARY_PATH and the loader's cache";
  for (const auto& d : dirs) where += ", " + d;
  *why = "libcublasLt.so.13/.so.12/.so was not found in " + where + (tried.empty() ? "" : "; unusable: " + tried);
  return false;
}

}  // namespace lt
}  // namespace cuda
}  // namespace ds
