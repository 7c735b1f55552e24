// The one loader of @ds/onebit-adam's native addon (prebuilds/linux-x64/node.napi.node), from src/ in
// tests or from the bundled dist/ in an installed package, and the typed, validated kernel table
// over it. The addon's ISA (scalar or AVX2) is chosen once per kernel table from cpuid.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DSNativeError, DSShapeError } from '@ds/tensor';

interface OnebitAddon {
  selectIsa(requested: string): { id: number; name: string };
  addErrorSumSquares(isa: number, x: Float32Array, err: Float32Array): number;
  compressSigns(isa: number, x: Float32Array, scale: number, bits: Uint8Array, err: Float32Array): void;
  unpackSigns(isa: number, bits: Uint8Array, scale: number, out: Float32Array, accumulate: boolean): void;
  momentumUpdate(isa: number, m: Float32Array, g: Float32Array, beta1: number, gradScale: number): void;
  frozenAdamUpdate(isa: number, p: Float32Array, m: Float32Array, v: Float32Array, lr: number, eps: number, weightDecay: number): void;
}

/** The compressor's kernels and the compressed phase's loops; `src/reference/kernels.ts` holds their TypeScript twins. */
export interface OnebitKernels {
  readonly name: string;
  /** x += err; returns the sum of squares of the corrected x. */
  addErrorSumSquares(x: Float32Array, err: Float32Array): number;
  /** Packs x's sign bits (MSB first, 1 = not negative) and sets err = x - scale * sign(x). */
  compressSigns(x: Float32Array, scale: number, bits: Uint8Array, err: Float32Array): void;
  /** out (+)= scale * sign for out.length signs of bits. */
  unpackSigns(bits: Uint8Array, scale: number, out: Float32Array, accumulate: boolean): void;
  /** m = beta1 m + (1 - beta1) (g gradScale), over m's length. */
  momentumUpdate(m: Float32Array, g: Float32Array, beta1: number, gradScale: number): void;
  /** p -= lr (m / (sqrt(v) + eps) + weightDecay p), over p's length (v frozen). */
  frozenAdamUpdate(p: Float32Array, m: Float32Array, v: Float32Array, lr: number, eps: number, weightDecay: number): void;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === '@ds/onebit-adam') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new DSNativeError('@ds/onebit-adam: cannot find the package root (no @ds/onebit-adam package.json above the loader)');
    dir = parent;
  }
}

function loadAddon(): OnebitAddon {
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(root) as OnebitAddon;
  } catch (err) {
    throw new DSNativeError(
      `@ds/onebit-adam: the native sign-packing addon could not be loaded from ${join(root, 'prebuilds')}: ${(err as Error).message}. ` +
        'An installed package ships prebuilds/linux-x64/node.napi.node; in a checkout, run `pnpm --filter @ds/onebit-adam build` first.',
      { cause: err },
    );
  }
}

function checkPacked(n: number, bits: Uint8Array, what: string): void {
  if (n % 8 !== 0) throw new DSShapeError(`${what}: ${n} elements is not a multiple of 8; pad the buffer (paddedSize) first`);
  if (bits.length < n / 8) throw new DSShapeError(`${what}: ${n} signs need ${n / 8} bytes, the bit buffer has ${bits.length}`);
}

/** The native kernels; `isa` 'scalar' forces the baseline loop (tests run it on its own). */
export function nativeOnebitKernels(isa: 'auto' | 'scalar' = 'auto'): OnebitKernels {
  const addon = loadAddon();
  const chosen = addon.selectIsa(isa);
  return {
    name: `native-${chosen.name}`,
    addErrorSumSquares(x, err) {
      if (err.length < x.length) throw new DSShapeError(`addErrorSumSquares: error buffer has ${err.length} elements, x has ${x.length}`);
      return addon.addErrorSumSquares(chosen.id, x, err);
    },
    compressSigns(x, scale, bits, err) {
      checkPacked(x.length, bits, 'compressSigns');
      if (err.length < x.length) throw new DSShapeError(`compressSigns: error buffer has ${err.length} elements, x has ${x.length}`);
      addon.compressSigns(chosen.id, x, scale, bits, err);
    },
    unpackSigns(bits, scale, out, accumulate) {
      checkPacked(out.length, bits, 'unpackSigns');
      addon.unpackSigns(chosen.id, bits, scale, out, accumulate);
    },
    momentumUpdate(m, g, beta1, gradScale) {
      if (g.length < m.length) throw new DSShapeError(`momentumUpdate: gradient has ${g.length} elements, the momentum ${m.length}`);
      addon.momentumUpdate(chosen.id, m, g, beta1, gradScale);
    },
    frozenAdamUpdate(p, m, v, lr, eps, weightDecay) {
      if (m.length < p.length || v.length < p.length) throw new DSShapeError(`frozenAdamUpdate: ${p.length} parameters need momentum and variance as long (got ${m.length}, ${v.length})`);
      addon.frozenAdamUpdate(chosen.id, p, m, v, lr, eps, weightDecay);
    },
  };
}
