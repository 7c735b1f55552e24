// Kernel entry points. Each takes the ISA to run at; bindings validate every argument before calling.
#pragma once
#include <cstdint>

#include "ds/cpu.h"

namespace ds {

void axpyF32(Isa isa, int64_t n, float alpha, const float* x, float* y);

}  // namespace ds
