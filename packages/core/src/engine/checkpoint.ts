// Engine checkpoints: collective save and load on top of the layout in ../checkpoint/layout.ts.
// With model or pipeline parallelism every pipe x model slice writes its own files (DeepSpeed's
// mp_rank_NN names) and reads its own back, so a checkpoint loads on the same pipe and model degrees
// with any data degree.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { DSCheckpointError } from '../errors.js';
import { checkModuleFileName, checkTag, commitStaging, META, MODEL_STATES, modelStatesFile, optimStatesFile, prepareStaging, resolveLoadTag, tagDir } from '../checkpoint/layout.js';
import { CheckpointProgress } from '../checkpoint/progress.js';
import { readSafetensors, writeSafetensors, type NamedTensor } from '../checkpoint/safetensors.js';
import type { Engine, EngineParts } from './engine.js';
import { moduleFileLayout, modelParallelSplits, type ModelParallelSplit, type RankState } from './types.js';

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
  /** Absent in checkpoints written before model and pipeline parallelism could be saved (read as 1). */
  pipe_parallel_size?: number;
  model_parallel_size?: number;
  /** Slices (pipe x model), each with its mp_rank files; 1 means the plain layout. */
  mp_world_size?: number;
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

/**
 * Where this rank's files go. Without model or pipeline parallelism: the data rank names the
 * optimizer file and data rank 0 writes model_states. With them (mpWorld > 1) each pipe x model
 * slice is numbered as DeepSpeed's pipeline grid numbers it, and data rank 0 of each slice writes
 * that slice's module weights, so every part of the model is written exactly once.
 */
interface RankFiles {
  dpRank: number;
  /** The slice's number, or undefined without model or pipeline parallelism. */
  mpRank: number | undefined;
  /** Global rank 0: stages the directory, writes meta.json and commits. */
  lead: boolean;
}

function rankFiles(parts: EngineParts): RankFiles {
  const { topology, coords, data, world } = parts.groups;
  const { pipe, model } = topology.degrees;
  return { dpRank: data?.rank ?? 0, mpRank: pipe * model > 1 ? coords.pipe * model + coords.model : undefined, lead: (world?.rank ?? 0) === 0 };
}

/** The model-parallel part of an mp_rank file's metadata: enough to reload the slice and to merge slices offline. */
export interface ModelParallelFileMeta {
  mp_rank: number;
  pipe_stage: number;
  model_rank: number;
  pipe_parallel_size: number;
  model_parallel_size: number;
  /** The module's own weight files (prefix stripped from the names inside); empty when the weights are in this file. */
  files: { file: string; prefix: string }[];
  /** Parameters split across the model group, by name, with their split (the others are replicated). */
  splits: Record<string, ModelParallelSplit>;
}

/** Writes a slice's module weights: the module's own files if it names them, the rest in mp_rank_NN; returns the files written. */
function writeSliceWeights(staging: string, parts: EngineParts, weights: Map<string, NamedTensor>, mpRank: number): string[] {
  const { topology, coords } = parts.groups;
  const files = (moduleFileLayout(parts.module)?.checkpointFiles(coords.model) ?? []).map((f) => ({ file: checkModuleFileName(f.file), prefix: f.prefix }));
  const rest = new Map(weights);
  const written: string[] = [];
  for (const { file, prefix } of files) {
    const own = new Map<string, NamedTensor>();
    for (const [name, t] of weights) {
      if (!name.startsWith(prefix)) continue;
      own.set(name.slice(prefix.length), t);
      rest.delete(name);
    }
    writeSafetensors(join(staging, file), own, { format: 'pt' });
    written.push(file);
  }
  const split = modelParallelSplits(parts.module);
  const splits: Record<string, ModelParallelSplit> = {};
  for (const [name, p] of parts.module.namedParameters()) {
    const s = split.get(p);
    if (s && weights.has(name)) splits[name] = s;
  }
  const meta: ModelParallelFileMeta = { mp_rank: mpRank, pipe_stage: coords.pipe, model_rank: coords.model, pipe_parallel_size: topology.degrees.pipe, model_parallel_size: topology.degrees.model, files, splits };
  writeSafetensors(join(staging, modelStatesFile(mpRank)), rest, { format: 'pt', ds_model_parallel: JSON.stringify(meta) });
  written.push(modelStatesFile(mpRank));
  return written;
}

