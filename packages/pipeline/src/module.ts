// PipelineModule: DeepSpeed's runtime/pipe/module.py. A model given as a flat list of layers
// (LayerSpec, TiedLayerSpec, a parameter-free function, or a Module instance), split across stages by
// a partition method; each rank builds only the layers of its own stage, so the whole model never
// exists in one process. forward() runs this stage's layers in order; the loss function runs on the
// last stage (the engine calls it).
//
// Differences from DeepSpeed: the stage comes from `stageId` or from (rank, worldSize, numStages)
// given at construction (DeepSpeed asks torch.distributed); there is no `profile` method (DeepSpeed
// does not implement it either); a stage left without layers is an error naming the numbers.
import { checkpoint, Module, type Tensor } from '@ds/tensor';
import { DSConfigError, DSUnsupportedError } from '@ds/core';

import { partitionBalanced, partitionUniform } from './partition.js';
import { tensorParallelContexts, type TensorParallel } from './tensor-parallel/context.js';

type Ctor<A extends unknown[]> = new (...args: A) => Module;

/** A layer built only on the stage that owns it: the class and its constructor arguments. */
export class LayerSpec<A extends unknown[] = any[]> {
  readonly args: A;
  constructor(
    readonly typename: Ctor<A>,
    ...args: A
  ) {
    this.args = args;
  }
  build(): Module {
    return new this.typename(...this.args);
  }
  get typeName(): string {
    return this.typename.name;
  }
}

export interface TiedOptions {
  /** Replaces the module's call for this occurrence (e.g. the LM head: x @ embedding.weight^T). */
  forwardFn?: (module: Module, x: Tensor) => Tensor;
  /** Parameters (names inside the module) whose gradients are all-reduced across the stages holding the key; default ['weight']. */
  tiedWeightAttr?: readonly string[];
}

/** Layers with the same key share one module per stage and keep their weights equal across stages. */
export class TiedLayerSpec<A extends unknown[] = any[]> extends LayerSpec<A> {
  readonly forwardFn: ((module: Module, x: Tensor) => Tensor) | undefined;
  readonly tiedWeightAttr: readonly string[];
  constructor(
    readonly key: string,
    typename: Ctor<A>,
    args: A,
    opts: TiedOptions = {},
  ) {
    super(typename, ...args);
    this.forwardFn = opts.forwardFn;
    this.tiedWeightAttr = opts.tiedWeightAttr ?? ['weight'];
  }
}

export type LayerFn = (x: Tensor) => Tensor;
export type PipeLayer = LayerSpec | LayerFn | Module;

export interface PipelineModuleOptions {
  layers: readonly PipeLayer[];
  numStages: number;
  /** loss(output of the last layer, label) -> scalar; required for training. */
  lossFn?: (output: Tensor, label: Tensor) => Tensor;
  /** 'parameters' (default) | 'uniform' | 'type:<regex>' (case-insensitive, DeepSpeed's spelling). */
  partitionMethod?: string;
  /** Run each group of k consecutive layers of a stage under activation checkpointing; 0 = off. */
  activationCheckpointInterval?: number;
  /** This rank's stage; default from rank and worldSize. */
  stageId?: number;
  /** Global rank and world size of the job (default 0 and 1: a single process); stage = rank / (worldSize / numStages). */
  rank?: number;
  worldSize?: number;
  /**
   * The tensor-parallel context of the layers, when they are tensor-parallel: every stage then
   * reports the same model degree to initialize(), whichever layers it holds.
   */
  tensorParallel?: TensorParallel;
}

/** One layer of this stage as forward() runs it. */
interface BuiltLayer {
  index: number;
  run: LayerFn;
  /** Where the layer's parameters sit in this module's names ('3.', 'tied_modules.embed.'); null for a function. */
  prefix: string | null;
}

/** The trainable parameter count of each layer (DeepSpeed builds each layer to count, and so do we). */
function paramCounts(layers: readonly PipeLayer[]): number[] {
  return layers.map((l) => {
    if (typeof l === 'function' && !(l.prototype instanceof Module)) return 0;
    const m = l instanceof LayerSpec ? l.build() : (l as Module);
    const n = m.parameters().reduce((a, p) => a + (p.requiresGrad ? p.numel : 0), 0);
    if (l instanceof LayerSpec) for (const p of m.parameters()) p.dispose();
    return n;
  });
}

function layerTypeName(l: PipeLayer): string {
  if (l instanceof LayerSpec) return l.typeName;
  if (l instanceof Module) return l.constructor.name;
  return l.name;
}

