// Finding and loading cuBLASLt at run time (see cublaslt.h). Built without CUDA headers.
#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cublaslt.h"

namespace ds {
namespace cuda {
namespace lt {
namespace {

// The directories to try after the loader's own search: the list src/native/nvidia-libs.ts makes
// (LD_LIBRARY_PATH, CUDA installs, system directories, Python's nvidia-* wheels), existing ones only,
// in order, without repeats. One list in TypeScript, so that ds-report shows what is tried here.
std::vector<std::string> searchDirs(const std::vector<std::string>& extra) {
  std::vector<std::string> dirs;
  for (const auto& d : extra)
    if (std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
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
