// The slice of the MPI C API this addon calls, resolved with dlopen/dlsym at run time so that the
// binary has no link-time dependency on MPI and loads on machines without it.
//
// ABI: Open MPI 4/5 (libmpi.so.40). Its handles are pointers: MPI_Comm, MPI_Datatype, MPI_Op,
// MPI_Group and MPI_Request are `struct ompi_*_t*`, and the predefined ones are the addresses of
// exported objects (MPI_COMM_WORLD is `&ompi_mpi_comm_world`, MPI_FLOAT `&ompi_mpi_float`, MPI_SUM
// `&ompi_mpi_op_sum`), so they are found with dlsym like the functions. MPI_STATUS_IGNORE is NULL,
// MPI_THREAD_FUNNELED is 1. The MPICH ABI (libmpi.so.12: MPICH, Intel MPI, MVAPICH) encodes handles
// as integers instead; it is detected and rejected by name (see abi.cc).
#pragma once
#include <string>

namespace ds::mpi {

using Handle = void*;  // every Open MPI handle is a pointer
using UserFn = void (*)(void* in, void* inout, int* len, Handle* dtype);

struct Abi {
  void* lib = nullptr;
  std::string path;
  std::string version;

  int (*Init_thread)(int*, char***, int, int*) = nullptr;
  int (*Initialized)(int*) = nullptr;
  int (*Finalize)() = nullptr;
  int (*Comm_rank)(Handle, int*) = nullptr;
  int (*Comm_size)(Handle, int*) = nullptr;
  int (*Comm_group)(Handle, Handle*) = nullptr;
  int (*Group_incl)(Handle, int, const int*, Handle*) = nullptr;
  int (*Group_free)(Handle*) = nullptr;
  int (*Comm_create_group)(Handle, Handle, int, Handle*) = nullptr;
  int (*Comm_dup)(Handle, Handle*) = nullptr;
  int (*Comm_free)(Handle*) = nullptr;
  int (*Comm_set_errhandler)(Handle, Handle) = nullptr;
  int (*Iallreduce)(const void*, void*, int, Handle, Handle, Handle, Handle*) = nullptr;
  int (*Ireduce_scatter_block)(const void*, void*, int, Handle, Handle, Handle, Handle*) = nullptr;
  int (*Iallgather)(const void*, int, Handle, void*, int, Handle, Handle, Handle*) = nullptr;
  int (*Ibcast)(void*, int, Handle, int, Handle, Handle*) = nullptr;
  int (*Ialltoall)(const void*, int, Handle, void*, int, Handle, Handle, Handle*) = nullptr;
  int (*Ibarrier)(Handle, Handle*) = nullptr;
  int (*Isend)(const void*, int, Handle, int, int, Handle, Handle*) = nullptr;
  int (*Irecv)(void*, int, Handle, int, int, Handle, Handle*) = nullptr;
  int (*Test)(Handle*, int*, void*) = nullptr;
  int (*Cancel)(Handle*) = nullptr;
  int (*Wait)(Handle*, void*) = nullptr;
  int (*Op_create)(UserFn, int, Handle*) = nullptr;
  int (*Error_string)(int, char*, int*) = nullptr;
  int (*Get_library_version)(char*, int*) = nullptr;

  // Predefined handles (addresses of Open MPI's exported objects).
  Handle commWorld = nullptr, tFloat = nullptr, tInt32 = nullptr, tUint8 = nullptr, tUint16 = nullptr, tByte = nullptr;
  Handle opSum = nullptr, opMax = nullptr, opMin = nullptr, errorsReturn = nullptr;

  /** Open MPI's MPI_ANY_SOURCE and MPI_IN_PLACE. */
  static constexpr int kAnySource = -1;
  static void* inPlace() { return reinterpret_cast<void*>(1); }
};

/**
 * Loads `library` (empty: libmpi.so.40 from the loader's path and the usual Open MPI places) and resolves every symbol; on failure returns false and one sentence in `why`
 * saying what is missing and what to install. Safe to call when MPI is absent.
 */
bool loadAbi(Abi& abi, std::string& why, const std::string& library);

/** Open MPI's error code as text. */
std::string errorText(const Abi& abi, int code);

}  // namespace ds::mpi
