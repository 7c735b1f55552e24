// Activation checkpointing for modules. The function itself (run without keeping activations,
// recompute them in backward) lives in ../autograd/checkpoint.ts, so that Module.call can use it;
// here are the module-level forms: the Checkpointed wrapper, and checkpointLayers(), which marks a
// model's repeated layers (Module.checkpointableLayers()) so that their call() recomputes in backward.
import { checkpoint } from '../autograd/checkpoint.js';
import type { Tensor } from '../tensor.js';
import { Module } from './module.js';

import type { SavedTensorHooks } from '../autograd/checkpoint.js';

export { checkpoint } from '../autograd/checkpoint.js';
export type { CheckpointOptions, SavedTensorHooks, SavedTensorMeta } from '../autograd/checkpoint.js';

/** A module wrapper whose forward is checkpointed (its parameters are those of the inner module). */
export class Checkpointed<M extends Module<[Tensor], Tensor>> extends Module<[Tensor], Tensor> {
  constructor(readonly inner: M) {
    super();
    this.registerModule('inner', inner);
  }
  forward(x: Tensor): Tensor {
    return checkpoint((xi) => this.inner.call(xi), [x], { generators: this.inner.generators(), params: this.inner.parameters() });
  }
}

export interface CheckpointedLayers {
  /** Full names of the layers whose activations are now recomputed in backward. */
  names: string[];
  /** How many checkpointable layers the model has. */
  available: number;
  /** True when the model checkpoints its own parts (Module.checkpointsItself()) and only took the storage. */
  self: boolean;
  /** Switches the layers back to keeping their activations. */
  undo(): void;
}

/**
 * Marks the first `count` of `model.checkpointableLayers()` (all when count is null) so that their
 * call() recomputes activations in backward; the earliest layers are taken because their
 * activations are the ones held longest before backward reaches them.
 */
export function checkpointLayers(model: Module, count: number | null, opts: { saved?: SavedTensorHooks | null } = {}): CheckpointedLayers {
  const saved = opts.saved ?? null;
  const layers = model.checkpointableLayers();
  if (layers.length === 0 && model.checkpointsItself()) {
    const before = model.checkpointStorage;
    model.checkpointStorage = saved;
    return { names: [], available: 0, self: true, undo: () => void (model.checkpointStorage = before) };
  }
  const names = new Map(model.namedModules().map(([n, m]) => [m, n]));
  const chosen = layers.slice(0, count === null ? layers.length : Math.max(0, count)).filter((m) => !m.activationCheckpointing);
  for (const m of chosen) {
    m.activationCheckpointing = true;
    m.checkpointStorage = saved;
  }
  return {
    names: chosen.map((m) => names.get(m) ?? m.constructor.name),
    available: layers.length,
    self: false,
    undo: () => {
      for (const m of chosen) {
        m.activationCheckpointing = false;
        m.checkpointStorage = null;
      }
    },
  };
}
