// Checkpoint directory layout and the crash-safe commit protocol.
//
//   <dir>/latest                                  the tag of the newest complete checkpoint
//   <dir>/<tag>/model_states.safetensors          module weights + engine metadata (rank 0)
//   <dir>/<tag>/zero_pp_rank_<R>_optim_states.safetensors   optimizer state of data-parallel rank R
//   <dir>/<tag>/meta.json                         engine metadata, readable without a safetensors parser
//
// With model or pipeline parallelism (DeepSpeed's names; MP = the rank among the pipe x model ranks
// of one data coordinate, stage * model degree + model rank, as DeepSpeed's pipeline grid numbers them):
//   <dir>/<tag>/mp_rank_<MP:02d>_model_states.safetensors               module weights of that slice (data rank 0)
//   <dir>/<tag>/zero_pp_rank_<R>_mp_rank_<MP:02d>_optim_states.safetensors  optimizer state of data rank R there
// and a module that names its own files (a pipeline's layer_<LL>-model_<TP>-model_states) keeps its
// weights in those, listed in the mp_rank file's metadata.
//
// DeepSpeed writes torch pickles (mp_rank_00_model_states.pt, ...); we write safetensors + JSON with
// the same roles and names, so Python tools can read them (deliberate difference: no pickle).
//
// Commit protocol: every rank writes into <dir>/.<tag>.partial; after a barrier rank 0 swaps it into
// place with renames and then rewrites `latest` through a temporary file. A crash at any point leaves
// `latest` naming the previous checkpoint, whole.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { DSCheckpointError } from '../errors.js';

export const MODEL_STATES = 'model_states.safetensors';
export const META = 'meta.json';
export const LATEST = 'latest';

const pad2 = (n: number) => String(n).padStart(2, '0');

/** Optimizer state of data-parallel rank `dpRank`; with `mpRank`, of that model-parallel slice. */
export function optimStatesFile(dpRank: number, mpRank?: number): string {
  return mpRank === undefined ? `zero_pp_rank_${dpRank}_optim_states.safetensors` : `zero_pp_rank_${dpRank}_mp_rank_${pad2(mpRank)}_optim_states.safetensors`;
}

/** Module weights (or, for a module with its own files, their list) of model-parallel slice `mpRank`. */
export function modelStatesFile(mpRank: number): string {
  return `mp_rank_${pad2(mpRank)}_model_states.safetensors`;
}

/** A file name a module chose for its weights: a plain name inside the tag directory, not one of ours. */
export function checkModuleFileName(file: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*\.safetensors$/.test(file) || file === MODEL_STATES || /^(mp_rank_|zero_pp_rank_)/.test(file)) {
    throw new DSCheckpointError(`checkpoint: the module names a weights file '${file}'; a module's own files must be plain names ending in .safetensors (letters, digits, '_', '.', '-') other than the engine's model_states / mp_rank_ / zero_pp_rank_ files`);
  }
  return file;
}

export function stagingDir(dir: string, tag: string): string {
  return join(dir, `.${tag}.partial`);
}

/** Tags become directory names: no separators, no leading dot, nothing empty. */
export function checkTag(tag: string): string {
  if (tag.length === 0 || tag.includes('/') || tag.includes('\\') || tag.startsWith('.') || tag.includes('\0')) {
    throw new DSCheckpointError(`checkpoint tag '${tag}' cannot be used as a directory name (no '/', '\\', leading '.', or empty tag)`);
  }
  return tag;
}

/** Rank 0, before anyone writes: a fresh staging directory. */
export function prepareStaging(dir: string, tag: string): string {
  const staging = stagingDir(dir, tag);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  return staging;
}

/** Rank 0, after every rank wrote: put the staging directory in place of <tag>, then point `latest` at it. */
export function commitStaging(dir: string, tag: string, saveLatest: boolean): string {
  const staging = stagingDir(dir, tag);
  const final = join(dir, tag);
  const trash = join(dir, `.${tag}.old-${process.pid}`);
  if (existsSync(final)) renameSync(final, trash);
  renameSync(staging, final);
  if (saveLatest) writeLatest(dir, tag);
  rmSync(trash, { recursive: true, force: true });
  return final;
}

export function writeLatest(dir: string, tag: string): void {
  const tmp = join(dir, `.${LATEST}.tmp-${process.pid}`);
  writeFileSync(tmp, tag);
  renameSync(tmp, join(dir, LATEST));
}

/** The tag to load: the explicit one, else the content of `latest`; null when neither exists. */
export function resolveLoadTag(dir: string, tag?: string): string | null {
  if (tag !== undefined) return checkTag(tag);
  const latest = join(dir, LATEST);
  if (!existsSync(latest)) return null;
  return checkTag(readFileSync(latest, 'utf8').trim());
}

export function tagDir(dir: string, tag: string): string {
  const d = join(dir, tag);
  if (!existsSync(join(d, META))) {
    throw new DSCheckpointError(`checkpoint '${tag}' in ${dir} is missing or incomplete (no ${META}); saved tags are listed by 'ls ${dir}'`);
  }
  return d;
}
