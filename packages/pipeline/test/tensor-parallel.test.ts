// Tensor parallelism trains like the single process: the tiny GPT (tied vocab-parallel embedding and
// LM head, vocab-parallel cross-entropy) as the plain GPTTensorParallel module under core's engine
// on 2 model ranks, and as 2 pipeline stages x 2 model ranks (4 ranks; pipe_partitioned sends, and
// once whole sends), in fp32, with gradient_clipping that clips every batch and with fp16 dynamic
// loss scaling: 20 batches, every batch's loss and global gradient norm within 1e-3 relative of the
// single-process run over the same global batches (fixtures.ts), the same steps skipped; the
// pipeline also against the single process's eval loss.
//
// Checkpoints on 2 pipe x 2 model x 1 data: saved after 10 batches by an uninterrupted run, loaded
// by a new 4-rank job that trains batches 10-19 with the uninterrupted run's losses exactly; the
// checkpoint joined by ds-pipe to-fp32 equals the single process's fp32 weights: bit for bit before
// training, within 1e-4 after 10 batches.
import { describe, expect, it } from 'vitest';

import { worldJson } from '@ds-internal/test-kit';

import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { readSafetensors } from '@ds/core';

import { main } from '../src/cli.js';
import { CLIP, referenceLosses, worstRelative, type RunOptions } from './fixtures.js';

const STEPS = 20;

interface Out {
  first: number;
  losses: number[];
  norms: (number | null)[];
  skipped: number;
  evalLoss: number | null;
  coords: { pipe: number; data: number; model: number };
  engine: string;
}

interface Job {
  world: number;
  stages: number;
  model: number;
  micro: number;
  pipeConfig?: Record<string, unknown>;
  run?: RunOptions;
  env?: Record<string, string>;
}

async function runJob(job: Job): Promise<Out[]> {
  return worldJson<Out>(job.world, new URL('./workers/train-tp.ts', import.meta.url), {
    env: {
      DS_TEST_STAGES: String(job.stages),
      DS_TEST_MODEL: String(job.model),
      DS_TEST_MICRO: String(job.micro),
      DS_TEST_STEPS: String(STEPS),
      DS_TEST_RUN: JSON.stringify(job.run ?? {}),
      ...(job.pipeConfig ? { DS_TEST_PIPE_CONFIG: JSON.stringify(job.pipeConfig) } : {}),
      ...job.env,
    },
    timeoutMs: 150_000,
  });
}

describe.each<Job>([
  { world: 2, stages: 0, model: 2, micro: 2 },
  { world: 4, stages: 2, model: 2, micro: 4 },
  { world: 4, stages: 2, model: 2, micro: 4, pipeConfig: { pipe_partitioned: false, grad_partitioned: false } },
  { world: 2, stages: 0, model: 2, micro: 2, run: { clip: CLIP } },
  { world: 4, stages: 2, model: 2, micro: 4, run: { clip: CLIP } },
  { world: 2, stages: 0, model: 2, micro: 2, run: { fp16: true } },
  { world: 4, stages: 2, model: 2, micro: 4, run: { fp16: true } },
  // ZeRO with tensor parallelism: 2 model x 2 data; the norm counts each split parameter on every model rank, a replicated one once.
  { world: 4, stages: 0, model: 2, micro: 2, run: { clip: CLIP } },
  { world: 4, stages: 0, model: 2, micro: 2, run: { zero: 1, clip: CLIP } },
  { world: 4, stages: 0, model: 2, micro: 2, run: { zero: 2, clip: CLIP } },
])('tensor parallel: $model model ranks x $stages stages on $world ranks (pipeline section $pipeConfig, $run)', (job) => {
  it('follows the single-process loss curve batch by batch', async () => {
    const { world, stages, model, micro } = job;
    const run = job.run ?? {};
    const data = world / (Math.max(stages, 1) * model);
    const want = await referenceLosses(micro, data, STEPS, run);
    const outs = await runJob(job);
    // Model ranks vary fastest: rank r is model rank r % model.
    expect(outs.map((o) => o.coords.model)).toEqual(Array.from({ length: world }, (_, r) => r % model));
    expect(outs[0]!.engine).toBe(stages === 0 ? 'TensorParallelEngine' : 'PipelineEngine');
    // Core's engine reports each data rank's own loss (a pipeline's trainBatch averages over the data ranks): compare their mean.
    const dataMean = (o: Out) => {
      const peers = outs.filter((p) => p.coords.model === o.coords.model);
      return o.losses.map((_, i) => peers.reduce((a, p) => a + p.losses[i]!, 0) / peers.length);
    };
    for (const [r, o] of outs.entries()) {
      const loss = worstRelative(stages === 0 ? dataMean(o) : o.losses, want.losses);
      expect(loss.worst, `rank ${r}: worst ${loss.at}`).toBeLessThan(1e-3);
      // The norm summed over the model (and pipe) group, replicated parameters and the tied embedding once, is the single process's.
      const norm = worstRelative(o.norms, want.norms);
      // fp16 gradients carry f16 rounding of differently ordered sums (about 1e-3 per op), so the norm is held to 1e-2 there.
      expect(norm.worst, `rank ${r}: gradient norm, worst ${norm.at}`).toBeLessThan(run.fp16 ? 1e-2 : 1e-3);
      expect(o.skipped).toBe(want.skipped);
      // The model ranks compute the same loss (the vocab-parallel cross-entropy reduces it over the group).
      expect(o.losses).toEqual(outs.find((p) => p.coords.data === o.coords.data)!.losses);
      if (stages > 0) expect(Math.abs(o.evalLoss! - want.evalLoss) / want.evalLoss, `eval ${o.evalLoss} vs ${want.evalLoss}`).toBeLessThan(1e-3);
    }
    expect(want.losses[STEPS - 1]!).toBeLessThan(want.losses[0]!);
    if (run.clip) for (const n of want.norms) expect(n).toBeGreaterThan(run.clip);
    if (run.fp16) expect(want.skipped).toBeGreaterThan(0);
  }, 180_000);
});

