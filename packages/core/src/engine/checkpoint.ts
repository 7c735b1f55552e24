// Engine checkpoints: collective save and load on top of the layout in ../checkpoint/layout.ts.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { DSCheckpointError } from '../errors.js';
import { checkTag, commitStaging, META, MODEL_STATES, optimStatesFile, prepareStaging, resolveLoadTag, tagDir } from '../checkpoint/layout.js';
import { CheckpointProgress } from '../checkpoint/progress.js';
import { readSafetensors, writeSafetensors, type NamedTensor } from '../checkpoint/safetensors.js';
import type { Engine, EngineParts } from './engine.js';
import type { RankState } from './types.js';

export interface SaveCheckpointOptions {
  /** Default `global_step<N>`. */
  tag?: string;
  /** JSON-able state of the caller (data position, RNG seeds, ...) returned by loadCheckpoint. */
  clientState?: Record<string, unknown>;
  /** Point `latest` at this tag (default true). */
  saveLatest?: boolean;
}

export interface LoadCheckpointOptions {
  /** Default: the tag in `latest`. */
  tag?: string;
  loadOptimizerStates?: boolean;
  loadLrSchedulerStates?: boolean;
  /** Only the module weights (fp32 masters are rebuilt from them); counters stay. */
  loadModuleOnly?: boolean;
}

export interface LoadCheckpointResult {
  path: string | null;
  clientState: Record<string, unknown> | null;
}

interface Meta {
  format: 'ds-ts-checkpoint';
  version: 1;
  tag: string;
  global_steps: number;
  global_samples: number;
  micro_steps: number;
  skipped_steps: number;
  dp_world_size: number;
  zero_stage: number;
  partitioned: boolean;
  param_dtype: string;
  lr_scheduler: unknown;
  loss_scaler: unknown;
  client_state: Record<string, unknown>;
  ds_config: unknown;
}

