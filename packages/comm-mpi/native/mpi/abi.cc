// dlopen of libmpi.so.40 and the symbol table of abi.h. RTLD_GLOBAL because Open MPI's plugins
// (mca_*.so), which it dlopens itself, resolve symbols of libmpi from the global scope.
#include "ds/mpi/abi.h"

#include <dlfcn.h>

#include <cstring>
#include <vector>

namespace ds::mpi {

namespace {
template <typename F>
bool sym(const Abi& abi, F& slot, const char* name, std::string& missing) {
  void* p = dlsym(abi.lib, name);
  if (!p && missing.empty()) missing = name;
  slot = reinterpret_cast<F>(p);
  return p != nullptr;
}
}  // namespace

bool loadAbi(Abi& abi, std::string& why, const std::string& library) {
  std::vector<std::string> candidates = {"libmpi.so.40", "/usr/lib/x86_64-linux-gnu/libmpi.so.40", "/usr/lib/x86_64-linux-gnu/openmpi/lib/libmpi.so.40",
                                         "/usr/lib64/openmpi/lib/libmpi.so.40", "/opt/openmpi/lib/libmpi.so.40", "/usr/local/lib/libmpi.so.40"};
  if (!library.empty()) candidates = {library};
  std::string firstError;
  for (const std::string& c : candidates) {
    abi.lib = dlopen(c.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (abi.lib) {
      abi.path = c;
      break;
    }
    if (firstError.empty()) {
      const char* e = dlerror();
      firstError = e ? e : "not found";
    }
  }
  if (!abi.lib) {
    // An MPICH-ABI library (MPICH, Intel MPI, MVAPICH) encodes handles as integers: not this ABI.
    if (void* mpich = library.empty() ? dlopen("libmpi.so.12", RTLD_NOW | RTLD_LOCAL) : nullptr) {
      dlclose(mpich);
      why = "the mpi backend found an MPICH-ABI library (libmpi.so.12: MPICH, Intel MPI or MVAPICH), which @ds/comm-mpi does not support; install Open MPI 4 or 5 (Debian: apt-get install openmpi-bin libopenmpi-dev) so that libmpi.so.40 is on the library path";
      return false;
    }
    why = "the mpi backend needs Open MPI's libmpi.so.40, which could not be loaded (" + firstError +
          "); install Open MPI 4 or 5 (Debian: apt-get install openmpi-bin libopenmpi-dev) or add its lib directory to LD_LIBRARY_PATH";
    return false;
  }
  std::string missing;
  sym(abi, abi.Init_thread, "MPI_Init_thread", missing);
  sym(abi, abi.Initialized, "MPI_Initialized", missing);
  sym(abi, abi.Finalize, "MPI_Finalize", missing);
  sym(abi, abi.Comm_rank, "MPI_Comm_rank", missing);
  sym(abi, abi.Comm_size, "MPI_Comm_size", missing);
  sym(abi, abi.Comm_group, "MPI_Comm_group", missing);
  sym(abi, abi.Group_incl, "MPI_Group_incl", missing);
  sym(abi, abi.Group_free, "MPI_Group_free", missing);
  sym(abi, abi.Comm_create_group, "MPI_Comm_create_group", missing);
  sym(abi, abi.Comm_dup, "MPI_Comm_dup", missing);
  sym(abi, abi.Comm_free, "MPI_Comm_free", missing);
  sym(abi, abi.Comm_set_errhandler, "MPI_Comm_set_errhandler", missing);
  sym(abi, abi.Iallreduce, "MPI_Iallreduce", missing);
  sym(abi, abi.Ireduce_scatter_block, "MPI_Ireduce_scatter_block", missing);
  sym(abi, abi.Iallgather, "MPI_Iallgather", missing);
  sym(abi, abi.Ibcast, "MPI_Ibcast", missing);
  sym(abi, abi.Ialltoall, "MPI_Ialltoall", missing);
  sym(abi, abi.Ibarrier, "MPI_Ibarrier", missing);
  sym(abi, abi.Isend, "MPI_Isend", missing);
  sym(abi, abi.Irecv, "MPI_Irecv", missing);
  sym(abi, abi.Test, "MPI_Test", missing);
  sym(abi, abi.Cancel, "MPI_Cancel", missing);
  sym(abi, abi.Wait, "MPI_Wait", missing);
  sym(abi, abi.Op_create, "MPI_Op_create", missing);
  sym(abi, abi.Error_string, "MPI_Error_string", missing);
  sym(abi, abi.Get_library_version, "MPI_Get_library_version", missing);
  sym(abi, abi.commWorld, "ompi_mpi_comm_world", missing);
  sym(abi, abi.tFloat, "ompi_mpi_float", missing);
  sym(abi, abi.tInt32, "ompi_mpi_int32_t", missing);
  sym(abi, abi.tUint8, "ompi_mpi_uint8_t", missing);
  sym(abi, abi.tUint16, "ompi_mpi_uint16_t", missing);
  sym(abi, abi.tByte, "ompi_mpi_byte", missing);
  sym(abi, abi.opSum, "ompi_mpi_op_sum", missing);
  sym(abi, abi.opMax, "ompi_mpi_op_max", missing);
  sym(abi, abi.opMin, "ompi_mpi_op_min", missing);
  sym(abi, abi.errorsReturn, "ompi_mpi_errors_return", missing);
  if (!missing.empty()) {
    why = abi.path + " was loaded but lacks " + missing + ", so it is not an Open MPI 4/5 library (the only MPI ABI @ds/comm-mpi supports); install Open MPI 4 or 5";
    dlclose(abi.lib);
    abi.lib = nullptr;
    return false;
  }
  char buf[8192];
  int len = 0;
  if (abi.Get_library_version(buf, &len) == 0) {
    abi.version.assign(buf, static_cast<size_t>(len > 0 ? len : 0));
    const size_t nl = abi.version.find_first_of(",\n");
    if (nl != std::string::npos) abi.version.resize(nl);
  }
  return true;
}

std::string errorText(const Abi& abi, int code) {
  char buf[1024];
  int len = 0;
  if (abi.Error_string && abi.Error_string(code, buf, &len) == 0) return std::string(buf, static_cast<size_t>(len > 0 ? len : 0));
  return "MPI error " + std::to_string(code);
}

}  // namespace ds::mpi
