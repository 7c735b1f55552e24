// layernorm, GELU, softmax, embedding, fused cross-entropy and dropout against the reference,
// under every ISA, for every float dtype, at row lengths around the vector widths and the tile.
import { describe, expect, it } from 'vitest';

import { expectClose } from '@ds-internal/test-kit';

import { bf16ToF32, f32ToBf16 } from '../../src/dtype.js';
import { createReferenceKernels } from '../../src/reference/index.js';
import { FLOAT_DTYPES, clone, cpu, expectBits, expectCloseArrays, forEachIsa, randomArray, rng, tol, zeros } from './helpers.js';

const ref = createReferenceKernels();

describe('layerNorm', () => {
  it('forward and backward match the reference', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const [rows, cols] of [[1, 1], [3, 17], [7, 768], [2, 2050], [300, 40]] as const) {
        const n = rows * cols;
        const x = randomArray(dtype, n, cols, -2, 3);
        const w = randomArray(dtype, cols, cols + 1, 0.5, 1.5);
        const b = randomArray(dtype, cols, cols + 2);
        const dy = randomArray(dtype, n, cols + 3);
        const y = zeros(dtype, n);
        const mean = new Float32Array(rows);
        const rstd = new Float32Array(rows);
        ref.layerNormForward(dtype, x, w, b, y, mean, rstd, rows, cols, 1e-5);
        const dx = zeros(dtype, n);
        const dw0 = randomArray('f32', cols, 4) as Float32Array;
        const db0 = randomArray('f32', cols, 5) as Float32Array;
        const dw = clone(dw0);
        const db = clone(db0);
        ref.layerNormBackward(dtype, dy, x, w, mean, rstd, dx, dw, db, rows, cols);
        forEachIsa(() => {
          const gy = zeros(dtype, n);
          const gm = new Float32Array(rows);
          const gr = new Float32Array(rows);
          cpu.layerNormForward(dtype, x, w, b, gy, gm, gr, rows, cols, 1e-5);
          const s = `${dtype} [${rows},${cols}]`;
          expectCloseArrays(`layerNorm y ${s}`, dtype, gy, y, tol(dtype, 10));
          expectClose(gm, mean, tol('f32'), `layerNorm mean ${s}`);
          expectClose(gr, rstd, { rtol: 1e-5, atol: 0 }, `layerNorm rstd ${s}`);
          const gdx = zeros(dtype, n);
          const gdw = clone(dw0);
          const gdb = clone(db0);
          cpu.layerNormBackward(dtype, dy, x, w, mean, rstd, gdx, gdw, gdb, rows, cols);
          expectCloseArrays(`layerNorm dx ${s}`, dtype, gdx, dx, tol(dtype, 100));
          expectClose(gdw, dw, tol('f32', 10 * rows), `layerNorm dweight ${s}`);
          expectClose(gdb, db, tol('f32', 10 * rows), `layerNorm dbias ${s}`);
        });
      }
    }
  });
});

describe('layerNorm backward on several threads', () => {
  it('gives the same bits on 1 to 4 threads (dweight and dbias summed per fixed chunk of rows, then over the chunks)', () => {
    const threads = cpu.getNumThreads();
    try {
      for (const [rows, cols] of [[300, 40], [97, 768], [33, 5]] as const) {
        const n = rows * cols;
        const x = randomArray('f32', n, cols + 20, -2, 3);
        const w = randomArray('f32', cols, cols + 21, 0.5, 1.5);
        const b = randomArray('f32', cols, cols + 22);
        const dy = randomArray('f32', n, cols + 23);
        const mean = new Float32Array(rows);
        const rstd = new Float32Array(rows);
        cpu.layerNormForward('f32', x, w, b, zeros('f32', n), mean, rstd, rows, cols, 1e-5);
        const runs = [1, 2, 3, 4].map((th) => {
          cpu.setNumThreads(th);
          const dx = zeros('f32', n);
          const dw = new Float32Array(cols).fill(0.25);
          const db = new Float32Array(cols).fill(-0.5);
          cpu.layerNormBackward('f32', dy, x, w, mean, rstd, dx, dw, db, rows, cols);
          return [dx, dw, db].map((a) => Buffer.from(a.buffer));
        });
        for (const r of runs.slice(1)) r.forEach((bytes, i) => expect(bytes.equals(runs[0]![i]!), `[${rows},${cols}] output ${i}`).toBe(true));
      }
    } finally {
      cpu.setNumThreads(threads);
    }
  });
});

