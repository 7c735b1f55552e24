// Our GPT against PyTorch (scripts/golden/make_gpt_fixture.py): same weights and tokens, loss and
// every parameter gradient compared element by element. f32 within 1e-4, bf16 autocast within 2e-2.
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { closeReport } from '@ds-internal/test-kit';

import { fromArray } from '../../src/create.js';
import { tidy } from '../../src/memory/scope.js';
import { GPT } from '../../src/nn/gpt.js';
import { createReferenceKernels } from '../../src/reference/index.js';
import { autocast, Runtime, withRuntime } from '../../src/runtime.js';
import { defaultKernels } from '../../src/backends/registry.js';
import type { KernelTable } from '../../src/kernels/table.js';
import { readSafetensors } from '../helpers/safetensors.js';

const fixture = readSafetensors(fileURLToPath(new URL('../fixtures/gpt_tiny.safetensors', import.meta.url)));
const cfg = JSON.parse(fixture.metadata.config!) as { vocabSize: number; blockSize: number; nLayer: number; nHead: number; nEmbd: number; batch: number; seq: number };
const refLoss = Number(fixture.metadata.loss);

function runParity(kernels: KernelTable, mixed: 'bf16' | null): { loss: number; grads: Map<string, number[]> } {
  return withRuntime(new Runtime({ kernels }), () => {
    const gpt = new GPT({ ...cfg, dropout: 0, seed: 5 });
    const state: Record<string, ReturnType<typeof fromArray>> = {};
    for (const [name, t] of fixture.tensors) if (name.startsWith('weight.')) state[name.slice(7)] = fromArray(t.values, t.shape);
    const { missing } = gpt.loadStateDict(state, { strict: false });
    expect(missing).toEqual(['lm_head.weight']); // tied to transformer.wte.weight
    const ids = fixture.tensors.get('ids')!;
    const tg = fixture.tensors.get('targets')!;
    const loss = tidy(() => {
      const out = autocast(mixed, () => gpt.call(fromArray(ids.values, ids.shape, { dtype: 'i32' }), fromArray(tg.values, tg.shape, { dtype: 'i32' })));
      out.loss!.backward();
      return out.loss!.item();
    });
    return { loss, grads: new Map(gpt.namedParameters().map(([n, p]) => [n, p.grad!.toArray()])) };
  });
}

function check(result: { loss: number; grads: Map<string, number[]> }, tol: number, floor: number): void {
  expect(Math.abs(result.loss - refLoss) / refLoss).toBeLessThan(tol);
  const failures: string[] = [];
  for (const [name, t] of fixture.tensors) {
    if (!name.startsWith('grad.')) continue;
    const got = result.grads.get(name.slice(5));
    expect(got, name).toBeDefined();
    // Each element within tol of itself plus `floor` times the tensor's largest magnitude.
    const scale = t.values.reduce((m: number, v: number) => Math.max(m, Math.abs(v)), 0);
    const r = closeReport(got!, t.values, { rtol: tol, atol: tol * floor * scale }, name);
    if (!r.ok) failures.push(r.message);
  }
  expect(failures.join('\n')).toBe('');
}

const tables: [string, () => KernelTable][] = [['reference', createReferenceKernels]];
if (defaultKernels('cpu').name !== 'reference') tables.push(['default cpu', () => defaultKernels('cpu')]);

describe.each(tables)('GPT parity with PyTorch (%s kernels)', (_name, make) => {
  it('f32: loss and every gradient within 1e-4', () => {
    // f32 products accumulate in f32 in the native kernels: an element is judged against itself
    // plus 1% of the tensor's largest magnitude (tiny elements are at f32 resolution of the scale).
    check(runParity(make(), null), 1e-4, 1e-2);
  });
  it('bf16 autocast: loss and every gradient within 2e-2', () => {
    // bf16 keeps ~3 significant digits, so a gradient element is judged against the tensor's scale:
    // |got - want| <= 2e-2 * (|want| + max|want|). The worst tensor sits near 1.7e-2.
    check(runParity(make(), 'bf16'), 2e-2, 1);
  });
});