/** A 32-bit FNV-1a hash: cheap to compare a tag across ranks. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h | 0;
}

async function validateTag(parts: EngineParts, tag: string): Promise<void> {
  const mode = parts.config.checkpoint.tag_validation.toLowerCase();
  const group = parts.groups.world;
  if (mode === 'ignore' || !group || group.size === 1) return;
  const h = Int32Array.of(hash32(tag));
  const lo = Int32Array.of(h[0]!);
  await group.allReduce({ dtype: 'i32', array: h }, { op: 'max' });
  await group.allReduce({ dtype: 'i32', array: lo }, { op: 'min' });
  if (h[0] === lo[0]) return;
  const msg = `checkpoint tag '${tag}' is not the same on every rank; pass the same tag (or none) to saveCheckpoint on all ranks`;
  if (mode === 'fail') throw new DSCheckpointError(msg);
  parts.log(msg, 'warn');
}

function toFile(state: RankState): [Map<string, NamedTensor>, Record<string, string>] {
  return [state.tensors, { ds_rank_meta: JSON.stringify(state.meta) }];
}

export async function saveEngineCheckpoint(engine: Engine, parts: EngineParts, dir: string, opts: SaveCheckpointOptions): Promise<string> {
  const tag = checkTag(opts.tag ?? `global_step${engine.globalSteps}`);
  await validateTag(parts, tag);
  // Files are named by data-parallel rank (each holds that rank's partition); every rank of the job waits at the barriers.
  const rank = parts.groups.data?.rank ?? 0;
  const world = parts.groups.world;
  const barrier = async () => {
    if (world && world.size > 1) await world.barrier();
  };
  if (rank === 0) {
    mkdirSync(dir, { recursive: true });
    prepareStaging(dir, tag);
  }
  await barrier();
  const staging = join(dir, `.${tag}.partial`);
  // Rank 0's own files (the log is silent elsewhere); with partitioned state the other ranks write as many again.
  const progress = new CheckpointProgress(parts.log, 'saving', join(dir, tag));
  const written = (file: string) => progress.file(file, statSync(join(staging, file)).size);
  const weights = await parts.state.moduleState();
  if (parts.state.partitioned || rank === 0) {
    const [tensors, meta] = toFile(parts.state.rankState());
    writeSafetensors(join(staging, optimStatesFile(rank)), tensors, meta);
    written(optimStatesFile(rank));
  }
  if (rank === 0) {
    writeSafetensors(join(staging, MODEL_STATES), weights, { format: 'pt' });
    written(MODEL_STATES);
    const meta: Meta = {
      format: 'ds-ts-checkpoint',
      version: 1,
      tag,
      global_steps: engine.globalSteps,
      global_samples: engine.globalSamples,
      micro_steps: engine.microSteps,
      skipped_steps: engine.skippedSteps,
      dp_world_size: engine.dpWorldSize,
      zero_stage: parts.state.stage,
      partitioned: parts.state.partitioned,
      param_dtype: parts.paramDtype,
      lr_scheduler: parts.lrScheduler?.stateDict() ?? null,
      loss_scaler: parts.lossScaler.stateDict(),
      client_state: opts.clientState ?? {},
      ds_config: parts.config,
    };
    writeFileSync(join(staging, META), JSON.stringify(meta, null, 2));
    written(META);
  }
  await barrier();
  if (rank === 0) commitStaging(dir, tag, opts.saveLatest ?? true);
  await barrier();
  progress.done();
  return join(dir, tag);
}

function readRank(path: string, file: string, progress: CheckpointProgress): RankState {
  const f = readSafetensors(join(path, file));
  progress.file(file, statSync(join(path, file)).size);
  const raw = f.metadata.ds_rank_meta;
  if (!raw) throw new DSCheckpointError(`${join(path, file)} has no ds_rank_meta metadata: not an optimizer-state file of this engine`);
  return { tensors: f.tensors, meta: JSON.parse(raw) as Record<string, unknown> };
}

export async function loadEngineCheckpoint(engine: Engine, parts: EngineParts, dir: string, opts: LoadCheckpointOptions): Promise<LoadCheckpointResult> {
  const tag = resolveLoadTag(dir, opts.tag);
  if (tag === null) {
    parts.log(`no 'latest' file in ${dir} and no tag given: nothing loaded`, 'warn');
    return { path: null, clientState: null };
  }
  const path = tagDir(dir, tag);
  const meta = JSON.parse(readFileSync(join(path, META), 'utf8')) as Meta;
  if (meta.format !== 'ds-ts-checkpoint') throw new DSCheckpointError(`${join(path, META)} is not a checkpoint of this engine (format '${meta.format}')`);
  const progress = new CheckpointProgress(parts.log, 'loading', path);
  const weights = readSafetensors(join(path, MODEL_STATES)).tensors;
  progress.file(MODEL_STATES, statSync(join(path, MODEL_STATES)).size);
  const loadOptimizer = !opts.loadModuleOnly && (opts.loadOptimizerStates ?? true);
  await parts.state.loadModuleState(weights, !loadOptimizer);
  if (opts.loadModuleOnly) {
    progress.done();
    return { path, clientState: meta.client_state };
  }
  if (loadOptimizer) {
    const savedWorld = meta.partitioned ? meta.dp_world_size : 1;
    for (let r = 0; r < savedWorld; r++) {
      if (!existsSync(join(path, optimStatesFile(r)))) {
        throw new DSCheckpointError(`checkpoint ${path} was saved by ${meta.dp_world_size} rank(s) but ${optimStatesFile(r)} is missing`);
      }
    }
    parts.state.loadRankStates(savedWorld, (r) => readRank(path, optimStatesFile(r), progress));
  }
  if ((opts.loadLrSchedulerStates ?? true) && parts.lrScheduler && meta.lr_scheduler) parts.lrScheduler.loadStateDict(meta.lr_scheduler as never);
  parts.lossScaler.loadStateDict(meta.loss_scaler as never);
  engine.globalSteps = meta.global_steps;
  engine.globalSamples = meta.global_samples;
  engine.microSteps = meta.micro_steps;
  engine.skippedSteps = meta.skipped_steps;
  progress.done();
  return { path, clientState: meta.client_state };
}
