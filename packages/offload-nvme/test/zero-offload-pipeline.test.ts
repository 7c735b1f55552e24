// The optimizer offload's I/O outside the step (packages/zero/src/offload-state.ts): the first
// sub-groups' masters and moments are read while the boundary backward runs (not on the micro steps
// before it); at stage 3 the step steps those and leaves the other sub-groups for the next forward,
// which steps each before its unit's weights are read; the last writes are left in flight, to be
// waited for before their staging set is read into again. The gradient shard swapped to the same file
// (grad-offload.ts): each unit's block is written as it settles in every backward and read back to
// accumulate on the later micro steps; the global norm is taken as the blocks settle in the boundary
// backward, so the step reads each gradient element once (for its sub-group). Observed through an I/O engine that records every transfer of
// the optimizer's swap file and whether anyone waited for it. That the results stay exactly those of
// no offload is test/zero-offload.test.ts.
import { rmSync } from 'node:fs';

import { afterAll, describe, expect, it } from 'vitest';

import { batch, tinyConfig, TINY_GPT } from '@ds-internal/gpt-fixtures';
import { initialize, type OffloadWork } from '@ds/core';
import { GPT, tidy, type Tensor } from '@ds/tensor';
import { zero } from '@ds/zero';

import { offloadNvme, ReferenceIo, type IoEngine } from '../src/index.js';

import { scratchDir } from './helpers.js';

const dir = scratchDir('pipeline');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Transfer {
  kind: 'read' | 'write';
  offset: number;
  bytes: number;
  waited: boolean;
}

/** The reference engine, recording the transfers on the optimizer's swap file. */
function recording(log: Transfer[]): IoEngine {
  const inner = new ReferenceIo();
  const track = (kind: Transfer['kind'], path: string, offset: number, bytes: number, w: OffloadWork): OffloadWork => {
    if (!/ds-offload-optimizer-/.test(path)) return w;
    const t: Transfer = { kind, offset, bytes, waited: false };
    log.push(t);
    return {
      isCompleted: () => w.isCompleted(),
      waitSync: () => {
        t.waited = true;
        w.waitSync();
      },
      wait: async () => {
        t.waited = true;
        await w.wait();
      },
    };
  };
  return Object.assign(Object.create(inner) as IoEngine, {
    read: (f: Parameters<IoEngine['read']>[0], dst: Uint8Array, offset: number) => track('read', f.path, offset, dst.byteLength, inner.read(f, dst, offset)),
    write: (f: Parameters<IoEngine['write']>[0], src: Uint8Array, offset: number) => track('write', f.path, offset, src.byteLength, inner.write(f, src, offset)),
  });
}