describe('layerNorm with a residual add', () => {
  it('matches the reference: the sum exactly (as rounded), y, mean and rstd', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const [rows, cols] of [[1, 1], [3, 17], [7, 768], [2, 2050], [300, 40]] as const) {
        const n = rows * cols;
        const x = randomArray(dtype, n, cols + 10, -2, 3);
        const r = randomArray(dtype, n, cols + 11, -1, 1);
        const w = randomArray(dtype, cols, cols + 12, 0.5, 1.5);
        const b = randomArray(dtype, cols, cols + 13);
        const sum = zeros(dtype, n);
        const y = zeros(dtype, n);
        const mean = new Float32Array(rows);
        const rstd = new Float32Array(rows);
        ref.layerNormResidualForward(dtype, x, r, w, b, sum, y, mean, rstd, rows, cols, 1e-5);
        forEachIsa(() => {
          const gs = zeros(dtype, n);
          const gy = zeros(dtype, n);
          const gm = new Float32Array(rows);
          const gr = new Float32Array(rows);
          cpu.layerNormResidualForward(dtype, x, r, w, b, gs, gy, gm, gr, rows, cols, 1e-5);
          const s = `${dtype} [${rows},${cols}]`;
          expectCloseArrays(`layerNormResidual sum ${s}`, dtype, gs, sum, { rtol: 0, atol: 0 });
          expectCloseArrays(`layerNormResidual y ${s}`, dtype, gy, y, tol(dtype, 10));
          expectClose(gm, mean, tol('f32'), `layerNormResidual mean ${s}`);
          expectClose(gr, rstd, { rtol: 1e-5, atol: 0 }, `layerNormResidual rstd ${s}`);
          // And y is the plain layer norm of the stored sum.
          const py = zeros(dtype, n);
          cpu.layerNormForward(dtype, gs, w, b, py, new Float32Array(rows), new Float32Array(rows), rows, cols, 1e-5);
          expectCloseArrays(`layerNormResidual y = layerNorm(sum) ${s}`, dtype, gy, py, { rtol: 0, atol: 0 });
        });
      }
    }
  });
});

describe('gelu', () => {
  it('forward and backward match the reference', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const n of [1, 15, 16, 17, 2053, 70001]) {
        const x = randomArray(dtype, n, n, -6, 6);
        const dy = randomArray(dtype, n, n + 1);
        const y = zeros(dtype, n);
        const dx = zeros(dtype, n);
        ref.geluForward(dtype, x, y, n);
        ref.geluBackward(dtype, dy, x, dx, n);
        forEachIsa(() => {
          const gy = zeros(dtype, n);
          const gdx = zeros(dtype, n);
          cpu.geluForward(dtype, x, gy, n);
          cpu.geluBackward(dtype, dy, x, gdx, n);
          expectCloseArrays(`gelu y ${dtype} n=${n}`, dtype, gy, y, tol(dtype, 2));
          expectCloseArrays(`gelu dx ${dtype} n=${n}`, dtype, gdx, dx, tol(dtype, 2));
        });
      }
    }
  });
});

describe('gelu on bf16 (tables)', () => {
  // bf16 GELU looks its result up in per-ISA tables built from the f32 kernels: the bits must be the
  // f32 path's (widen, GELU in f32, round) for every one of the 65536 inputs, under every ISA, for
  // full vectors, a tail and a short call. NaN results only need to be NaN (which NaN operand's
  // payload a product keeps is the compiler's choice on either path).
  const isNanBf16 = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
  const firstMismatch = (got: Uint16Array, want: Uint16Array): number => {
    for (let i = 0; i < want.length; i++) {
      if (got[i] !== want[i] && !(isNanBf16(got[i]!) && isNanBf16(want[i]!))) return i;
    }
    return -1;
  };
  it('forward and backward give the f32 path\'s bits for all 65536 inputs', () => {
    const n = 65536;
    const x = Uint16Array.from({ length: n }, (_, i) => i);
    const xf = Float32Array.from(x, bf16ToF32);
    const dy = randomArray('bf16', n, 11, -3, 3) as Uint16Array;
    // Zeros, infinities and a NaN among the incoming gradients too.
    for (const [i, h] of [[0, 0x0000], [1, 0x8000], [0x3f80, 0x7f80], [0xbf80, 0xff80], [0x4000, 0x7fc0], [0x7f80, 0x0000]] as const) dy[i] = h;
    const dyf = Float32Array.from(dy, bf16ToF32);
    forEachIsa(() => {
      for (const len of [n, n - 3, 21]) {
        const yf = new Float32Array(len);
        cpu.geluForward('f32', xf, yf, len);
        const wantY = Uint16Array.from(yf, f32ToBf16);
        const gotY = new Uint16Array(len);
        cpu.geluForward('bf16', x, gotY, len);
        const iy = firstMismatch(gotY, wantY);
        expect(iy, `gelu y len=${len}: input 0x${x[iy]?.toString(16)} gave 0x${gotY[iy]?.toString(16)}, f32 path 0x${wantY[iy]?.toString(16)}`).toBe(-1);
        const dxf = new Float32Array(len);
        cpu.geluBackward('f32', dyf, xf, dxf, len);
        const wantDx = Uint16Array.from(dxf, f32ToBf16);
        const gotDx = new Uint16Array(len);
        cpu.geluBackward('bf16', dy, x, gotDx, len);
        const ix = firstMismatch(gotDx, wantDx);
        expect(ix, `gelu dx len=${len}: x 0x${x[ix]?.toString(16)}, dy 0x${dy[ix]?.toString(16)} gave 0x${gotDx[ix]?.toString(16)}, f32 path 0x${wantDx[ix]?.toString(16)}`).toBe(-1);
      }
    });
  });
  it('runs in place (y over x, dx over dy)', () => {
    const n = 1000;
    const x = randomArray('bf16', n, 12, -5, 5) as Uint16Array;
    const dy = randomArray('bf16', n, 13) as Uint16Array;
    const y = new Uint16Array(n);
    const dx = new Uint16Array(n);
    cpu.geluForward('bf16', x, y, n);
    cpu.geluBackward('bf16', dy, x, dx, n);
    const xi = clone(x);
    cpu.geluForward('bf16', xi, xi, n);
    expectBits('gelu y in place', xi, y);
    const dyi = clone(dy);
    cpu.geluBackward('bf16', dyi, x, dyi, n);
    expectBits('gelu dx in place', dyi, dx);
  });
});

