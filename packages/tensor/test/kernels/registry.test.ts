// The cpu device's default table: native when its addon loads, else the reference table with a
// warning that says why (once per process); other errors (a bad environment variable) are thrown.
import { describe, expect, it } from 'vitest';

import { defaultKernels, nativeOrReference } from '../../src/backends/registry.js';
import { DSConfigError, DSNativeError, DSUnsupportedError } from '../../src/errors.js';

describe('default kernels', () => {
  it('the cpu device gets the native table here', () => {
    expect(defaultKernels('cpu').name).not.toBe('reference');
    expect(() => defaultKernels('cuda')).toThrow(DSUnsupportedError);
    expect(() => defaultKernels('cuda')).toThrow(/no default kernels for device 'cuda'/);
  });

  it('an addon that cannot load gives the reference table and one warning naming the reason', async () => {
    const warnings: Error[] = [];
    const listen = (w: Error) => warnings.push(w);
    process.on('warning', listen);
    const noAddon = () => {
      throw new DSNativeError('@ds/tensor: the cpu addon could not be loaded from /x/prebuilds: no such file');
    };
    try {
      expect(nativeOrReference(noAddon).name).toBe('reference');
      expect(nativeOrReference(noAddon).name).toBe('reference');
      // 'warning' events are emitted on a later tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', listen);
    }
    expect(warnings.map((w) => (w as Error & { code?: string }).code)).toEqual(['DS_REFERENCE_KERNELS']);
    expect(warnings[0]!.message).toMatch(/reference kernels \(plain TypeScript, 10-1000x slower\): .*could not be loaded from \/x\/prebuilds/);
  });

  it('any other error is thrown, not hidden behind the fallback', () => {
    expect(() => nativeOrReference(() => {
      throw new DSConfigError("DS_CPU_ISA='avx1024' is not one of auto, scalar");
    })).toThrow(DSConfigError);
  });
});
