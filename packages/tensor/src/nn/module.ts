// Module: named parameters, buffers and children; train/eval; state dicts; and the four hook
// kinds ZeRO-3 relies on (forward pre/post to gather and release parameters, backward pre/post to
// gather them again for the backward and release them after it).

import { checkpoint, type SavedTensorHooks } from '../autograd/checkpoint.js';
import { queueBackwardCallback } from '../autograd/engine.js';
import { DTYPES, type DType } from '../dtype.js';
import { copyInto, toDeviceRaw } from '../ops/device.js';
import { DSError, DSShapeError } from '../errors.js';
import { castRaw } from '../ops/util.js';
import type { Generator } from '../random.js';
import { isGradEnabled } from '../runtime.js';
import { fmtShape, sameShape } from '../shape-util.js';
import { Tensor } from '../tensor.js';
import { mapGradTensors, passThrough } from './hooks.js';
import { Parameter } from './parameter.js';
import { announceParameter } from './parameter-hook.js';

export type ForwardPreHook = (module: Module, args: unknown[]) => unknown[] | void;
export type ForwardHook = (module: Module, args: unknown[], output: unknown) => unknown;
export type BackwardHook = (module: Module) => void;

export interface HookHandle {
  remove(): void;
}

function addHook<T>(list: T[], fn: T): HookHandle {
  list.push(fn);
  return { remove: () => void (list.includes(fn) && list.splice(list.indexOf(fn), 1)) };
}

export abstract class Module<In extends unknown[] = any[], Out = any> {
  training = true;
  /**
   * When true, call() keeps no activations of this module: they are recomputed in backward
   * (callCheckpointed). Set by checkpointLayers() from ds_config's activation_checkpointing.
   */
  activationCheckpointing = false;
  /** How a checkpointed call keeps its inputs until backward (checkpointLayers' `saved`); null: as they are. */
  checkpointStorage: SavedTensorHooks | null = null;
  private readonly paramMap = new Map<string, Parameter | null>();
  private readonly bufferMap = new Map<string, Tensor>();
  private readonly childMap = new Map<string, Module>();
  private readonly forwardPreHooks: ForwardPreHook[] = [];
  private readonly forwardHooks: ForwardHook[] = [];
  private readonly backwardPreHooks: BackwardHook[] = [];
  private readonly backwardHooks: BackwardHook[] = [];

  abstract forward(...args: In): Out;

  /** Runs forward with the hooks around it. Call this, not forward, from a parent module. */
  call(...args: In): Out {
    if (this.activationCheckpointing) return this.callCheckpointed(...args);
    return this.hooked(args, (a) => this.forward(...(a as In))) as Out;
  }

  /**
   * call() without keeping this module's activations: only its inputs are kept, and forward (with
   * its hooks and the same dropout masks) runs again in backward. Inputs and output must be tensors.
   */
  callCheckpointed(...args: In): Out {
    const name = this.constructor.name;
    if (!args.every((a) => a instanceof Tensor)) {
      throw new DSError(`${name}: activation checkpointing needs a forward that takes only tensors; leave this module out of checkpointing`, { code: 'DS_CHECKPOINT_ARGS' });
    }
    const run = (...xs: Tensor[]): Tensor => {
      const y = this.hooked(xs, (a) => this.forward(...(a as In)));
      if (!(y instanceof Tensor)) throw new DSError(`${name}: activation checkpointing needs a forward that returns one tensor`, { code: 'DS_CHECKPOINT_ARGS' });
      return y;
    };
    return checkpoint(run, args as unknown as Tensor[], { generators: this.generators(), params: this.parameters(), saved: this.checkpointStorage }) as Out;
  }

  /**
   * The repeated layers activation checkpointing from the config applies to, in forward order. By
   * default the items of the longest ModuleList in the tree (the first such list when several tie);
   * a model whose layers live elsewhere overrides this.
   */
  checkpointableLayers(): Module[] {
    let best: Module[] = [];
    for (const m of this.modules()) if (m instanceof ModuleList && m.items.length > best.length) best = m.items;
    return best;
  }

  /**
   * True for a module that runs checkpoint() over its own parts (a PipelineModule with an
   * activation checkpoint interval): checkpointLayers() then marks no layers and only hands it the
   * storage (`checkpointStorage`), which it must pass to its checkpoint() calls.
   */
  checkpointsItself(): boolean {
    return false;
  }

