// The partitioned checkpoint format: each rank writes its shard (fp32 masters and optimizer
// moments, the concatenation of its blocks of every unit) plus the unit layout, named by parameter.
// From the files of all saved ranks any plan can rebuild whole fp32 tensors by name and cut its own
// shard out of them: a checkpoint saved on 4 ranks loads on 2, across stages too, and
// `ds-zero to-fp32` consolidates it into one file.
import { DSCheckpointError, type NamedTensor, type RankState } from '@ds/core';

import type { PartitionPlan } from '@ds/core';

export interface UnitMeta {
  padded: number;
  block: number;
  /** [name, numel] of the unit's parameters in layout order (they are contiguous from offset 0). */
  params: [string, number][];
}

export interface ShardMeta {
  format: 'ds-zero-shard';
  version: 1;
  zero_stage: number;
  world: number;
  rank: number;
  units: UnitMeta[];
  shapes: Record<string, number[]>;
  /** Names of the optimizer state arrays saved as `optimizer.<name>` (empty before the first step). */
  state_names: string[];
  optimizer: { type: string; paramGroups: unknown[]; step: number };
}

export function describeUnits(plan: PartitionPlan, names: readonly string[], sizes: readonly number[]): UnitMeta[] {
  return plan.units.map((u) => ({ padded: u.padded, block: u.block, params: u.params.map((i): [string, number] => [names[i]!, sizes[i]!]) }));
}

/** Copies the part of each unit's parameters that lies in block `rank` between shard and full tensors. */
function walk(units: readonly UnitMeta[], rank: number, visit: (name: string, paramFrom: number, shardAt: number, n: number) => void): void {
  let shardStart = 0;
  for (const u of units) {
    let offset = 0;
    const lo = rank * u.block;
    const hi = lo + u.block;
    for (const [name, numel] of u.params) {
      const from = Math.max(lo, offset);
      const to = Math.min(hi, offset + numel);
      if (to > from) visit(name, from - offset, shardStart + (from - lo), to - from);
      offset += numel;
    }
    shardStart += u.block;
  }
}

/** Whole fp32 tensors by name, rebuilt from every rank's shard of one array. */
export function assembleFull(units: readonly UnitMeta[], world: number, shardOf: (rank: number) => Float32Array): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const u of units) for (const [name, numel] of u.params) out.set(name, new Float32Array(numel));
  for (let r = 0; r < world; r++) {
    const shard = shardOf(r);
    walk(units, r, (name, from, at, n) => out.get(name)!.set(shard.subarray(at, at + n), from));
  }
  return out;
}

/** Fills this rank's shard from whole tensors (padding stays zero). */
export function cutShard(units: readonly UnitMeta[], rank: number, full: Map<string, Float32Array>, shard: Float32Array): void {
  shard.fill(0);
  walk(units, rank, (name, from, at, n) => {
    const src = full.get(name);
    if (!src) throw new DSCheckpointError(`checkpoint has no state for parameter '${name}'`);
    if (src.length < from + n) throw new DSCheckpointError(`checkpoint state of '${name}' has ${src.length} elements, the model needs more`);
    shard.set(src.subarray(from, from + n), at);
  });
}

export function shardMetaOf(state: RankState, file: string): ShardMeta {
  const meta = state.meta as unknown as ShardMeta;
  if (meta.format !== 'ds-zero-shard') {
    throw new DSCheckpointError(`${file} is not a @ds/zero partitioned state (stage ${String((state.meta as { stage?: unknown }).stage ?? '?')} checkpoint); load it without ZeRO or with the stage that wrote it`);
  }
  return meta;
}

function tensorOf(state: RankState, name: string, rank: number): Float32Array {
  const t = state.tensors.get(name);
  if (!t) throw new DSCheckpointError(`partitioned state of rank ${rank} lacks '${name}'`);
  return t.data as Float32Array;
}

export interface WholeState {
  meta: ShardMeta;
  fp32: Map<string, Float32Array>;
  states: Map<string, Map<string, Float32Array>>;
}

