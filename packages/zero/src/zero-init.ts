// Construction helpers for stage 3.
//
// `zeroInit(build, opts)` partitions every trainable parameter the moment it is created, through
// @ds/tensor's parameter hook (DeepSpeed's zero.Init): rank r keeps slice r of the parameter (an
// even cut into `world` slices of ceil(numel / world) elements, tracked as 'parameters') and the
// parameter's own storage is freed before the next parameter exists. Building a model therefore
// holds about total / world plus the largest single parameter, never the whole model.
// Slices are kept in the training dtype the config selects (bf16 or fp16 when enabled, else fp32),
// as DeepSpeed's zero.Init converts each parameter to the config's dtype before partitioning it:
// the engine's 16-bit shard is that rounding of the initial values either way (its fp32 masters
// are made from the 16-bit blocks), so a 16-bit slice loses nothing and holds half the bytes.
// The model must give each parameter its initial values when it creates it (GPT does).
//
// Every rank must draw the same initial values (seed the model alike on every rank). We differ from
// DeepSpeed here: its zero.Init broadcasts rank 0's value of each parameter as it is created, but
// our module constructors are synchronous and collectives are not, so there is nothing to broadcast
// with while the model is built. Instead each rank fingerprints every parameter it slices (the sum
// and sum of squares of its values), and the engine compares the fingerprints across ranks before it
// uses a slice: ranks that drew different values fail with an error naming the parameters.
//
// Slices are cut per parameter because stage 3's units (one per module, padded, split into equal
// blocks) are only known once the whole model exists. Stage3State.create turns the slices into
// this rank's blocks unit by unit, with one all-gather of the slices per unit (collective, once),
// freeing each unit's slices as soon as its block is made.
//
// `registerExternalParameter(module, p)` tells stage 3 that `module`'s forward uses `p` although p
// is registered elsewhere, so the module's hooks gather it (DeepSpeed's function of the same name).
import { allocateFlat, DSConfigError, flatArray, releaseFlat, resolvePrecision, type PrecisionConfig, type ProcessGroup } from '@ds/core';
import { Tensor, withParameterHook, type FArray, type FloatDType, type KernelTable, type Module, type Runtime } from '@ds/tensor';

import { zeroConfigOf } from './config.js';
import { pieceOf, type PartitionPlan } from '@ds/core';

const PRE_PARTITION = Symbol.for('ds.zero.prePartition');
const EXTERNAL = Symbol.for('ds.zero.externalParameters');

export interface PrePartition {
  world: number;
  rank: number;
  shapes: Map<Tensor, number[]>;
  /** This rank's slice of each parameter: elements [rank * c, rank * c + c), c = sliceLength(numel), zero-padded, in `dtype`. */
  slices: Map<Tensor, Tensor>;
  /** The slices' dtype: the config's training dtype (bf16, f16 or f32). */
  dtype: FloatDType;
  /** Each sliced parameter's fingerprint (sum and sum of squares of its whole initial value) and name. */
  fingerprints: Map<Tensor, { sum: number; sumSquares: number; name: string }>;
  /** Set once an engine has taken the slices (and freed them). */
  consumed: boolean;
}

type Tagged = Module & { [PRE_PARTITION]?: PrePartition; [EXTERNAL]?: Set<Tensor> };

export interface ZeroInitOptions {
  /** The ds_config (or just its zero_optimization section under that key) that initialize will get. */
  config: Readonly<Record<string, unknown>>;
  rank: number;
  world: number;
}

/** Elements of each rank's slice of a parameter of `numel` elements. */
export function sliceLength(numel: number, world: number): number {
  return Math.ceil(numel / world);
}

