// The main job: train a byte-level GPT data-parallel on the CPU.
//
//   cd examples/gpt && pnpm exec ds --num_gpus 2 train.ts --deepspeed_config ds_config.json
//
// Every rank runs this script; the launcher sets RANK/WORLD_SIZE/MASTER_ADDR, and initialize()
// joins the process group. Rank 0 prints progress, evaluates, samples text and writes the summary.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { initialize, type Plugin } from '@ds/core';
import { fromArray, GPT, MEMORY_CATEGORIES, tidy, type Tensor } from '@ds/tensor';

import { generateCorpus } from './src/corpus.js';
import { sampleBatch, splitTokens } from './src/data.js';
import { ProgressBar } from './src/progress.js';
import { formatBytes, lossCurveSvg, table, type CurvePoint } from './src/report.js';
import { evaluate, generate } from './src/sample.js';
import { BYTE_VOCAB, decode, encode, unigramEntropy } from './src/tokenizer.js';

const here = dirname(fileURLToPath(import.meta.url));

const MODELS = {
  tiny: { nLayer: 1, nHead: 2, nEmbd: 32, seq: 32 },
  small: { nLayer: 4, nHead: 4, nEmbd: 128, seq: 64 },
  base: { nLayer: 6, nHead: 6, nEmbd: 192, seq: 128 },
} as const;

const { values: args } = parseArgs({
  options: {
    deepspeed_config: { type: 'string', default: join(here, 'ds_config.json') },
    deepspeed: { type: 'boolean', default: false },
    // Passed by ds (as by DeepSpeed's launcher) unless --no_local_rank; LOCAL_RANK carries the same.
    local_rank: { type: 'string' },
    model: { type: 'string', default: 'base' },
    steps: { type: 'string', default: '300' },
    'corpus-bytes': { type: 'string', default: '400000' },
    'eval-every': { type: 'string', default: '50' },
    'eval-batches': { type: 'string', default: '8' },
    'save-every': { type: 'string', default: '100' },
    'sample-tokens': { type: 'string', default: '200' },
    out: { type: 'string', default: join(process.cwd(), 'gpt-run') },
    resume: { type: 'boolean', default: false },
    seed: { type: 'string', default: '1234' },
    zero: { type: 'boolean', default: false },
  },
  allowPositionals: false,
});

function int(name: string, v: string | undefined): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`--${name} must be a non-negative integer, got '${v}'`);
  return n;
}

const modelName = args.model as keyof typeof MODELS;
if (!(modelName in MODELS)) throw new RangeError(`--model must be one of ${Object.keys(MODELS).join(', ')}, got '${args.model}'`);
const shape = MODELS[modelName];
const totalSteps = int('steps', args.steps);
const evalEvery = int('eval-every', args['eval-every']);
const saveEvery = int('save-every', args['save-every']);
const seed = int('seed', args.seed);
const outDir = resolve(args.out!);

/** Plugins the config may need, loaded only if it asks for them (so @ds/zero stays optional). */
async function pluginsFor(configPath: string): Promise<Plugin[]> {
  const text = readFileSync(configPath, 'utf8');
  if (!/"zero_optimization"/.test(text) && !args.zero) return [];
  const name = '@ds/zero';
  const mod = (await import(name)) as { zero?: () => Plugin };
  if (!mod.zero) throw new Error('@ds/zero does not export zero(); update @ds/zero');
  return [mod.zero()];
}

// ---- data -------------------------------------------------------------------------------------
const ids = encode(generateCorpus(int('corpus-bytes', args['corpus-bytes']), seed));
const { train, val } = splitTokens(ids, 0.1);
const entropy = unigramEntropy(train);

// ---- model and engine -------------------------------------------------------------------------
const model = new GPT({ vocabSize: BYTE_VOCAB, blockSize: shape.seq, nLayer: shape.nLayer, nHead: shape.nHead, nEmbd: shape.nEmbd, seed });
const { engine } = await initialize({ model, config: args.deepspeed_config!, plugins: await pluginsFor(args.deepspeed_config!) });
const rank = engine.rank;
const micro = engine.trainMicroBatchSizePerGpu();
const gas = engine.gradientAccumulationSteps();
const tokensPerStep = engine.trainBatchSize() * shape.seq;
const log = (m: string) => rank === 0 && console.log(m);

let startStep = 0;
const trainCurve: CurvePoint[] = [];
const valCurve: CurvePoint[] = [];
if (args.resume) {
  const { path, clientState } = await engine.loadCheckpoint(outDir);
  if (path && clientState) {
    startStep = clientState.step as number;
    trainCurve.push(...(clientState.trainCurve as CurvePoint[]));
    valCurve.push(...(clientState.valCurve as CurvePoint[]));
    log(`resumed from ${path} at step ${startStep}`);
  } else log(`--resume: no checkpoint in ${outDir}; starting from step 0`);
}

log(
  `GPT ${modelName}: ${model.numParameters().toLocaleString('en-US')} parameters, ${engine.worldSize} rank(s), ` +
    `batch ${engine.trainBatchSize()} x ${shape.seq} tokens (micro ${micro} x accumulation ${gas} x ${engine.dpWorldSize} ranks), ` +
    `${engine.paramDtype}, ZeRO stage ${engine.zeroStage}`,
);
log(`corpus: ${ids.length.toLocaleString('en-US')} bytes, unigram entropy ${entropy.toFixed(4)} nats/token`);

