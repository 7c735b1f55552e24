// FlopsProfiler: DeepSpeed's FlopsProfiler(model) for @ds/tensor modules. start() puts a forward
// pre-hook and a forward hook on every module of the tree; each call is timed between the two hooks
// and counted with its type's formula (flop-formulas.ts); stop() removes the hooks and returns the
// module tree with parameters, MACs, FLOPs and latency per module. Only forward is measured: the
// engine's profile estimates backward as 2x forward, as DeepSpeed does (report.ts).
//
// Differences from DeepSpeed: counts come from module types and shapes, not from patched
// functionals, so a module type without a formula that runs ops itself is marked rather than
// counted; a module called several times in one forward sums its calls' latencies and counts.
import { performance } from 'node:perf_hooks';

import type { HookHandle, Module } from '@ds/tensor';

import { ownCount } from './flop-formulas.js';

export interface ModuleProfile {
  /** Path in the module tree ('' for the root). */
  name: string;
  /** The module's class name. */
  type: string;
  /** 0 for the root, 1 for its children, ... */
  depth: number;
  /** Trainable and frozen parameters of the subtree, each tensor once. */
  params: number;
  /** FLOPs and MACs of the subtree in the profiled forward. */
  flops: number;
  macs: number;
  /** Milliseconds between the module's forward pre-hook and forward hook, summed over its calls. */
  latencyMs: number;
  calls: number;
  /** False when the module ran and its type has no formula (its own ops are not counted). */
  counted: boolean;
  children: ModuleProfile[];
}

interface Tally {
  flops: number;
  macs: number;
  latencyMs: number;
  calls: number;
  counted: boolean;
  started: number[];
}

export interface FlopsProfilerOptions {
  /** Waits for queued device work so a hook's clock sees the module's kernels finish (non-cpu devices). */
  synchronize?: () => void;
}

export class FlopsProfiler {
  private handles: HookHandle[] = [];
  private tallies = new Map<Module, Tally>();

  constructor(
    readonly model: Module,
    private readonly opts: FlopsProfilerOptions = {},
  ) {}

  get running(): boolean {
    return this.handles.length > 0;
  }

  /** Clears the counts and hooks every module; a second start() restarts the count. */
  start(): void {
    this.removeHooks();
    this.tallies = new Map();
    const sync = this.opts.synchronize;
    for (const m of this.model.modules()) {
      const tally: Tally = { flops: 0, macs: 0, latencyMs: 0, calls: 0, counted: true, started: [] };
      this.tallies.set(m, tally);
      this.handles.push(
        m.registerForwardPreHook(() => {
          sync?.();
          tally.started.push(performance.now());
        }),
        m.registerForwardHook((mod, args, output) => {
          sync?.();
          const t0 = tally.started.pop();
          if (t0 !== undefined) tally.latencyMs += performance.now() - t0;
          tally.calls += 1;
          const own = ownCount(mod, args, output);
          if (own) {
            tally.flops += own.flops;
            tally.macs += own.macs;
          } else tally.counted = false;
        }),
      );
    }
  }

  /** Removes the hooks and returns the profile of what ran since start(). */
  stop(): ModuleProfile {
    this.removeHooks();
    return this.profile();
  }

  /** The module tree with the counts so far. */
  profile(): ModuleProfile {
    const build = (m: Module, name: string, depth: number, seen: Set<Module>): ModuleProfile => {
      seen.add(m);
      const t = this.tallies.get(m);
      const children = m
        .namedChildren()
        .filter(([, c]) => !seen.has(c))
        .map(([k, c]) => build(c, name ? `${name}.${k}` : k, depth + 1, seen));
      const sum = (f: (p: ModuleProfile) => number) => children.reduce((n, c) => n + f(c), 0);
      return {
        name,
        type: m.constructor.name,
        depth,
        params: m.parameters().reduce((n, p) => n + p.numel, 0),
        flops: (t?.flops ?? 0) + sum((c) => c.flops),
        macs: (t?.macs ?? 0) + sum((c) => c.macs),
        latencyMs: t?.latencyMs ?? 0,
        calls: t?.calls ?? 0,
        counted: !t || t.calls === 0 || t.counted,
        children,
      };
    };
    return build(this.model, '', 0, new Set());
  }

  private removeHooks(): void {
    for (const h of this.handles.splice(0)) h.remove();
  }
}

/** Every module of a profile tree, parents before children. */
export function flatten(root: ModuleProfile): ModuleProfile[] {
  const out: ModuleProfile[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    for (let i = p.children.length - 1; i >= 0; i--) stack.push(p.children[i]!);
  }
  return out;
}
