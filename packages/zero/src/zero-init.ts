// Construction helpers for stage 3.
//
// `zeroInit(build, opts)` builds a model and partitions it before returning: each parameter keeps
// only this rank's piece (in fp32), its full storage is freed, and Stage3State later takes the
// pieces instead of reading whole weights. @ds/tensor has no hook on parameter creation, so the
// whole model does exist once, while `build` runs (DeepSpeed's zero.Init partitions each module as
// its constructor returns); everything after that is partitioned. See README for the hook needed.
//
// `registerExternalParameter(module, p)` tells stage 3 that `module`'s forward uses `p` although p
// is registered elsewhere, so the module's hooks gather it (DeepSpeed's function of the same name).
import { DSConfigError } from '@ds/core';
import { Tensor, type Module } from '@ds/tensor';

import { zeroConfigOf } from './config.js';
import { pieceOf } from './partition.js';
import { planStage3 } from './stage3-plan.js';

const PRE_PARTITION = Symbol.for('ds.zero.prePartition');
const EXTERNAL = Symbol.for('ds.zero.externalParameters');

export interface PrePartition {
  world: number;
  rank: number;
  shapes: Map<Tensor, number[]>;
  /** This rank's piece of each parameter (fp32), as Stage3State's plan cuts it. */
  pieces: Map<Tensor, Float32Array>;
}

type Tagged = Module & { [PRE_PARTITION]?: PrePartition; [EXTERNAL]?: Set<Tensor> };

export interface ZeroInitOptions {
  /** The ds_config (or just its zero_optimization section under that key) that initialize will get. */
  config: Readonly<Record<string, unknown>>;
  rank: number;
  world: number;
}

/** The trainable parameters in initialize's order (namedParameters, tied ones once). */
function trainable(model: Module): Tensor[] {
  const seen = new Set<Tensor>();
  const out: Tensor[] = [];
  for (const [, p] of model.namedParameters()) {
    if (!p.requiresGrad || seen.has(p)) continue;
    seen.add(p);
    out.push(p);
  }
  return out;
}

export function zeroInit<M extends Module>(build: () => M, opts: ZeroInitOptions): M {
  const zc = zeroConfigOf(opts.config);
  if (zc.stage !== 3) throw new DSConfigError(`zeroInit partitions parameters for ZeRO stage 3, but zero_optimization.stage is ${zc.stage}`);
  if (!(opts.world >= 1) || !(opts.rank >= 0 && opts.rank < opts.world)) throw new DSConfigError(`zeroInit: rank ${opts.rank} is not in a world of ${opts.world}`);
  const model = build();
  const params = trainable(model);
  const sizes = params.map((p) => p.numel);
  const { plan } = planStage3(model, params, sizes, zc, opts.world, opts.rank);
  const record: PrePartition = { world: opts.world, rank: opts.rank, shapes: new Map(), pieces: new Map() };
  const empty = Tensor.empty([0], 'f32', { category: 'parameters', label: 'zeroInit released parameter', track: false });
  const kernels = empty.runtime.kernels('cpu');
  for (const unit of plan.units) {
    unit.params.forEach((i, k) => {
      const p = params[i]!;
      const [from, to] = pieceOf(unit.offsets[k]!, p.numel, unit.block, opts.rank);
      const piece = new Float32Array(to - from);
      if (to > from) kernels.cast(p.dtype as 'f32', (p.data() as Float32Array).subarray(from, to), 'f32', piece, to - from);
      record.shapes.set(p, [...p.shape]);
      record.pieces.set(p, piece);
      p.setData(empty);
    });
  }
  empty.dispose();
  (model as Tagged)[PRE_PARTITION] = record;
  return model;
}

/** The pieces zeroInit kept for this world, if the module was built under it. */
export function prePartitionOf(model: Module, world: number, rank: number): PrePartition | undefined {
  const rec = (model as Tagged)[PRE_PARTITION];
  if (!rec) return undefined;
  if (rec.world !== world || rec.rank !== rank) {
    throw new DSConfigError(`the model was partitioned by zeroInit for rank ${rec.rank} of ${rec.world}, but this engine runs as rank ${rank} of ${world}`);
  }
  return rec;
}

export function registerExternalParameter(module: Module, p: Tensor): void {
  const m = module as Tagged;
  (m[EXTERNAL] ??= new Set()).add(p);
}

export function externalParametersOf(module: Module): ReadonlySet<Tensor> {
  return (module as Tagged)[EXTERNAL] ?? new Set();
}
