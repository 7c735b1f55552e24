// Activation checkpointing: run a function without keeping its activations, and recompute them in
// backward. The forward runs under noGrad in its own tidy scope (only the output survives); the
// backward restores the random generators to their forward state (so dropout masks repeat),
// re-runs the function with grad on detached inputs, and backpropagates through the recomputed
// graph. Parameters passed in `params` are listed as the node's inputs so that the outer pass
// fires their gradient-ready hooks once their gradients are final. `saved` changes how the kept
// inputs are stored between forward and backward (DeepSpeed's partition_activations and
// cpu_checkpointing are such storages; core builds them from ds_config).

import { backward } from './engine.js';
import { attach, save } from './node.js';
import { tidy } from '../memory/scope.js';
import type { Generator } from '../random.js';
import { autocast, enableGrad, getRuntime, isGradEnabled, noGrad } from '../runtime.js';
import type { DType } from '../dtype.js';
import type { Tensor } from '../tensor.js';

/** What a stored input was: unpack() must give back a tensor of this shape, dtype and device. */
export interface SavedTensorMeta {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: string;
}

/**
 * How a checkpoint keeps its inputs until backward (as torch's saved-tensor hooks): pack() runs in
 * forward and returns what to keep (the input itself, a slice of it, a copy elsewhere); unpack()
 * runs in backward, before the recomputation, and returns a tensor equal to the input.
 */
export interface SavedTensorHooks {
  pack(x: Tensor): Tensor;
  unpack(packed: Tensor, meta: SavedTensorMeta): Tensor;
}

export interface CheckpointOptions {
  /** Generators the function draws from (dropout); default none. */
  generators?: Generator[];
  /** Parameters the function uses; their grads accumulate in the recomputation. */
  params?: Tensor[];
  /** How the inputs are stored between forward and backward; default: kept as they are. */
  saved?: SavedTensorHooks | null;
}

export function checkpoint(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: CheckpointOptions = {}): Tensor {
  const params = (opts.params ?? []).filter((p) => p.requiresGrad);
  if (!isGradEnabled() || ![...inputs, ...params].some((t) => t.requiresGrad)) return fn(...inputs);
  const gens = opts.generators ?? [];
  const states = gens.map((g) => g.getState());
  const cast = getRuntime().autocastDtype;
  const out = tidy(() => noGrad(() => fn(...inputs)));
  // A function that hands back one of its inputs computed nothing to recompute.
  if (inputs.includes(out)) return out;
  const nodeInputs = [...inputs, ...params];
  // The inputs are the only activations kept: owned handles, so a scope ending cannot free them.
  const hooks = opts.saved ?? null;
  const metas: SavedTensorMeta[] | null = hooks && inputs.map((x) => ({ shape: [...x.shape], dtype: x.dtype, device: x.device }));
  const kept = inputs.map((x) => save(hooks ? noGrad(() => hooks.pack(x)) : x));
  return attach(out, 'checkpoint', nodeInputs, (dy) => {
    const now = gens.map((g) => g.getState());
    gens.forEach((g, i) => g.setState(states[i]!));
    try {
      return tidy(() => {
        const detached = kept.map((x, i) => {
          const d = (hooks ? hooks.unpack(x, metas![i]!) : x).detach();
          d.requiresGrad = inputs[i]!.requiresGrad;
          return d;
        });
        const y = enableGrad(() => autocast(cast, () => fn(...detached)));
        if (y.requiresGrad) backward(y, dy, { suppressLeafHooks: new Set(params) });
        const grads: (Tensor | null)[] = detached.map((d) => d.grad);
        for (const g of grads) g?.keep();
        return [...grads, ...params.map(() => null)];
      });
    } finally {
      gens.forEach((g, i) => g.setState(now[i]!));
    }
  }, kept);
}