describe('optimizer offload I/O beyond the step', () => {
  it('reads the first sub-groups during the boundary backward and leaves the last writes in flight past the step', async () => {
    const log: Transfer[] = [];
    const nvme = { device: 'nvme', nvme_path: dir };
    // Three staging sets (pipeline_read and pipeline_write); sub-groups of at most 400 elements.
    const config = tinyConfig(1, { stage: 3, sub_group_size: 400, stage3_param_persistence_threshold: 20, offload_optimizer: { ...nvme, pipeline_read: true, pipeline_write: true, buffer_count: 9 }, offload_param: { ...nvme, max_in_cpu: 0 } });
    const { engine } = await initialize({ model: new GPT(TINY_GPT), config, plugins: [zero(), offloadNvme({ ioEngine: () => recording(log) })], dist: null, log: () => {} });
    const forward = (step: number, m: number) => {
      const { ids, targets } = batch(step, m, 0, 1);
      const loss = tidy(() => engine.forward<{ loss: Tensor }>(ids, targets).loss!.keep());
      ids.dispose();
      targets.dispose();
      return loss;
    };
    /** The backward of a micro step; off the boundary also its (counting-only) engine.step(). */
    const backward = async (loss: Tensor, m: number) => {
      await engine.backward(loss);
      loss.dispose();
      if (m === 0) await engine.step();
    };
    // The gradient regions follow the masters' and moments' in the file (they are placed once the
    // optimizer offload exists): the first backward's writes, all gradients, give their start.
    let gradStart = Infinity;
    const state = () => log.filter((t) => t.offset < gradStart);
    const grads = () => log.filter((t) => t.offset >= gradStart);
    try {
      // Setup wrote every sub-group's masters; what follows is the training.
      log.length = 0;
      let left: Transfer | null = null;
      let stepIo: Transfer[] = [];
      let units = 0;
      let groups = 0;
      const sum = (ts: Transfer[]) => ts.reduce((a, t) => a + t.bytes, 0);
      // Gradient bytes the last boundary backward wrote (the whole shard) and the step's cycle read back.
      let shardBytes = 0;
      let gradReadBytes = 0;
      for (let step = 0; step < 4; step++) {
        const loss0 = forward(step, 0);
        // The step before left sub-groups for this forward: stepped as their units were fetched (or at
        // a hook), so by its end every sub-group was read and written once since the step began.
        const cycle = [...stepIo, ...state()];
        if (step > 0) {
          // The norm read nothing: the step and the sub-groups it left for this forward read each gradient element once.
          gradReadBytes += sum(grads().filter((t) => t.kind === 'read'));
          expect(gradReadBytes, `step ${step - 1}: gradient bytes read by the step, once`).toBe(shardBytes);
        }
        if (step === 0) expect(state(), 'no optimizer state I/O in the first forward').toEqual([]);
        else {
          expect(state().some((t) => t.kind === 'write'), `step ${step - 1}: sub-groups stepped under the next forward`).toBe(true);
          const reads = cycle.filter((t) => t.kind === 'read');
          const writes = cycle.filter((t) => t.kind === 'write');
          if (step === 1) groups = reads.length;
          // The tiny GPT has more sub-groups than staging sets.
          expect(groups, `step ${step - 1}`).toBeGreaterThan(3);
          expect(reads, `step ${step - 1}: every sub-group read once`).toHaveLength(groups);
          expect(writes, `step ${step - 1}: every sub-group written once`).toHaveLength(groups);
          expect(new Set(reads.map((t) => t.offset)).size, `step ${step - 1}`).toBe(groups);
          // Every read was waited for before its sub-group was stepped; the first write was (its set
          // was reused), the last was not: it finishes while backward runs.
          expect(reads.every((t) => t.waited), `step ${step - 1}`).toBe(true);
          expect(writes[0]!.waited, `step ${step - 1}: the first set was reused`).toBe(true);
          left = writes.at(-1)!;
          expect(left.waited, `step ${step - 1}: the last write is left in flight`).toBe(false);
        }
        log.length = 0;
        await backward(loss0, 0);
        if (step === 0) {
          gradStart = Math.min(...log.map((t) => t.offset));
          units = log.length;
          expect(units, 'one gradient write per unit').toBeGreaterThan(3);
        }
        // Off the boundary: each unit's gradient block written once (nothing to read after zeroing), no optimizer state moved.
        expect(grads().map((t) => t.kind), `step ${step}: gradient writes of the first micro step`).toEqual(new Array(units).fill('write'));
        expect(state(), `step ${step}: no optimizer state I/O off the accumulation boundary`).toEqual([]);
        if (left) expect(left.waited, `step ${step}: the last write of the step before is still in flight`).toBe(false);
        const loss1 = forward(step, 1);
        log.length = 0;
        await backward(loss1, 1);
        // The boundary micro step accumulates: every unit's block read back (waited for) and written again.
        expect(grads().filter((t) => t.kind === 'read'), `step ${step}`).toHaveLength(units);
        expect(grads().filter((t) => t.kind === 'read').every((t) => t.waited), `step ${step}`).toBe(true);
        expect(grads().filter((t) => t.kind === 'write'), `step ${step}`).toHaveLength(units);
        shardBytes = sum(grads().filter((t) => t.kind === 'write'));
        // Before the step: one read per staging set, for the first three sub-groups.
        expect(state().filter((t) => t.kind === 'read'), `step ${step}: reads during the boundary backward`).toHaveLength(3);
        expect(state().filter((t) => t.kind === 'write'), `step ${step}`).toEqual([]);
        // The prefetch waited for the writes still using the sets before reading into them.
        if (left) expect(left.waited, `step ${step}: the step before's last write waited for before its set was read into`).toBe(true);
        stepIo = state();
        log.length = 0;
        await engine.step();
        // The step reads gradients back per sub-group (the norm was taken in backward) and writes none;
        // it steps the sub-groups read ahead and leaves the others (stage 3) for the next forward.
        expect(grads().filter((t) => t.kind === 'write'), `step ${step}`).toEqual([]);
        gradReadBytes = sum(grads().filter((t) => t.kind === 'read'));
        expect(gradReadBytes, `step ${step}: gradients of the sub-groups stepped`).toBeGreaterThan(0);
        expect(gradReadBytes, `step ${step}: the sub-groups left for the next forward read theirs then`).toBeLessThan(shardBytes);
        const written = state().filter((t) => t.kind === 'write').length;
        expect(written, `step ${step}: sub-groups stepped before the step returned`).toBeGreaterThan(0);
        if (groups) expect(written, `step ${step}: sub-groups left for the next forward`).toBeLessThan(groups);
        stepIo = [...stepIo, ...state()];
        log.length = 0;
      }
      // A checkpoint right after a step reads the tier: the sub-groups left are stepped and every write
      // in flight is waited for first.
      const inFlight = stepIo.filter((t) => t.kind === 'write' && !t.waited);
      expect(inFlight.length).toBeGreaterThan(0);
      await engine.saveCheckpoint(`${dir}/ckpt`, { tag: 'after' });
      expect(inFlight.every((t) => t.waited)).toBe(true);
      const cycle = [...stepIo, ...state()];
      expect(cycle.filter((t) => t.kind === 'write'), 'the save stepped the sub-groups left').toHaveLength(groups);
      expect(cycle.filter((t) => t.kind === 'write').every((t) => t.waited), 'and waited for their writes').toBe(true);
    } finally {
      engine.destroy();
    }
  }, 60_000);
});