interface Stage0Meta {
  stage: 0;
  numel: number;
  optimizer: { type: string; paramGroups: unknown[]; steps: number[] };
}

/**
 * Core's stage-0 state (one file: the flat fp32 masters and optimizer slots, parameters laid out
 * back to front) as whole tensors by name, so a data-parallel checkpoint resumes under ZeRO.
 */
function fromStage0(state: RankState, names: readonly string[], sizes: readonly number[], stateNames: readonly string[]): WholeState {
  const meta = state.meta as unknown as Stage0Meta;
  const total = sizes.reduce((a, b) => a + b, 0);
  if (meta.numel !== total) throw new DSCheckpointError(`the stage-0 checkpoint covers ${meta.numel} parameters, the model has ${total}`);
  const offsets: number[] = new Array<number>(sizes.length);
  for (let i = sizes.length - 1, at = 0; i >= 0; at += sizes[i]!, i--) offsets[i] = at;
  const master = state.tensors.get('master');
  if (!master) throw new DSCheckpointError('the stage-0 checkpoint has no fp32 masters (an fp32 run); load it with loadOptimizerStates: false');
  const split = (flat: (i: number) => Float32Array, local: (i: number) => number) => new Map(names.map((n, i) => [n, flat(i).slice(local(i), local(i) + sizes[i]!)]));
  const fp32 = split(() => master.data as Float32Array, (i) => offsets[i]!);
  const states = new Map<string, Map<string, Float32Array>>();
  const oneSlot = meta.optimizer.steps.length === 1;
  for (const name of stateNames) {
    if (meta.optimizer.steps.length === 0) break;
    const slot = (i: number) => tensorOf(state, `optimizer.slot${oneSlot ? 0 : i}.${name}`, 0);
    states.set(name, split(slot, (i) => (oneSlot ? offsets[i]! : 0)));
  }
  const shapes = Object.fromEntries(names.map((n, i) => [n, [sizes[i]!]]));
  return {
    meta: { format: 'ds-zero-shard', version: 1, zero_stage: 0, world: 1, rank: 0, units: [], shapes, state_names: [...states.keys()], optimizer: { type: meta.optimizer.type, paramGroups: meta.optimizer.paramGroups, step: meta.optimizer.steps[0] ?? 0 } },
    fp32,
    states,
  };
}

/**
 * Reads every saved rank and returns whole tensors by parameter name for the masters and each
 * optimizer state. `model` (names, sizes, optimizer state names) lets a stage-0 checkpoint be read too.
 */
export function readAllRanks(savedWorld: number, read: (rank: number) => RankState, model?: { names: readonly string[]; sizes: readonly number[]; stateNames: readonly string[] }): WholeState {
  if (model && savedWorld === 1) {
    const only = read(0);
    if ((only.meta as { stage?: unknown }).stage === 0 && (only.meta as { format?: unknown }).format === undefined) return fromStage0(only, model.names, model.sizes, model.stateNames);
  }
  const states = Array.from({ length: savedWorld }, (_, r) => read(r));
  const metas = states.map((s, r) => shardMetaOf(s, `zero_pp_rank_${r}_optim_states`));
  const meta = metas[0]!;
  if (meta.world !== savedWorld) throw new DSCheckpointError(`the partitioned state says it was written by ${meta.world} ranks, the checkpoint metadata says ${savedWorld}`);
  const fp32 = assembleFull(meta.units, savedWorld, (r) => tensorOf(states[r]!, 'fp32', r));
  const out = new Map<string, Map<string, Float32Array>>();
  for (const name of meta.state_names) out.set(name, assembleFull(meta.units, savedWorld, (r) => tensorOf(states[r]!, `optimizer.${name}`, r)));
  return { meta, fp32, states: out };
}

export function shardTensor(data: Float32Array): NamedTensor {
  return { dtype: 'f32', shape: [data.length], data };
}