describe('softmax', () => {
  it('forward (also in place) and backward match the reference', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const [rows, cols] of [[1, 1], [4, 5], [3, 33], [5, 3000], [700, 60]] as const) {
        const n = rows * cols;
        const x = randomArray(dtype, n, cols, -8, 8);
        const dy = randomArray(dtype, n, cols + 1);
        const y = zeros(dtype, n);
        ref.softmaxForward(dtype, x, y, rows, cols);
        const dx = zeros(dtype, n);
        ref.softmaxBackward(dtype, dy, y, dx, rows, cols);
        forEachIsa(() => {
          const s = `${dtype} [${rows},${cols}]`;
          const gy = zeros(dtype, n);
          cpu.softmaxForward(dtype, x, gy, rows, cols);
          expectCloseArrays(`softmax y ${s}`, dtype, gy, y, tol(dtype));
          const inPlace = clone(x);
          cpu.softmaxForward(dtype, inPlace, inPlace, rows, cols);
          expectCloseArrays(`softmax in place ${s}`, dtype, inPlace, y, tol(dtype));
          const gdx = zeros(dtype, n);
          cpu.softmaxBackward(dtype, dy, y, gdx, rows, cols);
          expectCloseArrays(`softmax dx ${s}`, dtype, gdx, dx, tol(dtype));
        });
      }
    }
  });
});

describe('embedding', () => {
  it('forward copies rows bit for bit; backward accumulates repeated ids', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const [n, vocab, dim] of [[1, 1, 1], [9, 11, 7], [40, 5, 100], [3000, 50, 64]] as const) {
        const r = rng(n + dim);
        const ids = Int32Array.from({ length: n }, () => Math.floor(r() * vocab));
        const table = randomArray(dtype, vocab * dim, dim);
        const dout = randomArray(dtype, n * dim, dim + 1);
        const out = zeros(dtype, n * dim);
        ref.embeddingForward(dtype, ids, table, out, n, vocab, dim);
        const dt0 = randomArray('f32', vocab * dim, 3) as Float32Array;
        const dtable = clone(dt0);
        ref.embeddingBackward(dtype, dout, ids, dtable, n, vocab, dim);
        forEachIsa(() => {
          const got = zeros(dtype, n * dim);
          cpu.embeddingForward(dtype, ids, table, got, n, vocab, dim);
          expectBits(`embedding out ${dtype}`, got, out);
          const gdt = clone(dt0);
          cpu.embeddingBackward(dtype, dout, ids, gdt, n, vocab, dim);
          expectClose(gdt, dtable, tol('f32', n / vocab + 1), `embedding dtable ${dtype} n=${n}`);
        });
      }
    }
  });
});

