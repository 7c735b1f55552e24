// The reductions MPI does not have in the form the cpu backend defines them: bf16/f16 sum, max and
// min (16-bit words reduced in f32, rounded to the dtype at each pairwise step) and a wrapping u8
// sum, as user-defined MPI ops; and the division that turns a sum into an average. Their
// specification is @ds/core's referenceReduce (core's src/comm/reference.ts): the tests compare the
// mpi backend with the cpu backend, which is tested against it, bit for bit.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ds/mpi/abi.h"

namespace ds::mpi {

enum class OpKind : int { Barrier = 0, AllReduce, ReduceScatter, AllGather, Broadcast, AllToAll, Send, Recv, CreateComm, FreeComm };
enum class DType : int { F32 = 0, BF16, F16, I32, U8 };
enum class RedOp : int { Sum = 0, Avg, Max, Min };
/** Error kinds the TS side maps to classes: 1 timeout, 2 peer exited, 3 aborted, 4 MPI error, 5 setup. */
enum class ErrKind : int { None = 0, Timeout = 1, PeerDead = 2, Aborted = 3, Mpi = 4, Setup = 5 };

size_t dtypeSize(DType d);

/** User-defined ops, created on the MPI thread after MPI_Init ([0] bf16, [1] f16). */
struct UserOps {
  Handle sum16[2] = {nullptr, nullptr};
  Handle max16[2] = {nullptr, nullptr};
  Handle min16[2] = {nullptr, nullptr};
  Handle sumU8 = nullptr;
};

void createUserOps(const Abi& abi, UserOps& ops);

/** The MPI op for a reduction of `dtype` (avg reduces as a sum, then averageInPlace). */
Handle mpiOpFor(const Abi& abi, const UserOps& ops, DType dtype, RedOp redop);

/** out[i] /= size in f32, rounded once to the dtype (float dtypes only; integers have no avg). */
void averageInPlace(DType dtype, uint8_t* out, uint64_t count, int size);

}  // namespace ds::mpi