const valBatches = Array.from({ length: int('eval-batches', args['eval-batches']) }, (_, i) => sampleBatch(val, micro, shape.seq, seed + 1, 0, i));
const runEval = () => evaluate(engine.module, valBatches, micro, shape.seq);

async function save(step: number): Promise<void> {
  await engine.saveCheckpoint(outDir, { clientState: { step, trainCurve, valCurve } });
}

// ---- training ---------------------------------------------------------------------------------
const bar = new ProgressBar(process.stdout, 10);
const t0 = performance.now();
let tokensSeen = 0;
for (let step = startStep; step < totalSteps; step++) {
  const ts = performance.now();
  let loss = 0;
  for (let m = 0; m < gas; m++) {
    const b = sampleBatch(train, micro, shape.seq, seed, rank, step * gas + m);
    const x = fromArray(b.inputs, [micro, shape.seq], { dtype: 'i32' });
    const y = fromArray(b.targets, [micro, shape.seq], { dtype: 'i32' });
    const l = tidy(() => engine.forward<{ loss: Tensor }>(x, y).loss.keep());
    loss += (await engine.backward(l)) / gas;
    l.dispose();
    x.dispose();
    y.dispose();
    await engine.step();
  }
  tokensSeen += tokensPerStep;
  trainCurve.push({ step: step + 1, value: loss });
  const elapsed = (performance.now() - t0) / 1000;
  if (rank === 0) bar.update({ step: step + 1, totalSteps, loss, tokensPerSec: tokensPerStep / ((performance.now() - ts) / 1000), lr: engine.getLr()[0] ?? 0, elapsedSec: elapsed });
  if (evalEvery > 0 && ((step + 1) % evalEvery === 0 || step + 1 === totalSteps)) {
    const v = runEval();
    valCurve.push({ step: step + 1, value: v });
    if (rank === 0) bar.log(`step ${step + 1}: validation loss ${v.toFixed(4)} (unigram entropy ${entropy.toFixed(4)})`);
  }
  if (saveEvery > 0 && (step + 1) % saveEvery === 0) await save(step + 1);
}
if (rank === 0) bar.done();
const wall = (performance.now() - t0) / 1000;
if (totalSteps > startStep && (saveEvery === 0 || totalSteps % saveEvery !== 0)) await save(totalSteps);

// ---- the end: sample, summary, curve ------------------------------------------------------------
const finalVal = valCurve.at(-1)?.value ?? runEval();
const prompt = Array.from(encode('Mara '));
const text = decode(generate((x) => (engine.module.call(x) as { logits: Tensor }).logits, prompt, { maxNewTokens: int('sample-tokens', args['sample-tokens']), temperature: 0.8, blockSize: shape.seq, seed }));

// Every rank reports its peak memory by category; rank 0 collects them through files in outDir.
mkdirSync(outDir, { recursive: true });
const usage = engine.runtime.tracker.snapshot().cpu;
writeFileSync(join(outDir, `memory.rank${rank}.json`), JSON.stringify(usage));
await engine.dist?.world.barrier();

if (rank === 0) {
  const timers = engine.timers.total();
  const rows: [string, string][] = [
    ['steps', `${totalSteps} (this run: ${totalSteps - startStep})`],
    ['final train loss', (trainCurve.at(-1)?.value ?? NaN).toFixed(4)],
    ['final validation loss', finalVal.toFixed(4)],
    ['unigram entropy of the corpus', entropy.toFixed(4)],
    ['tokens/s (all ranks)', Math.round(tokensSeen / Math.max(wall, 1e-9)).toLocaleString('en-US')],
    ['wall time', `${wall.toFixed(1)} s`],
    ...(['forward', 'backward', 'backward_allreduce', 'step'] as const).map((k): [string, string] => [`time in ${k}`, `${((timers[k] ?? 0) / 1000).toFixed(2)} s`]),
  ];
  for (let r = 0; r < engine.worldSize; r++) {
    const u = JSON.parse(readFileSync(join(outDir, `memory.rank${r}.json`), 'utf8')) as { peak: number; categories: Record<string, { peak: number }> };
    rows.push([`rank ${r} peak memory`, formatBytes(u.peak)]);
    for (const c of MEMORY_CATEGORIES) if ((u.categories[c]?.peak ?? 0) > 0) rows.push([`  ${c}`, formatBytes(u.categories[c]!.peak)]);
  }
  console.log('\nSample (prompt "Mara "):\n' + text + '\n');
  console.log(table(rows, 'Training summary'));
  const svg = lossCurveSvg(
    [
      { name: 'train loss', color: '#1f77b4', points: trainCurve },
      { name: 'validation loss', color: '#d62728', points: valCurve, markers: true },
      { name: 'unigram entropy', color: '#7f7f7f', dashed: true, points: [{ step: trainCurve[0]?.step ?? 0, value: entropy }, { step: totalSteps, value: entropy }] },
    ],
    `GPT ${modelName} on ${engine.worldSize} rank(s)`,
  );
  writeFileSync(join(outDir, 'loss.svg'), svg);
  console.log(`loss curve: ${join(outDir, 'loss.svg')}; checkpoints: ${outDir}`);
  if (!(finalVal < entropy)) console.log(`warning: the validation loss ${finalVal.toFixed(4)} is not below the unigram entropy ${entropy.toFixed(4)}: train longer`);
}
engine.destroy();
await engine.dist?.destroy();
