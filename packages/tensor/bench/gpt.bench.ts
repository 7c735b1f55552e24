// gpt_train_tokens_per_s[_<shape>]: GPT-2 trained with bf16 autocast over f32 parameters:
// forward + backward + AdamW (the table's fused kernel) on 2 threads, at two shapes so the speed is
// not tuned to one size:
//   gpt_train_tokens_per_s               vocab 8192, seq 256, d 256, 4 heads, 4 layers, batch 8
//   gpt_train_tokens_per_s_d384_l6_s512  vocab 8192, seq 512, d 384, 6 heads, 6 layers, batch 4
// Anchor: the same model and step in PyTorch with bf16 autocast, measured in the same run by
// bench/gpt_torch.py when torch is importable. `--smoke` runs one step of a tiny model per row.

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randint, zeros } from '../src/create.js';
import { tidy } from '../src/memory/scope.js';
import { GPT } from '../src/nn/gpt.js';
import { adamwStep } from '../src/ops/optim.js';
import { autocast, getRuntime, withCategory } from '../src/runtime.js';
import type { Tensor } from '../src/tensor.js';
import type { Row } from './run.js';

interface Shape {
  metric: string;
  model: { vocabSize: number; blockSize: number; nLayer: number; nHead: number; nEmbd: number };
  batch: number;
  seq: number;
}

const SHAPES: Shape[] = [
  { metric: 'gpt_train_tokens_per_s', model: { vocabSize: 8192, blockSize: 256, nLayer: 4, nHead: 4, nEmbd: 256 }, batch: 8, seq: 256 },
  { metric: 'gpt_train_tokens_per_s_d384_l6_s512', model: { vocabSize: 8192, blockSize: 512, nLayer: 6, nHead: 6, nEmbd: 384 }, batch: 4, seq: 512 },
];
/** What `--smoke` runs in place of each shape: one step of a model small enough for CI. */
const SMOKE_MODEL = { vocabSize: 64, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32 };
const THREADS = 2;

interface TorchResult {
  tokens_per_s: number;
  torch: string;
}

/** Runs the PyTorch anchor; returns its figure or the reason there is none. */
function torchAnchor(cfg: Record<string, number>): TorchResult | string {
  const script = fileURLToPath(new URL('./gpt_torch.py', import.meta.url));
  for (const python of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 });
    if (probe.status !== 0) continue;
    const run = spawnSync(python, [script, JSON.stringify(cfg)], { encoding: 'utf8', timeout: 1_200_000, env: { ...process.env, OMP_NUM_THREADS: String(cfg.threads) } });
    if (run.status !== 0) return `the PyTorch anchor failed: ${(run.stderr || String(run.error)).trim().split('\n').pop()}`;
    return JSON.parse(run.stdout.trim().split('\n').pop()!) as TorchResult;
  }
  return 'torch is not importable here (python3 -c "import torch" failed)';
}

export async function run(opts: { smoke: boolean }): Promise<Row[]> {
  const rt = getRuntime();
  const kernels = rt.kernels('cpu');
  const threadsBefore = kernels.getNumThreads();
  kernels.setNumThreads(THREADS);
  try {
    return SHAPES.map((shape) => measure(opts.smoke ? { ...shape, model: SMOKE_MODEL, batch: 2, seq: SMOKE_MODEL.blockSize } : shape, opts, kernels.name));
  } finally {
    kernels.setNumThreads(threadsBefore);
  }
}

function measure(shape: Shape, opts: { smoke: boolean }, kernelsName: string): Row {
  const { model, batch, seq } = shape;
  const warmup = opts.smoke ? 0 : 1;
  const steps = opts.smoke ? 1 : 3;
  const rt = getRuntime();

  const gpt = new GPT({ ...model, seed: 0 });
  const params = gpt.parameters();
  const moments = new Map<Tensor, [Tensor, Tensor]>();
  withCategory('optimizer_states', () => {
    for (const p of params) moments.set(p, [zeros(p.shape).keep(), zeros(p.shape).keep()]);
  });
  const ids = randint([batch, seq], model.vocabSize, { seed: 1 }).keep();
  const targets = randint([batch, seq], model.vocabSize, { seed: 2 }).keep();
  let stepNo = 0;
  const step = (): number => {
    const loss = tidy(() => {
      const l = autocast('bf16', () => gpt.call(ids, targets).loss!);
      l.backward();
      return l.item();
    });
    stepNo++;
    for (const p of params) {
      const [m, v] = moments.get(p)!;
      adamwStep(p, p.grad!, m, v, { lr: 1e-4, weightDecay: 0.1, step: stepNo });
    }
    gpt.zeroGrad();
    return loss;
  };
  for (let i = 0; i < warmup; i++) step();
  rt.tracker.resetPeak();
  const t0 = performance.now();
  let lastLoss = NaN;
  for (let i = 0; i < steps; i++) lastLoss = step();
  const seconds = (performance.now() - t0) / 1000;
  const value = (batch * seq * steps) / seconds;

  const cfg = { ...model, batch, seq, threads: THREADS, warmup, steps };
  // A smoke run's figures mean nothing, so it skips the (slow) PyTorch anchor.
  const anchor = opts.smoke ? 'smoke run: the PyTorch anchor is measured only in full runs' : torchAnchor(cfg);
  const anchorValue = typeof anchor === 'string' ? null : anchor.tokens_per_s;
  for (const [m, v] of moments.values()) {
    m.dispose();
    v.dispose();
  }
  ids.dispose();
  targets.dispose();
  gpt.zeroGrad();
  const parameters = gpt.numParameters();
  for (const p of params) p.dispose();  // the next shape's peak memory should not count this model
  return {
    metric: shape.metric,
    value,
    unit: 'tokens/s',
    anchor: typeof anchor === 'string' ? null : 'PyTorch bf16 autocast (torch.optim.AdamW), same model, same run, same thread count',
    anchorValue,
    ratio: anchorValue ? value / anchorValue : null,
    config: {
      ...cfg,
      kernels: kernelsName,
      precision: 'bf16 autocast, f32 parameters and AdamW',
      peakBytes: rt.tracker.peakBytes('cpu'),
      peakActivationBytes: rt.tracker.peakBytes('cpu', 'activations'),
      parameters,
      lastLoss,
      note: `d ${model.nEmbd}, ${model.nLayer} layers, ${model.nHead} heads, seq ${seq}, batch ${batch}, vocab ${model.vocabSize}; ${steps} steps after ${warmup} warm-up`,
      ...(typeof anchor === 'string' ? { anchorMissing: anchor } : { torch: anchor.torch }),
    },
  };
}
