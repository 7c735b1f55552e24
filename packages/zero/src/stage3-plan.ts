// Stage 3 partition units: which parameters are gathered together, and when.
//
// Each module's own parameters form one unit, gathered before the module's forward and backward and
// released after them. A parameter registered under several modules (a tied embedding) belongs to
// their nearest common ancestor, whose hooks span every use; `registerExternalParameter` moves a
// parameter to the module that uses it without owning it (DeepSpeed's register_external_parameter).
// Small parameters (stage3_param_persistence_threshold, within stage3_model_persistence_threshold
// in total) stay gathered: they form the persistent unit, re-gathered after every step.
import type { Module, Tensor } from '@ds/tensor';

import type { ZeroConfig } from './config.js';
import { planUnits, type PartitionPlan } from '@ds/core';
import { externalParametersOf } from './zero-init.js';


export interface Stage3Layout {
  plan: PartitionPlan;
  /** The persistent unit's index, or -1. */
  persistentUnit: number;
  /** The module whose hooks gather each non-persistent unit (same index as plan.units). */
  moduleOf: (Module | null)[];
}

function path(parents: Map<Module, Module | null>, m: Module): Module[] {
  const out: Module[] = [];
  for (let cur: Module | null | undefined = m; cur; cur = parents.get(cur)) out.unshift(cur);
  return out;
}

function commonAncestor(parents: Map<Module, Module | null>, mods: Module[]): Module {
  let prefix = path(parents, mods[0]!);
  for (const m of mods.slice(1)) {
    const p = path(parents, m);
    let k = 0;
    while (k < prefix.length && k < p.length && prefix[k] === p[k]) k++;
    prefix = prefix.slice(0, k);
  }
  return prefix[prefix.length - 1]!;
}

/** Every module that registers or externally uses each parameter, and each module's parent. */
function owners(root: Module, params: readonly Tensor[]): { users: Map<Tensor, Module[]>; parents: Map<Module, Module | null>; order: Module[] } {
  const parents = new Map<Module, Module | null>([[root, null]]);
  const order: Module[] = [];
  const users = new Map<Tensor, Module[]>(params.map((p) => [p, []]));
  const stack: Module[] = [root];
  while (stack.length) {
    const m = stack.pop()!;
    order.push(m);
    const kids = m.children();
    for (let i = kids.length - 1; i >= 0; i--) {
      if (parents.has(kids[i]!)) continue;
      parents.set(kids[i]!, m);
      stack.push(kids[i]!);
    }
  }
  for (const m of order) {
    for (const [name, p] of m.namedParameters()) {
      if (name.includes('.')) continue; // only the module's own parameters
      users.get(p)?.push(m);
    }
    for (const p of externalParametersOf(m)) users.get(p)?.push(m);
  }
  return { users, parents, order };
}

export function planStage3(root: Module, params: readonly Tensor[], sizes: readonly number[], zc: ZeroConfig, world: number, rank: number): Stage3Layout {
  const { users, parents, order } = owners(root, params);
  const persistent: number[] = [];
  let persistentTotal = 0;
  const byModule = new Map<Module, number[]>();
  params.forEach((p, i) => {
    const n = sizes[i]!;
    if (n <= zc.stage3_param_persistence_threshold && persistentTotal + n <= zc.stage3_model_persistence_threshold) {
      persistent.push(i);
      persistentTotal += n;
      return;
    }
    const mods = users.get(p)!;
    const home = mods.length === 0 ? root : mods.length === 1 ? mods[0]! : commonAncestor(parents, mods);
    const list = byModule.get(home) ?? [];
    list.push(i);
    byModule.set(home, list);
  });
  const groups: number[][] = [];
  const moduleOf: (Module | null)[] = [];
  if (persistent.length > 0) {
    groups.push(persistent);
    moduleOf.push(null);
  }
  for (const m of order) {
    const list = byModule.get(m);
    if (!list) continue;
    groups.push(list);
    moduleOf.push(m);
  }
  const plan = planUnits(groups, sizes, world, rank);
  return { plan, persistentUnit: persistent.length > 0 ? 0 : -1, moduleOf };
}