export function zeroInit<M extends Module>(build: () => M, opts: ZeroInitOptions): M {
  const zc = zeroConfigOf(opts.config);
  if (zc.stage !== 3) throw new DSConfigError(`zeroInit partitions parameters for ZeRO stage 3, but zero_optimization.stage is ${zc.stage}`);
  const { world, rank } = opts;
  if (!(world >= 1) || !(rank >= 0 && rank < world)) throw new DSConfigError(`zeroInit: rank ${rank} is not in a world of ${world}`);
  const training = resolvePrecision(opts.config as PrecisionConfig).dtype;
  const dtype: FloatDType = training === 'bf16' ? 'bf16' : training === 'fp16' ? 'f16' : 'f32';
  const record: PrePartition = { world, rank, shapes: new Map(), slices: new Map(), dtype, fingerprints: new Map(), consumed: false };
  // Released parameters point at an empty tensor of their own device (one per device met).
  const empties = new Map<string, Tensor>();
  const model = withParameterHook((p, module, name) => {
    if (!p.requiresGrad) return; // frozen parameters stay whole, as the engine does not manage them
    const kernels = p.runtime.kernels(p.device);
    const c = sliceLength(p.numel, world);
    const from = Math.min(p.numel, rank * c);
    const to = Math.min(p.numel, from + c);
    const slice = Tensor.empty([c], dtype, { device: p.device, runtime: p.runtime, category: 'parameters', label: `zeroInit slice of ${module.constructor.name}.${name}`, track: false });
    const dst = slice.operand() as FArray;
    kernels.fill(dtype, dst, c, 0);
    if (to > from) kernels.cast(p.dtype as 'f32', (p.operand() as FArray).subarray(from, to), dtype, dst.subarray(0, to - from), to - from);
    const dt = p.dtype as FloatDType;
    record.fingerprints.set(p, {
      sum: kernels.sum(dt, p.operand() as FArray, p.numel),
      sumSquares: kernels.sumSquares(dt, p.operand() as FArray, p.numel),
      name: `parameter ${record.fingerprints.size} (${module.constructor.name}.${name}, shape [${p.shape.join(', ')}])`,
    });
    record.shapes.set(p, [...p.shape]);
    record.slices.set(p, slice);
    let empty = empties.get(p.device);
    if (!empty) {
      empty = Tensor.empty([0], 'f32', { device: p.device, runtime: p.runtime, category: 'parameters', label: 'zeroInit released parameter', track: false });
      empties.set(p.device, empty);
    }
    p.setData(empty);
  }, build);
  for (const e of empties.values()) e.dispose();
  (model as Tagged)[PRE_PARTITION] = record;
  return model;
}

/** What the unit blocks are built from the slices with: Stage3State's plan, parameters and dtype. */
export interface SliceSource {
  runtime: Runtime;
  kernels: KernelTable;
  group: ProcessGroup | null;
  plan: PartitionPlan;
  params: readonly Tensor[];
  sizes: readonly number[];
  paramDtype: FloatDType;
  /** The engine's device: slices must be there. */
  device: string;
}

/**
 * Collective, before the first unitFromSlices: every rank built the same initial values (the
 * fingerprints), on the engine's device, in a dtype the engine's parameters can take without loss.
 */
export async function checkSlices(pre: PrePartition, t: SliceSource): Promise<void> {
  for (const slice of pre.slices.values()) {
    if (slice.device !== t.device) throw new DSConfigError(`zeroInit: a parameter was built on '${slice.device}' but the engine trains on '${t.device}'; build the model on the engine's device`);
  }
  if (pre.dtype !== 'f32' && pre.dtype !== t.paramDtype) {
    throw new DSConfigError(
      `zeroInit kept ${pre.dtype} slices (the config it was given enables ${pre.dtype === 'bf16' ? 'bf16' : 'fp16'}) but the engine trains ${t.paramDtype} parameters: ` +
        'pass zeroInit the same ds_config as initialize',
    );
  }
  if (t.group && pre.world > 1) await checkSameInit(pre, t.params, t.group);
}

/**
 * Collective: writes this rank's block of unit `u` into `block` (unit.block elements in the
 * parameter dtype) for the parameters zeroInit sliced (others are left alone), then frees their
 * slices. Every rank contributes its slices of the unit back to back, one all-gather brings
 * everyone's, and the rank cuts its block out of them.
 */
