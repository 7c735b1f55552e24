// The backward pass. Walks the tape from a root with an explicit stack (no recursion), counts how
// many gradients each node and each leaf will receive, then runs nodes in dependency order (Kahn):
// a node runs once all its consumers have contributed. That count also tells when a leaf's .grad
// is final, which is when its gradient-ready hooks fire (ZeRO-2 starts reducing buckets there).
//
// Ownership: gradients flowing between nodes belong to the engine and are disposed as soon as
// they are consumed; a leaf's .grad is its own untracked tensor (category 'gradients') that later
// passes accumulate into. Backward functions run with grad mode off.

import { BYTES_PER_ELEMENT, isFloat, type DType } from '../dtype.js';
import { DSError, DSShapeError } from '../errors.js';
import type { Storage } from '../memory/storage.js';
import { getRuntime, noGrad } from '../runtime.js';
import { fmtShape, sameShape } from '../shape-util.js';
import { Tensor } from '../tensor.js';
import { releaseNode, type BackwardFn, type GradNode, type MultiBackwardFn } from './node.js';

export interface BackwardOptions {
  /** Keep saved tensors so the graph can be run again. */
  retainGraph?: boolean;
  /** Leaves whose gradient-ready hooks this pass must not fire (an enclosing pass fires them). */
  suppressLeafHooks?: ReadonlySet<Tensor>;
}

function topoCounts(root: GradNode): { nodeDeps: Map<GradNode, number>; leafDeps: Map<Tensor, number> } {
  const nodeDeps = new Map<GradNode, number>();
  const leafDeps = new Map<Tensor, number>();
  const seen = new Set<GradNode>([root]);
  const stack: GradNode[] = [root];
  while (stack.length) {
    const node = stack.pop()!;
    for (const input of node.inputs) {
      if (!input) continue;
      const next = input.gradFn;
      if (next) {
        nodeDeps.set(next, (nodeDeps.get(next) ?? 0) + 1);
        if (!seen.has(next)) {
          seen.add(next);
          stack.push(next);
        }
      } else if (input.requiresGrad) {
        leafDeps.set(input, (leafDeps.get(input) ?? 0) + 1);
      }
    }
  }
  return { nodeDeps, leafDeps };
}

/**
 * Adds g into the leaf's .grad with the table's axpy. The first gradient of a leaf without one
 * becomes its .grad as torch's AccumulateGrad does it: taken as it is when `mayAdopt` (the engine
 * disposes g afterwards and holds it nowhere else) and g is the only view of its bytes, in the
 * .grad's dtype and shape; else cast (or copied) into a fresh uninitialized .grad. Either way no
 * zero fill and no pass reading zeros (on the reference GPT step the fill was 2 ms of main-thread
 * time and the copies 2 ms).
 */
function accumulateLeaf(leaf: Tensor, g: Tensor, mayAdopt = false): void {
  const k = leaf.runtime.kernels(leaf.device);
  const gradDtype = isFloat(leaf.dtype) ? leaf.dtype : 'f32';
  if (!leaf.grad && mayAdopt && adoptable(g, gradDtype, leaf)) {
    // A second handle on g's storage (g itself is disposed by the caller), now counted as gradients.
    g.storage.setCategory('gradients');
    leaf.grad = Tensor.fromStorage(g.storage, g.dtype, leaf.shape, 0, { runtime: leaf.runtime, track: false });
    leaf.ownsGrad = true;
    return;
  }
  const src = g.isContiguous() ? g : contiguousCopy(g);
  let target = leaf.grad;
  if (!target) {
    target = Tensor.empty(leaf.shape, gradDtype, { device: leaf.device, category: 'gradients', label: `${leaf.name ?? 'tensor'}.grad`, runtime: leaf.runtime, track: false, uninitialized: true });
    leaf.grad = target;
    leaf.ownsGrad = true;
    k.cast(src.dtype, src.operand(), target.dtype, target.operand(), g.numel);
  } else {
    if (!target.isContiguous()) throw new DSShapeError(`backward: the .grad of ${leaf.name ?? 'a leaf'} ${fmtShape(leaf.shape)} is not contiguous`);
    k.axpy(src.dtype as 'f32', src.operand() as Float32Array, target.dtype as 'f32', target.operand() as Float32Array, g.numel, 1);
  }
  if (src !== g) src.dispose();
}

