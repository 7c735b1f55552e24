// Checkpoint directory layout and the crash-safe commit protocol.
//
//   <dir>/latest                                  the tag of the newest complete checkpoint
//   <dir>/<tag>/model_states.safetensors          module weights + engine metadata (rank 0)
//   <dir>/<tag>/zero_pp_rank_<R>_optim_states.safetensors   optimizer state of data-parallel rank R
//   <dir>/<tag>/meta.json                         engine metadata, readable without a safetensors parser
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

export function optimStatesFile(dpRank: number): string {
  return `zero_pp_rank_${dpRank}_optim_states.safetensors`;
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
