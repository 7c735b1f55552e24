// The autograd tape's node, and the two helpers every differentiable op uses: `needsGrad` to ask
// whether to record, and `attach` to hang the op's backward on its output. An op keeps the tensors
// its backward reads via `save`, which takes an untracked handle (so tidy() cannot free them); the
// engine disposes those handles as soon as the node has run, which frees activations step by step.

import { DSShapeError } from '../errors.js';
import { getRuntime } from '../runtime.js';
import { Tensor } from '../tensor.js';

/** Gradients of the node's inputs from the gradient of its output; null where none flows. */
export type BackwardFn = (gradOut: Tensor) => (Tensor | null)[];
/** The same for a node with several outputs: one gradient per output, null where none arrived. */
export type MultiBackwardFn = (gradOuts: (Tensor | null)[]) => (Tensor | null)[];

export interface GradNode {
  readonly name: string;
  /** The op's inputs, null where an input does not require grad. */
  readonly inputs: readonly (Tensor | null)[];
  /** Number of output tensors (their gradIndex tells which one each is). */
  readonly outputs: number;
  /** Null once the node ran without retainGraph (running it again is an error). */
  backward: BackwardFn | MultiBackwardFn | null;
  readonly saved: Tensor[];
}

/** True when an op over these inputs must record a node. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  if (!getRuntime().gradEnabled) return false;
  return inputs.some((t) => t?.requiresGrad === true);
}

/** An untracked handle on t's bytes for a backward function to read later. */
export function save(t: Tensor): Tensor {
  return new Tensor({ storage: t.storage, dtype: t.dtype, shape: t.shape, strides: t.strides, offset: t.offset, runtime: t.runtime, track: false });
}

/**
 * What a backward function should hold to read `used` later, where `used` is `orig` or a copy of
 * it made by the op (a cast). A parameter used as it is is held by reference, not pinned: its
 * bytes are read when backward runs, so ZeRO-3 can release a gathered parameter after forward
 * and gather it again in its backward pre-hook. Anything else is saved (an owned handle); the
 * second value lists what the node must release.
 */
export function saveInput(used: Tensor, orig: Tensor): [Tensor, Tensor[]] {
  if (used === orig && orig.requiresGrad && orig.gradFn === null) return [orig, []];
  const s = save(used);
  return [s, [s]];
}

/** Backward-time check that a parameter held by reference has its forward shape again. */
export function checkHeld(op: string, t: Tensor, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
    throw new DSShapeError(
      `backward of ${op}: parameter ${t.name ?? ''} is [${t.shape.join(', ')}] but was [${shape.join(', ')}] in forward; ` +
        'a released (partitioned) parameter must be gathered again before its module\'s backward',
    );
  }
}

/** Makes `out` the result of a recorded op. Returns out. */
export function attach(out: Tensor, name: string, inputs: readonly (Tensor | null | undefined)[], backward: BackwardFn, saved: Tensor[] = []): Tensor {
  out.requiresGrad = true;
  out.gradIndex = 0;
  out.gradFn = { name, outputs: 1, inputs: inputs.map((t) => (t && t.requiresGrad ? t : null)), backward, saved };
  return out;
}

/**
 * Makes `outs` the outputs of one recorded op (split, chunk): the backward runs once, with the
 * gradients of all outputs. Returns outs.
 */
export function attachMulti(outs: Tensor[], name: string, inputs: readonly (Tensor | null | undefined)[], backward: MultiBackwardFn, saved: Tensor[] = []): Tensor[] {
  const node: GradNode = { name, outputs: outs.length, inputs: inputs.map((t) => (t && t.requiresGrad ? t : null)), backward, saved };
  outs.forEach((o, i) => {
    o.requiresGrad = true;
    o.gradFn = node;
    o.gradIndex = i;
  });
  return outs;
}

/** Frees a node's saved tensors and drops its backward (the graph can no longer run through it). */
export function releaseNode(node: GradNode): void {
  for (const t of node.saved) t.dispose();
  node.saved.length = 0;
  node.backward = null;
}
