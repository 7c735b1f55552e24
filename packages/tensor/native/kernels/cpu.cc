// cpuid / xgetbv based detection, plus the Linux permission request for AMX tile state.
#include "ds/cpu.h"

#include <cpuid.h>
#include <cstring>
#include <sys/syscall.h>
#include <unistd.h>

namespace ds {
namespace {

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

// Linux requires each process to ask for the AMX tile data state before using it
// (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 18). Asking twice is harmless.
bool requestAmxPermission() {
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

}  // namespace

CpuFeatures detectCpu() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  const bool fma = c & (1u << 12);
  const bool f16c = c & (1u << 29);  // the AVX2 paths convert f16 with vcvtph2ps / vcvtps2ph
  if (!osxsave) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymmOs = (xcr0 & 0x6) == 0x6;
  const bool zmmOs = (xcr0 & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool avx2 = b & (1u << 5);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  const bool amxBf16 = d & (1u << 22), amxTile = d & (1u << 24);
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
  const bool bf16 = a1 & (1u << 5);
  f.avx2 = ymmOs && avx2 && fma && f16c;
  f.avx512f = f.avx2 && zmmOs && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512bf16 = f.avx512f && bf16;
  f.amxTile = f.avx512f && amxTile && amxBf16 && requestAmxPermission();
  return f;
}

Isa selectIsa(const CpuFeatures& f, const char* requested) {
  Isa want = Isa::Amx;
  if (requested && *requested && std::strcmp(requested, "auto") != 0) {
    if (std::strcmp(requested, "scalar") == 0) want = Isa::Scalar;
    else if (std::strcmp(requested, "avx2") == 0) want = Isa::Avx2;
    else if (std::strcmp(requested, "avx512") == 0) want = Isa::Avx512;
  }
  if (want >= Isa::Amx && f.amxTile) return Isa::Amx;
  if (want >= Isa::Avx512 && f.avx512f) return Isa::Avx512;
  if (want >= Isa::Avx2 && f.avx2) return Isa::Avx2;
  return Isa::Scalar;
}

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Amx: return "amx";
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace ds