describe('crossEntropy', () => {
  it('forward and backward match the reference, ignored rows included', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const [rows, vocab] of [[1, 1], [5, 3], [6, 2049], [4, 5003], [300, 70]] as const) {
        const r = rng(rows * vocab);
        const logits = randomArray(dtype, rows * vocab, vocab, -6, 6);
        const targets = Int32Array.from({ length: rows }, (_, i) => (i % 4 === 3 ? -1 : Math.floor(r() * vocab)));
        const dloss = randomArray('f32', rows, 8, 0.1, 2) as Float32Array;
        const losses = new Float32Array(rows);
        const lse = new Float32Array(rows);
        ref.crossEntropyForward(dtype, logits, targets, losses, lse, rows, vocab);
        const dlogits = zeros(dtype, rows * vocab);
        ref.crossEntropyBackward(dtype, logits, targets, lse, dloss, dlogits, rows, vocab);
        forEachIsa(() => {
          const s = `${dtype} [${rows},${vocab}]`;
          const gl = new Float32Array(rows).fill(9);
          const glse = new Float32Array(rows);
          cpu.crossEntropyForward(dtype, logits, targets, gl, glse, rows, vocab);
          expectClose(gl, losses, tol('f32', 10), `ce losses ${s}`);
          expectClose(glse, lse, tol('f32', 10), `ce lse ${s}`);
          const gd = zeros(dtype, rows * vocab);
          cpu.crossEntropyBackward(dtype, logits, targets, lse, dloss, gd, rows, vocab);
          expectCloseArrays(`ce dlogits ${s}`, dtype, gd, dlogits, tol(dtype));
        });
      }
    }
  });
});

describe('crossEntropyForwardGrad', () => {
  it('gives forward\'s losses and lse and backward\'s dlogits for dloss = scale, ignored rows zero', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const [rows, vocab] of [[1, 1], [5, 3], [6, 2049], [4, 5003], [300, 70]] as const) {
        const r = rng(rows * vocab + 1);
        const logits = randomArray(dtype, rows * vocab, vocab + 1, -6, 6);
        const targets = Int32Array.from({ length: rows }, (_, i) => (i % 4 === 3 ? -1 : Math.floor(r() * vocab)));
        const scale = 1 / 3;
        const losses = new Float32Array(rows);
        const lse = new Float32Array(rows);
        ref.crossEntropyForward(dtype, logits, targets, losses, lse, rows, vocab);
        const dlogits = zeros(dtype, rows * vocab);
        ref.crossEntropyBackward(dtype, logits, targets, lse, new Float32Array(rows).fill(scale), dlogits, rows, vocab);
        forEachIsa(() => {
          const s = `${dtype} [${rows},${vocab}]`;
          const gl = new Float32Array(rows).fill(9);
          const glse = new Float32Array(rows);
          const gd = randomArray(dtype, rows * vocab, 5);  // every element must be overwritten
          cpu.crossEntropyForwardGrad!(dtype, logits, targets, gl, glse, gd, scale, rows, vocab);
          expectClose(gl, losses, tol('f32', 10), `ce losses ${s}`);
          expectClose(glse, lse, tol('f32', 10), `ce lse ${s}`);
          expectCloseArrays(`ce dlogits ${s}`, dtype, gd, dlogits, tol(dtype));
          for (let i = 3; i < rows; i += 4) expect(Array.from(gd.subarray(i * vocab, (i + 1) * vocab)).every((v) => v === 0), `ignored row ${i} ${s}`).toBe(true);
        });
      }
    }
    const bad = Int32Array.from([0, -2]);
    expect(() => cpu.crossEntropyForwardGrad!('f32', new Float32Array(6), bad, new Float32Array(2), new Float32Array(2), new Float32Array(6), 1, 2, 3)).toThrow(/targets \(or -1\)/);
  });
});

describe('dropout', () => {
  it('matches the counter-based mask exactly, whatever the offset, seed and thread split', () => {
    for (const dtype of FLOAT_DTYPES) {
      for (const [n, p, seed, offset] of [[1, 0.5, 1, 0], [1000, 0.1, 42, 7], [70001, 0.3, 2 ** 32 - 5, 2 ** 33 + 11], [50, 0, 3, 3], [50, 1, 3, 3]] as const) {
        const x = randomArray(dtype, n, n);
        const out = zeros(dtype, n);
        const mask = new Uint8Array(n);
        ref.dropoutForward(dtype, x, out, mask, n, p, seed, offset);
        forEachIsa(() => {
          const gout = zeros(dtype, n);
          const gmask = new Uint8Array(n).fill(7);
          cpu.dropoutForward(dtype, x, gout, gmask, n, p, seed, offset);
          expectBits(`dropout mask ${dtype} n=${n} p=${p}`, gmask, mask);
          expectCloseArrays(`dropout out ${dtype} n=${n} p=${p}`, dtype, gout, out, tol(dtype));
        });
        if (p === 0.3) {
          const kept = mask.reduce((a, b) => a + b, 0) / n;
          expect(Math.abs(kept - 0.7)).toBeLessThan(0.01);
        }
      }
    }
  });
});