describe('checkpoints of 2 pipe x 2 model x 1 data', () => {
  it('reload and continue with the uninterrupted losses; ds-pipe to-fp32 gives the single process\'s weights', async () => {
    const SAVE_AT = 10;
    const dir = mkdtempSync(join(tmpdir(), 'ds-pipe-tp-ckpt-'));
    try {
      const job = { world: 4, stages: 2, model: 2, micro: 4 };
      const whole = await runJob({ ...job, env: { DS_TEST_SAVE: dir, DS_TEST_SAVE_AT: `0,${SAVE_AT}` } });
      const tag = join(dir, `global_step${SAVE_AT}`);
      // DeepSpeed's names: one mp_rank file per pipe x model slice, one file per layer and model rank, the optimizer state per slice.
      const files = readdirSync(tag);
      for (const mp of ['00', '01', '02', '03']) expect(files).toContain(`mp_rank_${mp}_model_states.safetensors`);
      for (const mp of ['00', '01', '02', '03']) expect(files).toContain(`zero_pp_rank_0_mp_rank_${mp}_optim_states.safetensors`);
      for (const layer of ['00', '01', '02', '03', '04']) for (const m of ['00', '01']) expect(files).toContain(`layer_${layer}-model_${m}-model_states.safetensors`);

      const resumed = await runJob({ ...job, env: { DS_TEST_LOAD: dir } });
      for (const [r, o] of resumed.entries()) {
        expect(o.first, `rank ${r}`).toBe(SAVE_AT);
        expect(o.losses, `rank ${r}`).toEqual(whole[r]!.losses.slice(SAVE_AT));
        expect(o.evalLoss, `rank ${r}`).toBe(whole[r]!.evalLoss);
      }

      // Before training the joined shards are the single process's initial weights bit for bit (each
      // shard was cut from them); after 10 batches they follow it up to the order of the sums, which
      // Adam's normalised steps carry into the weights (at most 1e-4 here, steps of lr 1e-2).
      for (const [at, tol] of [[0, 0], [SAVE_AT, 1e-4]] as const) {
        const out = join(dir, `fp32-${at}.safetensors`);
        const cli = main(['to-fp32', dir, out, '--tag', `global_step${at}`]);
        expect(cli.code, cli.out).toBe(0);
        const got = readSafetensors(out).tensors;
        const { snapshot } = await referenceLosses(job.micro, 1, at, {}, at);
        // The single process's names: the same layers with the blocks one level deeper ('1.block.attn...').
        const want = new Map([...snapshot!].map(([n, w]) => [n.replace('.block.', '.'), w]));
        expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
        for (const [name, w] of want) {
          const g = got.get(name)!.data as Float32Array;
          expect(g.length, name).toBe(w.length);
          let worst = 0;
          let i = 0;
          for (let k = 0; k < w.length; k++) {
            const d = Math.abs(g[k]! - w[k]!);
            if (d > worst) (worst = d), (i = k);
          }
          expect(worst, `step ${at}: ${name}[${i}]: ${g[i]} vs ${w[i]}`).toBeLessThanOrEqual(tol);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