export async function unitFromSlices(pre: PrePartition, t: SliceSource, u: number, block: FArray): Promise<void> {
  const { world, rank, dtype } = pre;
  const unit = t.plan.units[u]!;
  const lens = unit.params.map((i) => (pre.slices.has(t.params[i]!) ? sliceLength(t.sizes[i]!, world) : 0));
  const starts = lens.map((_, k) => lens.slice(0, k).reduce((a, b) => a + b, 0));
  const per = lens.reduce((a, b) => a + b, 0);
  if (per === 0) return;
  const buf = allocateFlat(t.runtime, dtype, per * world, 'communication', 'zeroInit slice exchange', undefined, t.device);
  const all = flatArray(buf);
  const mine = all.subarray(rank * per, (rank + 1) * per);
  unit.params.forEach((i, k) => {
    const slice = pre.slices.get(t.params[i]!);
    if (slice) t.kernels.copy(slice.operand(), mine.subarray(starts[k]!, starts[k]! + lens[k]!), lens[k]!);
  });
  if (t.group) await t.group.allGather({ dtype, array: all }, { dtype, array: mine });
  unit.params.forEach((i, k) => {
    const c = lens[k]!;
    if (c === 0) return;
    const [from, to] = pieceOf(unit.offsets[k]!, t.sizes[i]!, unit.block, rank);
    // Element j of the parameter sits in rank floor(j / c)'s slice.
    for (let j = from; j < to; ) {
      const q = Math.floor(j / c);
      const end = Math.min(to, (q + 1) * c);
      const at = q * per + starts[k]! + j - q * c;
      const from16 = unit.offsets[k]! + j - rank * unit.block;
      t.kernels.cast(dtype, all.subarray(at, at + end - j), t.paramDtype, block.subarray(from16, from16 + end - j), end - j);
      j = end;
    }
    const p = t.params[i]!;
    pre.slices.get(p)!.dispose();
    pre.slices.delete(p);
  });
  releaseFlat(buf);
}

/** After the last unit: frees any slice left (a parameter outside every unit) and marks the slices taken. */
export function finishSlices(pre: PrePartition): void {
  for (const slice of pre.slices.values()) slice.dispose();
  pre.slices.clear();
  pre.consumed = true;
}

/**
 * Collective: throws a DSConfigError on every rank when any rank's fingerprints differ from rank 0's
 * (compared bit for bit, so a NaN compares equal to itself).
 */
async function checkSameInit(pre: PrePartition, params: readonly Tensor[], group: ProcessGroup): Promise<void> {
  const sliced = params.filter((p) => pre.fingerprints.has(p));
  const mine = new Float64Array(2 * sliced.length);
  sliced.forEach((p, k) => {
    const f = pre.fingerprints.get(p)!;
    mine[2 * k] = f.sum;
    mine[2 * k + 1] = f.sumSquares;
  });
  const words = new Int32Array(mine.buffer);
  const all = new Int32Array(words.length * group.size);
  await group.allGather({ dtype: 'i32', array: all }, { dtype: 'i32', array: words });
  const differing: string[] = [];
  sliced.forEach((p, k) => {
    const ranks: number[] = [];
    for (let r = 1; r < group.size; r++) {
      const at = r * words.length + 4 * k;
      if ([0, 1, 2, 3].some((w) => all[at + w] !== all[4 * k + w])) ranks.push(r);
    }
    if (ranks.length) differing.push(`${pre.fingerprints.get(p)!.name} on rank${ranks.length > 1 ? 's' : ''} ${ranks.join(', ')}`);
  });
  if (differing.length) {
    const shown = differing.slice(0, 3).join('; ') + (differing.length > 3 ? `; and ${differing.length - 3} more` : '');
    throw new DSConfigError(
      `zeroInit: the ranks built different initial values, so the partitioned model would mix them (${differing.length} of ${sliced.length} parameters differ from rank 0: ${shown}). ` +
        'Every rank must draw the same values under zeroInit: seed the model alike on every rank (for example new GPT({ ..., seed: 1 }) with the same seed everywhere).',
    );
  }
}

/** The pieces zeroInit kept for this world, if the module was built under it. */
export function prePartitionOf(model: Module, world: number, rank: number): PrePartition | undefined {
  const rec = (model as Tagged)[PRE_PARTITION];
  if (!rec) return undefined;
  if (rec.world !== world || rec.rank !== rank) {
    throw new DSConfigError(`the model was partitioned by zeroInit for rank ${rec.rank} of ${rec.world}, but this engine runs as rank ${rank} of ${world}`);
  }
  if (rec.consumed) throw new DSConfigError('the model built under zeroInit was already handed to an engine, which took its parameter slices; build it again under zeroInit for a new engine');
  return rec;
}

export function registerExternalParameter(module: Module, p: Tensor): void {
  const m = module as Tagged;
  (m[EXTERNAL] ??= new Set()).add(p);
}

export function externalParametersOf(module: Module): ReadonlySet<Tensor> {
  return (module as Tagged)[EXTERNAL] ?? new Set();
}