/** Stage boundaries for `method` (lower-cased, as DeepSpeed does); a stage without layers is an error. */
export function partitionLayers(layers: readonly PipeLayer[], numStages: number, method: string): number[] {
  if (!Number.isInteger(numStages) || numStages < 1) throw new DSConfigError(`PipelineModule: numStages must be a positive integer, got ${numStages}`);
  const m = method.toLowerCase();
  let parts: number[];
  if (m === 'uniform') parts = partitionUniform(layers.length, numStages);
  else if (m === 'parameters') parts = partitionBalanced(paramCounts(layers), numStages);
  else if (m.startsWith('type:')) {
    const re = new RegExp(method.slice(5), 'i');
    const weights = layers.map((l): number => (re.test(layerTypeName(l)) ? 1 : 0));
    const hits = weights.reduce((a, b) => a + b, 0);
    if (hits < numStages) {
      throw new DSConfigError(`PipelineModule: partition method '${method}' matches ${hits} layer(s), fewer than the ${numStages} stages; match more layers or use fewer stages`);
    }
    parts = partitionBalanced(weights, numStages);
  } else if (m === 'profile') {
    throw new DSUnsupportedError("PipelineModule: partition method 'profile' is not implemented (nor in DeepSpeed); use 'parameters', 'uniform' or 'type:<regex>'");
  } else {
    throw new DSConfigError(`PipelineModule: partition method '${method}' is not one of 'parameters', 'uniform', 'type:<regex>'`);
  }
  for (let s = 0; s < numStages; s++) {
    if (parts[s + 1]! <= parts[s]!) {
      throw new DSConfigError(`PipelineModule: ${layers.length} layer(s) split by '${method}' over ${numStages} stages leave stage ${s} without layers (boundaries [${parts.join(', ')}]); use fewer stages or more layers`);
    }
  }
  return parts;
}

export class PipelineModule extends Module<[Tensor], Tensor> {
  readonly numStages: number;
  readonly stageId: number;
  /** Stage boundaries: stage s owns layers [parts[s], parts[s + 1]). */
  readonly parts: readonly number[];
  readonly partitionMethod: string;
  readonly activationCheckpointInterval: number;
  readonly lossFn: ((output: Tensor, label: Tensor) => Tensor) | undefined;
  readonly tensorParallel: TensorParallel | undefined;
  private readonly specs: readonly PipeLayer[];
  private readonly built: BuiltLayer[] = [];
  /** Tied modules of this stage by key (registered as tied_modules.<key>). */
  readonly tiedModules = new Map<string, Module>();
  private readonly tiedAttrs = new Map<string, readonly string[]>();

  constructor(opts: PipelineModuleOptions) {
    super();
    this.specs = opts.layers;
    this.numStages = opts.numStages;
    this.partitionMethod = opts.partitionMethod ?? 'parameters';
    this.activationCheckpointInterval = opts.activationCheckpointInterval ?? 0;
    if (!Number.isInteger(this.activationCheckpointInterval) || this.activationCheckpointInterval < 0) {
      throw new DSConfigError(`PipelineModule: activationCheckpointInterval must be an integer >= 0, got ${this.activationCheckpointInterval}`);
    }
    this.lossFn = opts.lossFn;
    this.parts = partitionLayers(opts.layers, opts.numStages, this.partitionMethod);
    this.stageId = opts.stageId ?? stageOf(opts.rank ?? 0, opts.worldSize ?? 1, opts.numStages);
    if (!Number.isInteger(this.stageId) || this.stageId < 0 || this.stageId >= this.numStages) {
      throw new DSConfigError(`PipelineModule: stage ${this.stageId} is outside [0, ${this.numStages})`);
    }
    this.tensorParallel = opts.tensorParallel;
    this.buildStage();
    this.labelParameters();
    if (!this.tensorParallel && tensorParallelContexts(this).length > 0) {
      throw new DSConfigError('PipelineModule: stage layers are tensor-parallel but the module was built without tensorParallel; pass the TensorParallel the layers were built with, so that every stage reports the same model degree');
    }
  }

  /** Layers [start, end) of this stage. */
  get layerRange(): [number, number] {
    return [this.parts[this.stageId]!, this.parts[this.stageId + 1]!];
  }
  get isFirstStage(): boolean {
    return this.stageId === 0;
  }
  get isLastStage(): boolean {
    return this.stageId === this.numStages - 1;
  }

  /** The stages holding each tied key (from the specs, the same on every rank). */
  tiedKeyStages(): Map<string, number[]> {
    const out = new Map<string, number[]>();
    this.specs.forEach((l, i) => {
      if (!(l instanceof TiedLayerSpec)) return;
      const stage = this.stageOfLayer(i);
      const list = out.get(l.key) ?? [];
      if (!list.includes(stage)) list.push(stage);
      out.set(l.key, list);
    });
    return out;
  }