/** A slice's module weights back under the module's names. */
function readSliceWeights(path: string, mpRank: number, progress: CheckpointProgress): Map<string, NamedTensor> {
  const file = modelStatesFile(mpRank);
  if (!existsSync(join(path, file))) throw new DSCheckpointError(`checkpoint ${path} has no ${file}: it was not saved with this pipe x model layout`);
  const f = readSafetensors(join(path, file));
  progress.file(file, statSync(join(path, file)).size);
  const raw = f.metadata.ds_model_parallel;
  if (!raw) throw new DSCheckpointError(`${join(path, file)} has no ds_model_parallel metadata: not a model-parallel checkpoint of this engine`);
  const meta = JSON.parse(raw) as ModelParallelFileMeta;
  const weights = new Map(f.tensors);
  for (const { file: own, prefix } of meta.files) {
    const g = readSafetensors(join(path, checkModuleFileName(own)));
    progress.file(own, statSync(join(path, own)).size);
    // A module listed twice on one slice (a tied layer used twice by one stage) has the same weights in both files.
    for (const [name, t] of g.tensors) if (!weights.has(prefix + name)) weights.set(prefix + name, t);
  }
  return weights;
}

export async function saveEngineCheckpoint(engine: Engine, parts: EngineParts, dir: string, opts: SaveCheckpointOptions): Promise<string> {
  const tag = checkTag(opts.tag ?? `global_step${engine.globalSteps}`);
  await validateTag(parts, tag);
  // Files are named by data-parallel rank (each holds that rank's partition) and, with model or pipeline parallelism, by slice; every rank of the job waits at the barriers.
  const { dpRank, mpRank, lead } = rankFiles(parts);
  const world = parts.groups.world;
  const barrier = async () => {
    if (world && world.size > 1) await world.barrier();
  };
  if (lead) {
    mkdirSync(dir, { recursive: true });
    prepareStaging(dir, tag);
  }
  await barrier();
  const staging = join(dir, `.${tag}.partial`);
  // Rank 0's own files (the log is silent elsewhere); the other writers write as many again.
  const progress = new CheckpointProgress(parts.log, 'saving', join(dir, tag));
  const written = (file: string) => progress.file(file, statSync(join(staging, file)).size);
  const weights = await parts.state.moduleState();
  if (parts.state.partitioned || dpRank === 0) {
    const [tensors, meta] = toFile(parts.state.rankState());
    writeSafetensors(join(staging, optimStatesFile(dpRank, mpRank)), tensors, meta);
    written(optimStatesFile(dpRank, mpRank));
  }
  if (dpRank === 0) {
    if (mpRank === undefined) {
      writeSafetensors(join(staging, MODEL_STATES), weights, { format: 'pt' });
      written(MODEL_STATES);
    } else {
      for (const file of writeSliceWeights(staging, parts, weights, mpRank)) written(file);
    }
  }
  if (lead) {
    const { degrees } = parts.groups.topology;
    const meta: Meta = {
      format: 'ds-ts-checkpoint',
      version: 1,
      tag,
      global_steps: engine.globalSteps,
      global_samples: engine.globalSamples,
      micro_steps: engine.microSteps,
      skipped_steps: engine.skippedSteps,
      dp_world_size: engine.dpWorldSize,
      pipe_parallel_size: degrees.pipe,
      model_parallel_size: degrees.model,
      mp_world_size: degrees.pipe * degrees.model,
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
  if (lead) commitStaging(dir, tag, opts.saveLatest ?? true);
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
  const { degrees } = parts.groups.topology;
  const savedPipe = meta.pipe_parallel_size ?? 1;
  const savedModel = meta.model_parallel_size ?? 1;
  if (savedPipe !== degrees.pipe || savedModel !== degrees.model) {
    throw new DSCheckpointError(
      `checkpoint ${path} was saved with pipe ${savedPipe} x model ${savedModel} but this job is ${parts.groups.topology}; load it with the same pipe and model degrees (the data degree may differ)`,
    );
  }
  const { mpRank } = rankFiles(parts);
  const progress = new CheckpointProgress(parts.log, 'loading', path);
  let weights: Map<string, NamedTensor>;
  if (mpRank === undefined) {
    weights = readSafetensors(join(path, MODEL_STATES)).tensors;
    progress.file(MODEL_STATES, statSync(join(path, MODEL_STATES)).size);
  } else {
    weights = readSliceWeights(path, mpRank, progress);
  }
  const loadOptimizer = !opts.loadModuleOnly && (opts.loadOptimizerStates ?? true);
  await parts.state.loadModuleState(weights, !loadOptimizer);
  if (opts.loadModuleOnly) {
    progress.done();
    return { path, clientState: meta.client_state };
  }
  if (loadOptimizer) {
    const savedWorld = meta.partitioned ? meta.dp_world_size : 1;
    for (let r = 0; r < savedWorld; r++) {
      if (!existsSync(join(path, optimStatesFile(r, mpRank)))) {
        throw new DSCheckpointError(`checkpoint ${path} was saved by ${meta.dp_world_size} data-parallel rank(s) but ${optimStatesFile(r, mpRank)} is missing`);
      }
    }
    parts.state.loadRankStates(savedWorld, (r) => readRank(path, optimStatesFile(r, mpRank), progress));
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
