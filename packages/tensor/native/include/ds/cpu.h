// CPU feature detection and the ISA level kernels dispatch on.
#pragma once
#include <cstdint>

namespace ds {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Amx = 3 };

struct CpuFeatures {
  bool avx2 = false;       // AVX2 + FMA + F16C
  bool avx512f = false;    // AVX-512 F/BW/VL/DQ usable (OS saves zmm state)
  bool avx512bf16 = false; // AVX512_BF16 (vdpbf16ps)
  bool amxTile = false;    // AMX-TILE + AMX-BF16 present and the kernel granted tile state
};

// Detected once per call (cheap: a few cpuid instructions); no mutable globals.
CpuFeatures detectCpu();

// Highest ISA both supported by the CPU and allowed by `requested` ("auto", "scalar", "avx2",
// "avx512", "amx"); an unknown or unsupported request falls to the highest supported below it.
Isa selectIsa(const CpuFeatures& f, const char* requested);

const char* isaName(Isa isa);

}  // namespace ds