  /**
   * Runs `fn` in place of forward with this module's hooks around it, for a module's second entry
   * point (LayerNorm's fused residual form): pre-hooks see and may replace `args`, forward hooks see
   * the output, backward hooks wrap what flows in and out, exactly as for call().
   */
  protected hooked(args: unknown[], fn: (args: unknown[]) => unknown): unknown {
    let a: unknown[] = args;
    for (const h of this.forwardPreHooks) {
      const r = h(this, a);
      if (r !== undefined) a = r;
    }
    const wantBackwardHooks = (this.backwardPreHooks.length > 0 || this.backwardHooks.length > 0) && isGradEnabled();
    let pendingInputs = 0;
    const firePost = (): void => {
      for (const h of [...this.backwardHooks]) h(this);
    };
    if (wantBackwardHooks) {
      const wrapped = mapGradTensors(a, (t) =>
        passThrough(t, () => {
          if (--pendingInputs === 0) firePost();
        }),
      );
      a = wrapped.value as unknown[];
      pendingInputs = wrapped.count;
    }
    let out: unknown = fn(a);
    for (const h of this.forwardHooks) {
      const r = h(this, a, out);
      if (r !== undefined) out = r;
    }
    if (wantBackwardHooks) {
      const inputsWrapped = pendingInputs > 0;
      let firedPre = false;
      out = mapGradTensors(out, (t) =>
        passThrough(t, () => {
          if (firedPre) return;
          firedPre = true;
          for (const h of [...this.backwardPreHooks]) h(this);
          // Without a differentiable input there is no node after this module's backward: run the
          // post hooks when the whole backward pass ends.
          if (!inputsWrapped) queueBackwardCallback(firePost);
        }),
      ).value;
    }
    return out;
  }

  registerForwardPreHook(fn: ForwardPreHook): HookHandle {
    return addHook(this.forwardPreHooks, fn);
  }
  registerForwardHook(fn: ForwardHook): HookHandle {
    return addHook(this.forwardHooks, fn);
  }
  /** Fires when the gradient of the module's output arrives, before its backward runs. */
  registerBackwardPreHook(fn: BackwardHook): HookHandle {
    return addHook(this.backwardPreHooks, fn);
  }
  /** Fires after the module's backward has produced the gradients of its inputs. */
  registerBackwardHook(fn: BackwardHook): HookHandle {
    return addHook(this.backwardHooks, fn);
  }

  // ---- registration -------------------------------------------------------------------------

  /** Registers `p` under `name`; a new parameter is handed to the active parameter hooks (withParameterHook). */
  registerParameter(name: string, p: Parameter | null): Parameter | null {
    if (p) p.name ??= name;
    this.paramMap.set(name, p);
    if (p) announceParameter(p, this, name);
    return p;
  }

  registerBuffer(name: string, t: Tensor): Tensor {
    t.keep();
    this.bufferMap.set(name, t);
    return t;
  }

  registerModule<M extends Module>(name: string, m: M): M {
    this.childMap.set(name, m);
    return m;
  }

  /** The parameter registered under `name` on this module. */
  param(name: string): Parameter {
    const p = this.paramMap.get(name);
    if (!p) throw new DSError(`${this.constructor.name}: no parameter '${name}'`, { code: 'DS_NO_PARAMETER' });
    return p;
  }