  /** The parameters of tied key `key` on this stage whose gradients are reduced across the stages holding it. */
  tiedParameters(key: string): Tensor[] {
    const m = this.tiedModules.get(key);
    if (!m) return [];
    const named = new Map(m.namedParameters());
    return this.tiedAttrs.get(key)!.map((a) => {
      const p = named.get(a);
      if (!p) throw new DSConfigError(`TiedLayerSpec '${key}': the module has no parameter '${a}' (has ${[...named.keys()].join(', ')}); fix tiedWeightAttr`);
      return p;
    });
  }

  /**
   * The tied weights this stage holds that an earlier stage also holds (DeepSpeed's
   * ds_pipe_replicated): after ReduceTiedGrads their gradients equal the first stage's, which alone
   * counts them in core's global gradient norm.
   */
  pipeReplicatedParameters(): Tensor[] {
    const out: Tensor[] = [];
    for (const [key, stages] of this.tiedKeyStages()) if (Math.min(...stages) !== this.stageId) out.push(...this.tiedParameters(key));
    return out;
  }

  /**
   * DeepSpeed's per-layer checkpoint files (PipelineModule.ckpt_layer_path): one file per layer of
   * this stage that has parameters, `layer_<LL>-model_<TP>-model_states.safetensors`, holding the
   * layer's own names. A tied module is written under each of its layer indices on this stage (as
   * DeepSpeed does). Core's checkpoint writes and reads them for this rank's model coordinate.
   */
  checkpointFiles(modelRank: number): { file: string; prefix: string }[] {
    const pad = (n: number) => String(n).padStart(2, '0');
    return this.built.filter((l) => l.prefix !== null).map((l) => ({ file: `layer_${pad(l.index)}-model_${pad(modelRank)}-model_states.safetensors`, prefix: l.prefix! }));
  }

  stageOfLayer(index: number): number {
    for (let s = 0; s < this.numStages; s++) if (index < this.parts[s + 1]!) return s;
    return this.numStages - 1;
  }

  private buildStage(): void {
    const [start, end] = this.layerRange;
    for (let i = start; i < end; i++) {
      const l = this.specs[i]!;
      if (l instanceof TiedLayerSpec) {
        let m = this.tiedModules.get(l.key);
        if (!m) {
          m = this.registerModule(`tied_modules.${l.key}`, l.build());
          this.tiedModules.set(l.key, m);
          this.tiedAttrs.set(l.key, l.tiedWeightAttr);
        }
        const mod = m;
        const fn = l.forwardFn;
        this.built.push({ index: i, run: fn ? (x) => fn(mod, x) : (x) => mod.call(x) as Tensor, prefix: `tied_modules.${l.key}.` });
      } else if (l instanceof LayerSpec) {
        const m = this.registerModule(String(i), l.build());
        this.built.push({ index: i, run: (x) => m.call(x) as Tensor, prefix: `${i}.` });
      } else if (l instanceof Module) {
        const m = this.registerModule(String(i), l);
        this.built.push({ index: i, run: (x) => m.call(x) as Tensor, prefix: `${i}.` });
      } else {
        this.built.push({ index: i, run: l, prefix: null });
      }
    }
  }

  /** This stage's layers in order; groups of activationCheckpointInterval layers recompute their activations in backward. */
  forward(x: Tensor): Tensor {
    const k = this.activationCheckpointInterval;
    if (k === 0 || !this.training) {
      for (const l of this.built) x = l.run(x);
      return x;
    }
    for (let i = 0; i < this.built.length; i += k) {
      const group = this.built.slice(i, i + k);
      const run = (y: Tensor): Tensor => group.reduce((acc, l) => l.run(acc), y);
      // Integer inputs (token ids) carry no gradient: the embedding's group runs plainly.
      x = x.dtype === 'i32' ? run(x) : (checkpoint(run as (...t: Tensor[]) => Tensor, [x], { generators: this.generators(), params: this.parameters(), saved: this.checkpointStorage }) as Tensor);
    }
    return x;
  }

  /** The engine's loss on the last stage. */
  loss(output: Tensor, label: Tensor): Tensor {
    if (!this.lossFn) throw new DSConfigError('PipelineModule: training needs a lossFn (loss(output, label) -> scalar) on the last stage');
    return this.lossFn(output, label);
  }

  /** Activation checkpointing is set by activationCheckpointInterval, not by marking layers. */
  override checkpointableLayers(): Module[] {
    return [];
  }

  /** With an interval, ds_config's activation_checkpointing section only sets how the checkpoints are stored. */
  override checkpointsItself(): boolean {
    return this.activationCheckpointInterval > 0;
  }
}

/** DeepSpeed's rank layout (pipe outermost): stage = rank / (ranks per stage). */
export function stageOf(rank: number, worldSize: number, numStages: number): number {
  if (worldSize % numStages !== 0) {
    throw new DSConfigError(`PipelineModule: a world of ${worldSize} rank(s) does not divide into ${numStages} pipeline stages; use a world size that is a multiple of ${numStages}`);
  }
  return Math.floor(rank / (worldSize / numStages));
}
