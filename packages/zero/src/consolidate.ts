// `ds-zero to-fp32`: DeepSpeed's zero_to_fp32.py for this engine's checkpoints. Reads the tag in
// `latest` (or the one given), its meta.json and every rank's partitioned state file, and rebuilds
// whole fp32 tensors by parameter name from the ranks' shards of the fp32 masters. Long work reports
// progress (rank files read, bytes, elapsed) through an optional ConsolidateProgress.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { DSCheckpointError, META, optimStatesFile, readSafetensors, resolveLoadTag, writeSafetensors, type NamedTensor, type RankState } from '@ds/core';

import { ConsolidateProgress, type ConsolidateProgressOptions } from './consolidate-progress.js';
import { readAllRanks } from './rank-state.js';

export interface ConsolidateOptions extends ConsolidateProgressOptions {
  /** Receives progress lines once the work has run longer than `after` (default 1 s); none without it. */
  progress?: (line: string) => void;
}

export interface Consolidated {
  tag: string;
  world: number;
  stage: number;
  tensors: Map<string, NamedTensor>;
}

function readRankFile(path: string): RankState {
  const f = readSafetensors(path);
  const raw = f.metadata.ds_rank_meta;
  if (!raw) throw new DSCheckpointError(`${path} has no ds_rank_meta metadata: not an optimizer-state file of this engine`);
  return { tensors: f.tensors, meta: JSON.parse(raw) as Record<string, unknown> };
}

/** Whole fp32 weights of a partitioned checkpoint in `dir` (tag: `latest` unless given). */
export function consolidateFp32(dir: string, tag?: string, opts: ConsolidateOptions = {}): Consolidated {
  return consolidateWith(dir, tag, opts).consolidated;
}

function consolidateWith(dir: string, tag: string | undefined, opts: ConsolidateOptions): { consolidated: Consolidated; progress: ConsolidateProgress | null } {
  const resolved = resolveLoadTag(dir, tag);
  if (resolved === null) throw new DSCheckpointError(`no 'latest' file in ${dir} and no tag given; pass --tag`);
  const path = join(dir, resolved);
  const metaPath = join(path, META);
  if (!existsSync(metaPath)) throw new DSCheckpointError(`checkpoint '${resolved}' in ${dir} has no ${META}`);
  const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as { partitioned?: boolean; dp_world_size?: number; zero_stage?: number };
  if (!meta.partitioned) {
    throw new DSCheckpointError(`checkpoint ${path} was written by ZeRO stage ${meta.zero_stage ?? 0} without partitioned state; its model_states.safetensors already holds whole weights (to-fp32 consolidates ZeRO stage 1-3 checkpoints)`);
  }
  const world = meta.dp_world_size ?? 1;
  const found = Array.from({ length: world }, (_, r) => existsSync(join(path, optimStatesFile(r)))).filter(Boolean).length;
  if (found !== world) throw new DSCheckpointError(`Expected ${world} of '*_optim_states.safetensors' under ${path} but found ${found} files`);
  const progress = opts.progress ? new ConsolidateProgress(opts.progress, world, opts) : null;
  const { meta: shard, fp32 } = readAllRanks(world, (r) => {
    const file = join(path, optimStatesFile(r));
    const state = readRankFile(file);
    progress?.rankFile(optimStatesFile(r), statSync(file).size);
    return state;
  });
  const tensors = new Map<string, NamedTensor>();
  for (const [name, data] of fp32) tensors.set(name, { dtype: 'f32', shape: shard.shapes[name] ?? [data.length], data });
  return { consolidated: { tag: resolved, world, stage: shard.zero_stage, tensors }, progress };
}

/** Writes the consolidated weights to one safetensors file. */
export function writeFp32(dir: string, out: string, tag?: string, opts: ConsolidateOptions = {}): Consolidated {
  const { consolidated: c, progress } = consolidateWith(dir, tag, opts);
  writeSafetensors(out, c.tensors, { format: 'pt', source: 'ds-zero to-fp32', tag: c.tag });
  progress?.wrote(out, statSync(out).size);
  progress?.done();
  return c;
}
