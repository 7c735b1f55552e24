// Consolidation of a pipeline / tensor-parallel checkpoint into one fp32 safetensors file (the role
// of DeepSpeed's zero_to_fp32.py and Megatron's checkpoint merge tools for this layout): `ds-pipe
// to-fp32`. It reads core's model-parallel layout (checkpoint/layout.ts): for each pipe x model
// slice, the mp_rank_NN_model_states file (whose metadata lists the slice's layer files and the
// tensor-parallel splits) and data rank 0's optimizer file (the fp32 masters and where each
// parameter lies in them). Shards of a split parameter are joined along their dimension (in stride
// blocks for a fused QKV); replicated parameters come from model rank 0; a tied weight held by
// several stages comes from its first stage, the copy the others were kept equal to.
//
// Names in the output are the module's own names on its stage ('tied_modules.embed.wte.weight',
// '3.attn.c_attn.weight'), i.e. those of the same PipelineModule built as one stage with a model
// degree of 1. Only stage-0 data parallelism is read (ZeRO stages are rejected with a pipeline or a
// model degree > 1 at initialize, so no such checkpoint exists).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { DSCheckpointError, META, readSafetensors, resolveLoadTag, writeSafetensors, type NamedTensor } from '@ds/core';
import { bf16ToF32, f16ToF32 } from '@ds/tensor';

interface SliceMeta {
  mp_rank: number;
  pipe_stage: number;
  model_rank: number;
  files: { file: string; prefix: string }[];
  splits: Record<string, { dim: number; stride: number }>;
}

interface RankMeta {
  stage: number;
  params?: { name: string; offset: number; shape: number[] }[];
}

interface Fp32Tensor {
  shape: number[];
  data: Float32Array;
}

export interface ConsolidatedPipeline {
  tag: string;
  tensors: Map<string, Fp32Tensor>;
  pipe: number;
  model: number;
}

const pad2 = (n: number) => String(n).padStart(2, '0');

function toF32(t: NamedTensor, where: string): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  if (t.dtype === 'f32') return new Float32Array(bytes.slice().buffer, 0, n);
  if (t.dtype === 'bf16' || t.dtype === 'f16') {
    const h = new Uint16Array(bytes.slice().buffer, 0, n);
    const out = new Float32Array(n);
    const conv = t.dtype === 'bf16' ? bf16ToF32 : f16ToF32;
    for (let i = 0; i < n; i++) out[i] = conv(h[i]!);
    return out;
  }
  throw new DSCheckpointError(`${where}: a ${t.dtype} tensor is not a floating-point weight`);
}

/** One slice's fp32 weights by module name: from the masters where the weights are 16-bit, else the weights themselves. */
function readSlice(path: string, mpRank: number): { meta: SliceMeta; weights: Map<string, Fp32Tensor> } {
  const file = `mp_rank_${pad2(mpRank)}_model_states.safetensors`;
  if (!existsSync(join(path, file))) throw new DSCheckpointError(`ds-pipe to-fp32: ${join(path, file)} is missing; the checkpoint is incomplete`);
  const f = readSafetensors(join(path, file));
  const raw = f.metadata.ds_model_parallel;
  if (!raw) throw new DSCheckpointError(`ds-pipe to-fp32: ${join(path, file)} has no ds_model_parallel metadata: not a pipeline / tensor-parallel checkpoint of @ds/core`);
  const meta = JSON.parse(raw) as SliceMeta;
  const module = new Map(f.tensors);
  for (const { file: own, prefix } of meta.files) {
    for (const [name, t] of readSafetensors(join(path, own)).tensors) if (!module.has(prefix + name)) module.set(prefix + name, t);
  }
  const optim = `zero_pp_rank_0_mp_rank_${pad2(mpRank)}_optim_states.safetensors`;
  const o = readSafetensors(join(path, optim));
  const rankMeta = JSON.parse(o.metadata.ds_rank_meta ?? '{}') as RankMeta;
  if (rankMeta.stage !== 0) throw new DSCheckpointError(`ds-pipe to-fp32: ${join(path, optim)} holds ZeRO stage ${rankMeta.stage} state; only stage 0 checkpoints have this layout`);
  const master = o.tensors.get('master');
  const weights = new Map<string, Fp32Tensor>();
  if (master) {
    if (!rankMeta.params) throw new DSCheckpointError(`ds-pipe to-fp32: ${join(path, optim)} does not say where each parameter lies in its masters (written by an older @ds/core); load it and save again`);
    const flat = toF32(master, join(path, optim));
    for (const p of rankMeta.params) {
      const n = p.shape.reduce((a, b) => a * b, 1);
      weights.set(p.name, { shape: p.shape, data: flat.slice(p.offset, p.offset + n) });
    }
  } else {
    for (const [name, t] of module) weights.set(name, { shape: t.shape, data: toF32(t, `${join(path, file)} '${name}'`) });
  }
  return { meta, weights };
}