/** g can become leaf's .grad as it is: the whole of a storage nothing else views, not a caller's buffer. */
function adoptable(g: Tensor, dtype: DType, leaf: Tensor): boolean {
  const st = g.storage;
  return g.dtype === dtype && g.device === leaf.device && sameShape(g.shape, leaf.shape) && g.offset === 0 && g.isContiguous() &&
    st.refCount === 1 && !st.external && st.byteLength === g.numel * BYTES_PER_ELEMENT[dtype];
}

function contiguousCopy(t: Tensor): Tensor {
  const out = Tensor.empty(t.shape, t.dtype, { device: t.device, runtime: t.runtime, category: 'activations', label: 'grad', uninitialized: true });
  t.runtime.kernels(t.device).gather(t.dtype, t.storageOperand(), t.offset, t.shape, t.strides, out.operand());
  return out;
}

/** Adds g into an engine-owned gradient buffer in place. */
function accumulateInto(acc: Tensor, g: Tensor): void {
  const k = acc.runtime.kernels(acc.device);
  const src = g.isContiguous() ? g : contiguousCopy(g);
  k.axpy(src.dtype as 'f32', src.operand() as Float32Array, acc.dtype as 'f32', acc.operand() as Float32Array, g.numel, 1);
  if (src !== g) src.dispose();
}

/** True if t, or a view of the same storage, is in the set (in-place accumulation would alias). */
function sharesBytes(t: Tensor, set: Set<Tensor>): boolean {
  for (const h of set) if (h === t || h.storage === t.storage) return true;
  return false;
}

function fireLeafHooks(leaf: Tensor): void {
  for (const hook of [...leaf.gradReadyHooks]) hook(leaf);
}

/**
 * Backpropagates from `root`. `grad` defaults to ones for a one-element root; it stays the
 * caller's (it is not disposed).
 */
export function backward(root: Tensor, grad?: Tensor, opts: BackwardOptions = {}): void {
  if (!root.requiresGrad) throw new DSError('backward: the tensor does not require grad (no parameter or input with requiresGrad reached it, or it was computed under noGrad)', { code: 'DS_NO_GRAD' });
  if (grad && !sameShape(grad.shape, root.shape)) throw new DSShapeError(`backward: gradient ${fmtShape(grad.shape)} does not match output ${fmtShape(root.shape)}`);
  if (!grad && root.numel !== 1) throw new DSShapeError(`backward: an implicit gradient needs a one-element output, got ${fmtShape(root.shape)}; pass a gradient`);
  const rt = getRuntime();
  const callbacks: (() => void)[] = [];
  rt.backwardCallbacks.push(callbacks);
  try {
    noGrad(() => run(root, grad, opts, (leaf) => {
      if (!opts.suppressLeafHooks?.has(leaf)) fireLeafHooks(leaf);
    }));
  } finally {
    rt.backwardCallbacks.pop();
  }
  for (const cb of callbacks) cb();
}

/** Gradients received so far by each pending node, one slot per output of the node. */
type Slots = Map<GradNode, (Tensor | undefined)[]>;

