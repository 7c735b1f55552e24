// The tensor-parallel context (the role of Megatron's mpu, without its module-global state): how many
// model-parallel ranks split each layer and which split this process holds. Layers take it at
// construction, so they can build their own shard before any process group exists; initialize()
// later binds the topology's model-parallel group to it (the pipeline() plugin's engine does, after
// checking that the topology agrees), and the layers' communication ops read the group from here.
//
// Rank layout: @ds/core's topology varies the model coordinate fastest, so the model-parallel rank of
// global rank g is g % degree (DeepSpeed and Megatron place tensor-parallel ranks the same way).
import { DSConfigError, type ParallelGroups, type ProcessGroup } from '@ds/core';
import type { Module } from '@ds/tensor';

export interface TensorParallelOptions {
  /** Model-parallel degree: how many ranks split each tensor-parallel layer. */
  degree: number;
  /** This process's model-parallel rank in [0, degree); default from `globalRank`. */
  rank?: number;
  /** The job's global rank (the model rank is globalRank % degree); default 0. */
  globalRank?: number;
}

export class TensorParallel {
  readonly degree: number;
  /** This process's model-parallel rank. */
  readonly rank: number;
  private bound: ProcessGroup | null = null;
  private isBound = false;

  constructor(opts: TensorParallelOptions) {
    const { degree } = opts;
    if (!Number.isInteger(degree) || degree < 1) throw new DSConfigError(`TensorParallel: degree must be a positive integer, got ${degree}`);
    const rank = opts.rank ?? (opts.globalRank ?? 0) % degree;
    if (!Number.isInteger(rank) || rank < 0 || rank >= degree) throw new DSConfigError(`TensorParallel: model-parallel rank ${rank} is outside [0, ${degree})`);
    this.degree = degree;
    this.rank = rank;
  }

  /**
   * Binds the topology's model-parallel group. The topology's model degree and this rank's model
   * coordinate must be the ones the layers were built for.
   */
  bind(groups: ParallelGroups): void {
    const { topology, coords } = groups;
    if (topology.degrees.model !== this.degree) {
      throw new DSConfigError(
        `tensor parallelism: the layers were built for ${this.degree}-way tensor parallelism but the topology is ${topology} over ${topology.worldSize} rank(s); register pipeline() so initialize() takes the model degree from the model (or pass topology: { model: ${this.degree} }), on a world that is a multiple of ${this.degree}`,
      );
    }
    if (coords.model !== this.rank) {
      throw new DSConfigError(`tensor parallelism: the layers hold model-parallel shard ${this.rank} but this rank is model rank ${coords.model} of the topology (${topology}); build them with the job's rank (globalRank: RANK)`);
    }
    if (this.degree > 1 && !groups.model) throw new DSConfigError(`tensor parallelism: the topology (${topology}) has no model-parallel group on this rank; initialize() must build it from a distributed job`);
    this.bound = groups.model;
    this.isBound = true;
  }

  /** The model-parallel group, or null with degree 1; `who` names the caller in the error when none is bound. */
  group(who: string): ProcessGroup | null {
    if (this.degree === 1) return null;
    if (!this.isBound || !this.bound) {
      throw new DSConfigError(
        `${who}: built for ${this.degree}-way tensor parallelism, but no model-parallel group is bound; pass the model to initialize() with the pipeline() plugin of @ds/pipeline registered (it binds the topology's model group)`,
      );
    }
    return this.bound;
  }

  /** [start, start + size) of `total` that this rank holds when `total` is split evenly; `what` names the split in the error. */
  range(total: number, what: string): [number, number] {
    if (total % this.degree !== 0) throw new DSConfigError(`${what} ${total} is not divisible by the tensor-parallel degree ${this.degree}; use a degree that divides it`);
    const size = total / this.degree;
    return [this.rank * size, size];
  }
}

/** How a layer's parameter is split across the model group (core reads it off `modelParallelSplits()`). */
export type { ModelParallelSplit } from '@ds/core';

/** A module that holds a shard of a tensor-parallel layer. */
export interface TensorParallelLayer {
  readonly tp: TensorParallel;
}

export function isTensorParallelLayer(m: unknown): m is TensorParallelLayer {
  return typeof m === 'object' && m !== null && (m as Partial<TensorParallelLayer>).tp instanceof TensorParallel;
}

/** The distinct tensor-parallel contexts of the model's layers. */
export function tensorParallelContexts(model: Module): TensorParallel[] {
  const out = new Set<TensorParallel>();
  for (const m of model.modules()) if (isTensorParallelLayer(m)) out.add(m.tp);
  return [...out];
}

/** The model degree the layers were built for (1 without tensor-parallel layers); layers built for different degrees are an error. */
export function tensorParallelDegree(model: Module, declared?: TensorParallel): number {
  const contexts = tensorParallelContexts(model);
  if (declared) contexts.push(declared);
  const degrees = [...new Set(contexts.map((c) => c.degree))];
  if (degrees.length > 1) throw new DSConfigError(`tensor parallelism: the model's layers were built for different tensor-parallel degrees (${degrees.join(', ')}); build every layer with one TensorParallel`);
  return degrees[0] ?? 1;
}

/** Binds the topology's model group to every context of the model (checking each against it). */
export function bindTensorParallel(model: Module, groups: ParallelGroups, declared?: TensorParallel): void {
  const contexts = new Set(tensorParallelContexts(model));
  if (declared) contexts.add(declared);
  for (const c of contexts) c.bind(groups);
}