/** Joins model-parallel shards (model rank order) split on `dim` in `stride` blocks. */
export function joinShards(shards: readonly Fp32Tensor[], dim: number, stride: number): Fp32Tensor {
  const s = shards[0]!.shape;
  const m = shards.length;
  const k = s[dim]!;
  if (k % stride !== 0) throw new DSCheckpointError(`ds-pipe to-fp32: a shard of shape [${s}] does not split into ${stride} blocks on dimension ${dim}`);
  const outer = s.slice(0, dim).reduce((a, b) => a * b, 1);
  const inner = s.slice(dim + 1).reduce((a, b) => a * b, 1);
  const block = (k / stride) * inner;
  const out = new Float32Array(outer * k * m * inner);
  let at = 0;
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < stride; j++) {
      for (const shard of shards) {
        const from = o * k * inner + j * block;
        out.set(shard.data.subarray(from, from + block), at);
        at += block;
      }
    }
  }
  const shape = [...s];
  shape[dim] = k * m;
  return { shape, data: out };
}

/** Whole fp32 weights of a pipeline / tensor-parallel checkpoint (the tag in `latest` unless `tag` is given). */
export function consolidatePipeline(dir: string, tag?: string): ConsolidatedPipeline {
  const t = resolveLoadTag(dir, tag);
  if (t === null) throw new DSCheckpointError(`ds-pipe to-fp32: ${dir} has no 'latest' file; pass --tag`);
  const path = join(dir, t);
  if (!existsSync(join(path, META))) throw new DSCheckpointError(`ds-pipe to-fp32: ${path} has no ${META}: not a complete checkpoint`);
  const meta = JSON.parse(readFileSync(join(path, META), 'utf8')) as { pipe_parallel_size?: number; model_parallel_size?: number };
  const pipe = meta.pipe_parallel_size ?? 1;
  const model = meta.model_parallel_size ?? 1;
  if (pipe * model === 1) throw new DSCheckpointError(`ds-pipe to-fp32: ${path} was saved without pipeline or model parallelism; its model_states.safetensors already holds whole weights (or use ds-zero to-fp32 for a ZeRO checkpoint)`);
  const tensors = new Map<string, Fp32Tensor>();
  for (let stage = 0; stage < pipe; stage++) {
    const slices = Array.from({ length: model }, (_, r) => readSlice(path, stage * model + r));
    for (const [name, w] of slices[0]!.weights) {
      if (tensors.has(name)) continue; // a tied weight: its first stage's copy
      const split = slices[0]!.meta.splits[name];
      if (!split) {
        tensors.set(name, w);
        continue;
      }
      const shards = slices.map((s, r) => {
        const piece = s.weights.get(name);
        if (!piece) throw new DSCheckpointError(`ds-pipe to-fp32: model rank ${r} of stage ${stage} has no shard of '${name}'`);
        return piece;
      });
      tensors.set(name, joinShards(shards, split.dim, split.stride));
    }
  }
  return { tag: t, tensors, pipe, model };
}

/** consolidatePipeline written to `out` as one fp32 safetensors file; returns what was written. */
export function writePipelineFp32(dir: string, out: string, tag?: string): ConsolidatedPipeline {
  const c = consolidatePipeline(dir, tag);
  const named = new Map<string, NamedTensor>([...c.tensors].map(([n, t]) => [n, { dtype: 'f32', shape: t.shape, data: t.data }]));
  writeSafetensors(out, named, { format: 'pt' });
  return c;
}