function run(root: Tensor, grad: Tensor | undefined, opts: BackwardOptions, leafDone: (leaf: Tensor) => void): void {
  const seed = grad ?? onesLike(root);
  if (!root.gradFn) {
    accumulateLeaf(root, seed, !grad);
    leafDone(root);
    if (!grad) seed.dispose();
    return;
  }
  const { nodeDeps, leafDeps } = topoCounts(root.gradFn);
  const grads: Slots = new Map([[root.gradFn, slotsWith(root.gradFn, root.gradIndex, seed)]]);
  // Tensors that the engine must not dispose: the caller's gradient and those held in `grads`.
  const external = new Set<Tensor>(grad ? [grad] : []);
  const held = new Set<Tensor>([seed]);
  const ready: GradNode[] = [root.gradFn];
  while (ready.length) {
    const node = ready.pop()!;
    const slots = grads.get(node)!;
    grads.delete(node);
    const gs = slots.filter((t): t is Tensor => t !== undefined);
    for (const t of gs) held.delete(t);
    if (!node.backward) throw new DSError(`backward: the graph through '${node.name}' was already freed; pass { retainGraph: true } to the first backward to run it twice`, { code: 'DS_GRAPH_FREED' });
    const inputGrads = node.outputs > 1 ? (node.backward as MultiBackwardFn)(Array.from(slots, (t) => t ?? null)) : (node.backward as BackwardFn)(slots[0]!);
    if (!opts.retainGraph) releaseNode(node);
    const consumed: Tensor[] = [...gs];
    // Storages behind more than one of the node's input gradients (one tensor returned twice, or
    // views of one buffer): no leaf may take those as its .grad, another input still reads them.
    const repeated = new Set<Storage>();
    const seenStorages = new Set<Storage>();
    for (const t of inputGrads) {
      if (!t) continue;
      if (seenStorages.has(t.storage)) repeated.add(t.storage);
      seenStorages.add(t.storage);
    }
    node.inputs.forEach((input, i) => {
      if (!input) return;
      const gi = inputGrads[i] ?? null;
      if (gi && !sameShape(gi.shape, input.shape)) throw new DSShapeError(`backward of '${node.name}': gradient ${fmtShape(gi.shape)} for input ${i} of shape ${fmtShape(input.shape)}`);
      const next = input.gradFn;
      if (next) {
        if (gi) {
          const nextSlots = grads.get(next) ?? new Array<Tensor | undefined>(next.outputs);
          grads.set(next, nextSlots);
          const acc = nextSlots[input.gradIndex];
          if (acc) {
            accumulateInto(acc, gi);
            consumed.push(gi);
          } else {
            // A gradient already held elsewhere (returned twice, or passed through) gets its own copy.
            const own = sharesBytes(gi, held) || sharesBytes(gi, external) ? contiguousCopy(gi) : gi;
            held.add(own);
            nextSlots[input.gradIndex] = own;
          }
        }
        const left = nodeDeps.get(next)! - 1;
        nodeDeps.set(next, left);
        if (left === 0) {
          if (grads.has(next)) ready.push(next);
          else skipNode(next, nodeDeps, leafDeps, ready, grads, opts, leafDone);
        }
      } else {
        if (gi) {
          accumulateLeaf(input, gi, !held.has(gi) && !external.has(gi) && !repeated.has(gi.storage));
          consumed.push(gi);
        }
        const left = leafDeps.get(input)! - 1;
        leafDeps.set(input, left);
        if (left === 0) leafDone(input);
      }
    });
    for (const t of consumed) if (!held.has(t) && !external.has(t)) t.dispose();
  }
}

function slotsWith(node: GradNode, index: number, g: Tensor): (Tensor | undefined)[] {
  const slots = new Array<Tensor | undefined>(node.outputs);
  slots[index] = g;
  return slots;
}

/** A node that received no gradient at all: its inputs still count it as done. */
function skipNode(node: GradNode, nodeDeps: Map<GradNode, number>, leafDeps: Map<Tensor, number>, ready: GradNode[], grads: Slots, opts: BackwardOptions, leafDone: (leaf: Tensor) => void): void {
  const stack = [node];
  while (stack.length) {
    const n = stack.pop()!;
    if (!opts.retainGraph) releaseNode(n);
    for (const input of n.inputs) {
      if (!input) continue;
      const next = input.gradFn;
      if (next) {
        const left = nodeDeps.get(next)! - 1;
        nodeDeps.set(next, left);
        if (left === 0) (grads.has(next) ? ready : stack).push(next);
      } else {
        const left = leafDeps.get(input)! - 1;
        leafDeps.set(input, left);
        if (left === 0) leafDone(input);
      }
    }
  }
}

function onesLike(t: Tensor): Tensor {
  const out = Tensor.empty(t.shape, t.dtype, { device: t.device, runtime: t.runtime, category: 'activations', label: 'grad', uninitialized: true });
  t.runtime.kernels(t.device).fill(t.dtype as 'f32', out.operand(), out.numel, 1);
  return out;
}

/** Queues fn to run after the innermost running backward pass (torch's queue_callback). */
export function queueBackwardCallback(fn: () => void): void {
  const stack = getRuntime().backwardCallbacks;
  const top = stack[stack.length - 1];
  if (!top) throw new DSError('queueBackwardCallback: no backward pass is running', { code: 'DS_NO_BACKWARD' });
  top.push(fn);
}

/** Frees the saved tensors of a graph that will not be backpropagated (e.g. an evaluation loss). */
export function freeGraph(root: Tensor): void {
  if (!root.gradFn) return;
  const stack: GradNode[] = [root.gradFn];
  const seen = new Set<GradNode>(stack);
  while (stack.length) {
    const node = stack.pop()!;
    for (const input of node.inputs) {
      const next = input?.gradFn;
      if (next && !seen.has(next)) {
        seen.add(next);
        stack.push(next);
      }
    }
    releaseNode(node);
  }
}
