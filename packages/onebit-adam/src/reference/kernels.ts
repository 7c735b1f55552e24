// The TypeScript twins of the native kernels (native/kernels/signs.cc, update.cc): the
// specification the native loops are tested against, and what an optimizer built without the addon
// (tests on one rank) runs. Signs: same bit order (numpy packbits: element 0 in bit 7), same rule (a
// bit is 1 unless x < 0), same f32 roundings. Updates: f32 rounding after each operation.
import type { OnebitKernels } from '../native/load.js';

const f = Math.fround;

export const referenceOnebitKernels: OnebitKernels = {
  name: 'reference',
  addErrorSumSquares(x, err) {
    let ss = 0;
    for (let i = 0; i < x.length; i++) {
      const v = Math.fround(x[i]! + err[i]!);
      x[i] = v;
      ss += v * v;
    }
    return ss;
  },
  compressSigns(x, scale, bits, err) {
    const s = Math.fround(scale);
    for (let b = 0; b < x.length >> 3; b++) {
      let byte = 0;
      for (let k = 0; k < 8; k++) {
        const v = x[b * 8 + k]!;
        const pos = !(v < 0);
        if (pos) byte |= 1 << (7 - k);
        err[b * 8 + k] = v - (pos ? s : -s);
      }
      bits[b] = byte;
    }
  },
  unpackSigns(bits, scale, out, accumulate) {
    const s = Math.fround(scale);
    for (let i = 0; i < out.length; i++) {
      const q = (bits[i >> 3]! >> (7 - (i & 7))) & 1 ? s : -s;
      out[i] = accumulate ? out[i]! + q : q;
    }
  },
  momentumUpdate(m, g, beta1, gradScale) {
    const b = f(beta1), keep = f(1 - b), s = f(gradScale);
    for (let i = 0; i < m.length; i++) m[i] = f(b * m[i]!) + f(keep * f(g[i]! * s));
  },
  frozenAdamUpdate(p, m, v, lr, eps, weightDecay) {
    const l = f(lr), e = f(eps), wd = f(weightDecay);
    for (let i = 0; i < p.length; i++) p[i] = p[i]! - f(l * f(f(m[i]! / f(f(Math.sqrt(v[i]!)) + e)) + f(wd * p[i]!)));
  },
};