  // ---- traversal (explicit stack, registration order) -----------------------------------------

  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const stack: [string, Module][] = [[prefix, this]];
    while (stack.length) {
      const [name, m] = stack.pop()!;
      if (seen.has(m)) continue;
      seen.add(m);
      out.push([name, m]);
      const kids = [...m.childMap].map(([k, c]): [string, Module] => [name ? `${name}.${k}` : k, c]);
      for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]!);
    }
    return out;
  }

  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }

  children(): Module[] {
    return [...this.childMap.values()];
  }

  namedChildren(): [string, Module][] {
    return [...this.childMap];
  }

  /** Each parameter once (a tied parameter under its first name), in registration order. */
  namedParameters(prefix = ''): [string, Parameter][] {
    const out: [string, Parameter][] = [];
    const seen = new Set<Parameter>();
    for (const [mname, m] of this.namedModules(prefix)) {
      for (const [pname, p] of m.paramMap) {
        if (!p || seen.has(p)) continue;
        seen.add(p);
        out.push([mname ? `${mname}.${pname}` : pname, p]);
      }
    }
    return out;
  }

  /**
   * Names every parameter (and its storage's tracker label) by its full path, so gradients and
   * out-of-memory reports say `transformer.h.0.attn.c_attn.weight` rather than `weight`.
   */
  labelParameters(prefix = ''): this {
    for (const [name, p] of this.namedParameters(prefix)) {
      p.name = name;
      p.storage.label = name;
    }
    return this;
  }

  parameters(): Parameter[] {
    return this.namedParameters().map(([, p]) => p);
  }

  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [mname, m] of this.namedModules(prefix)) for (const [b, t] of m.bufferMap) out.push([mname ? `${mname}.${b}` : b, t]);
    return out;
  }

  /** Every parameter and buffer by full name (tied parameters appear under each name). */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [mname, m] of this.namedModules()) {
      for (const [pname, p] of m.paramMap) if (p) out[mname ? `${mname}.${pname}` : pname] = p;
      for (const [b, t] of m.bufferMap) out[mname ? `${mname}.${b}` : b] = t;
    }
    return out;
  }

  /** Copies values into the parameters and buffers (casting dtypes). strict: keys must match. */
  loadStateDict(state: Record<string, Tensor>, opts: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
    const own = this.stateDict();
    const missing = Object.keys(own).filter((k) => !(k in state));
    const unexpected = Object.keys(state).filter((k) => !(k in own));
    if ((opts.strict ?? true) && (missing.length || unexpected.length)) {
      throw new DSError(`loadStateDict: missing keys [${missing.join(', ')}], unexpected keys [${unexpected.join(', ')}]`, { code: 'DS_STATE_DICT' });
    }
    for (const [name, dst] of Object.entries(own)) {
      const src = state[name];
      if (!src) continue;
      if (!sameShape(src.shape, dst.shape)) throw new DSShapeError(`loadStateDict: '${name}' has shape ${fmtShape(src.shape)}, the module expects ${fmtShape(dst.shape)}`);
      if (!dst.isContiguous()) throw new DSShapeError(`loadStateDict: '${name}' is not contiguous`);
      // Move first (a host checkpoint into a device model), then cast on the device.
      const moved = src.device === dst.device ? src : toDeviceRaw(src, dst.device);
      const c = castRaw(moved, dst.dtype);
      copyInto(c, dst);
      if (c !== moved) c.dispose();
      if (moved !== src) moved.dispose();
    }
    return { missing, unexpected };
  }

  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Drops gradients the engine allocated (re-pointed ones are zero-filled instead). */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      const g = p.grad;
      if (!g) continue;
      if (p.ownsGrad) {
        g.dispose();
        p.grad = null;
      } else {
        p.runtime.kernels(p.device).fill(g.dtype as 'f32', g.operand(), g.numel, 0);
      }
    }
  }

  /**
   * Casts every parameter in place to a dtype (a bf16 model; masters stay with the optimizer), or
   * moves every parameter and buffer to a device ('cpu', 'sim', 'cuda'). The parameter objects stay
   * the same (optimizers and hooks keep their references); gradients are dropped on a move.
   */
  to(dtypeOrDevice: DType | string): this {
    const isDtype = (DTYPES as readonly string[]).includes(dtypeOrDevice);
    for (const p of this.parameters()) {
      if (isDtype ? p.dtype === dtypeOrDevice : p.device === dtypeOrDevice) continue;
      const category = p.storage.category;
      const c = isDtype ? castRaw(p, dtypeOrDevice as DType) : toDeviceRaw(p, dtypeOrDevice, { label: p.name ?? 'parameter' });
      c.storage.setCategory(isDtype ? 'parameters' : category);
      p.setData(c);
      c.dispose();
      if (!isDtype && p.grad) {
        if (p.ownsGrad) p.grad.dispose();
        p.grad = null;
      }
    }
    if (!isDtype) {
      for (const m of this.modules()) {
        for (const [name, b] of m.bufferMap) {
          if (b.device === dtypeOrDevice) continue;
          const c = toDeviceRaw(b, dtypeOrDevice, { label: name });
          b.setData(c);
          c.dispose();
        }
      }
    }
    return this;
  }

  /** The random generators of this module tree (dropout), in order: checkpointing replays them. */
  generators(): Generator[] {
    return this.modules().flatMap((m) => m.ownGenerators());
  }

  /** Generators this module itself draws from; modules with randomness override it. */
  protected ownGenerators(): Generator[] {
    return [];
  }
}

/** A list of modules registered as children "0", "1", ... */
export class ModuleList<M extends Module = Module> extends Module<[], never> {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items;
    items.forEach((m, i) => this.registerModule(String(i), m));
  }
  forward(): never {
    throw new DSError('ModuleList has no forward; iterate over .items', { code: 'DS_NO_FORWARD' });
  }
}
