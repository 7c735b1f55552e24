// Scalar conversions between f32 and the 16-bit float formats, bit for bit as dtype.ts does them:
// bf16 and f16 round to nearest even, NaN stays a quiet NaN, f16 keeps subnormals. Header-only and
// free of target attributes, so that @ds/core's collectives (which reduce bf16/f16 buffers) compile
// the same rounding from this one place (its addon.json includes pkg:@ds/tensor/native/include).
#pragma once
#include <cstdint>
#include <cstring>

namespace ds {

inline uint32_t bitsOf(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float floatOf(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// f32 -> bf16 bits, round to nearest even, NaN kept quiet.
inline uint16_t f32ToBf16(float x) {
  const uint32_t b = bitsOf(x);
  const uint32_t nan = ((b >> 16) | 0x40u) & 0xffffu;
  const uint32_t rne = ((b + 0x7fffu + ((b >> 16) & 1u)) >> 16) & 0xffffu;
  return static_cast<uint16_t>((b & 0x7fffffffu) > 0x7f800000u ? nan : rne);
}
inline float bf16ToF32(uint16_t h) { return floatOf(static_cast<uint32_t>(h) << 16); }

// f32 -> IEEE half bits, round to nearest even, subnormals kept.
inline uint16_t f32ToF16(float x) {
  const uint32_t bits = bitsOf(x);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((bits >> 23) & 0xff);
  uint32_t mant = bits & 0x7fffffu;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
  const int32_t e = exp - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) {  // a half subnormal (or zero): shift the implicit-one mantissa right, then round
    if (e < -11) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - e;
    const uint32_t half = 1u << (shift - 1);
    const uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t out = mant >> shift;
    if (rem > half || (rem == half && (out & 1u))) out += 1;
    return static_cast<uint16_t>(sign | out);
  }
  const uint32_t rem = mant & 0x1fffu;
  uint32_t out = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  if (rem > 0x1000u || (rem == 0x1000u && (out & 1u))) out += 1;  // a carry into the exponent is right
  return static_cast<uint16_t>(sign | out);
}

// IEEE half bits -> f32, exactly (every half is an f32); NaN keeps its sign and payload.
inline float f16ToF32(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in f32
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 0x1f) return floatOf(sign | 0x7f800000u | (mant << 13));
  return floatOf(sign | ((exp + 112u) << 23) | (mant << 13));
}

}  // namespace ds
