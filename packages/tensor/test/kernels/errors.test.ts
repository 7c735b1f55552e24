// Bad input never reaches native code unchecked: the backend throws DSShapeError naming the op and
// the sizes, and the addon itself (called raw, bypassing the TypeScript checks) throws JS
// TypeError/RangeError instead of reading or writing out of bounds.
import { describe, expect, it } from 'vitest';

import { DSShapeError, isDSError } from '../../src/errors.js';
import { loadCpuAddon } from '../../src/native/load.js';
import { cpu } from './helpers.js';

function shapeError(fn: () => unknown, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a DSShapeError').toBeInstanceOf(DSShapeError);
  expect(isDSError(caught)).toBe(true);
  for (const f of fragments) expect((caught as Error).message).toContain(f);
}

const f32 = (n: number) => new Float32Array(n);

describe('backend validation (DSShapeError)', () => {
  it('rejects short arrays with the op, the operand and the sizes', () => {
    shapeError(() => cpu.unary('exp', 'f32', f32(3), f32(4), 4), 'unary(exp)', 'x has 3 elements', 'n=4');
    shapeError(() => cpu.binary('add', 'f32', f32(6), f32(2), f32(6), 6, 3), 'binary(add)', 'b has 2');
    shapeError(() => cpu.layerNormForward('f32', f32(12), f32(4), f32(3), f32(12), f32(3), f32(3), 3, 4, 1e-5), 'layerNormForward', 'bias', 'cols=4');
    shapeError(() => cpu.attentionForward('f32', f32(24), f32(24), f32(23), f32(24), f32(6), 2, 3, 4, 0.5), 'attentionForward', 'v has 23', 'bh=2');
    shapeError(() => cpu.crossEntropyForward('f32', f32(10), new Int32Array(1), f32(2), f32(2), 2, 5), 'crossEntropyForward', 'targets');
    shapeError(() => cpu.adamw({ param: f32(5), grad: f32(5), gradDtype: 'f32', expAvg: f32(5), expAvgSq: f32(4), n: 5, lr: 1, beta1: 0.9, beta2: 0.9, eps: 1e-8, weightDecay: 0, step: 1, biasCorrection: true, decoupled: true, gradScale: 1 }), 'adamw', 'expAvgSq has 4');
  });

  it('rejects gemm operands that the strides and batch do not fit', () => {
    const g = { dtype: 'f32', outDtype: 'f32', transA: false, transB: false, batch: 2, m: 2, n: 3, k: 4, alpha: 1, beta: 0, a: f32(16), strideA: 8, b: f32(12), strideB: 0, c: f32(12), strideC: 6 } as const;
    cpu.gemm(g);
    shapeError(() => cpu.gemm({ ...g, a: f32(15) }), 'gemm', 'a has 15', 'strideA=8');
    shapeError(() => cpu.gemm({ ...g, strideC: 5, c: f32(20) }), 'gemm', 'strideC=5');
    shapeError(() => cpu.gemm({ ...g, dtype: 'f16' as 'f32' }), 'gemm', 'f32 or bf16');
    shapeError(() => cpu.gemm({ ...g, b: new Uint16Array(12) }), 'gemm', 'b must be a Float32Array');
  });

  it('rejects wrong element types, bad sizes and bad enums', () => {
    shapeError(() => cpu.geluForward('bf16', f32(4), new Uint16Array(4), 4), 'geluForward', 'x must be a Uint16Array');
    shapeError(() => cpu.sum('f32', f32(4), -1), 'sum', 'n must be a non-negative integer');
    shapeError(() => cpu.sum('f32', f32(4), 2.5), 'sum', 'non-negative integer');
    shapeError(() => cpu.unary('cube' as 'exp', 'f32', f32(1), f32(1), 1), 'unknown op');
    shapeError(() => cpu.scale('f64' as 'f32', f32(1), f32(1), 1, 1, 0), "unknown dtype 'f64'");
    shapeError(() => cpu.binary('mul', 'f32', f32(6), f32(4), f32(6), 6, 4), 'multiple of bn=4');
    shapeError(() => cpu.dropoutForward('f32', f32(2), f32(2), new Uint8Array(2), 2, 1.5, 1, 0), 'p must be in [0, 1]');
    shapeError(() => cpu.setNumThreads(0), 'setNumThreads');
    shapeError(() => cpu.setIsa('sse9' as 'scalar'), "setIsa: 'sse9' is not one of auto, scalar");
  });

  it('rejects gather views that leave the source', () => {
    shapeError(() => cpu.gather('f32', f32(10), 0, [3, 4], [4, 1], f32(12)), 'gather', 'src has 10', 'shape [3, 4]');
    shapeError(() => cpu.gather('f32', f32(10), 1, [3], [-1], f32(3)), 'gather', 'before the start');
    shapeError(() => cpu.gather('f32', f32(10), 0, [3], [1, 1], f32(3)), 'gather', 'differ in rank');
  });

  it('turns ids and targets out of range (found in native code) into DSShapeError', () => {
    shapeError(() => cpu.embeddingForward('f32', Int32Array.of(0, 5, 2), f32(15), f32(9), 3, 5, 3), 'embeddingForward', 'ids[1] = 5', '[0, 5)');
    shapeError(() => cpu.embeddingBackward('f32', f32(6), Int32Array.of(-1, 0), f32(15), 2, 5, 3), 'embeddingBackward', 'ids[0] = -1');
    shapeError(() => cpu.crossEntropyForward('f32', f32(6), Int32Array.of(-1, 3), f32(2), f32(2), 2, 3), 'crossEntropyForward', 'targets (or -1)[1] = 3');
    shapeError(() => cpu.crossEntropyBackward('f32', f32(6), Int32Array.of(-2, 0), f32(2), f32(2), f32(6), 2, 3), 'crossEntropyBackward', '= -2');
  });
});

describe('addon checks (called raw)', () => {
  const raw = loadCpuAddon();
  it('throws RangeError for short arrays instead of touching memory', () => {
    expect(() => raw.unary(1, 0, f32(3), f32(100), 100)).toThrow(RangeError);
    expect(() => raw.gemm(0, 0, false, false, 1, 64, 64, 64, 1, 0, f32(64 * 64), 0, f32(64 * 63), 0, f32(64 * 64), 0)).toThrow(/b has 4032 elements/);
    expect(() => raw.attentionBackward(0, f32(8), f32(8), f32(8), f32(8), f32(8), f32(2), f32(8), f32(7), f32(8), 1, 2, 4, 1)).toThrow(RangeError);
    expect(() => raw.gather(0, f32(4), 0, Float64Array.of(2, 3), Float64Array.of(3, 1), f32(6))).toThrow(/src has 4/);
    expect(() => raw.sumRows(0, f32(6), 2 ** 40, 2 ** 40, f32(1), false)).toThrow(/overflow/);
  });
  it('throws TypeError for wrong element types and non-integer sizes', () => {
    expect(() => raw.geluForward(0, new Uint16Array(4), f32(4), 4)).toThrow(TypeError);
    expect(() => raw.geluForward(1, new Uint16Array(4), new Uint16Array(4), 1.5)).toThrow(TypeError);
    expect(() => raw.geluForward(7, f32(4), f32(4), 4)).toThrow(TypeError);
    expect(() => (raw.sum as (...a: unknown[]) => number)(0, 'not an array', 1)).toThrow(TypeError);
    expect(() => (raw.sum as (...a: unknown[]) => number)(0)).toThrow(TypeError);
  });
});
