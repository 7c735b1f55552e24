// Parameter-creation hooks: a way for code outside the model to see each parameter as the model is
// being built, before the next one exists. ZeRO-3's zeroInit uses it to keep only this rank's slice
// of every parameter the moment it is created, so a whole model never sits on one rank.
//
// `withParameterHook(hook, build)` runs `build` with `hook` active. `Module.registerParameter`
// hands every Parameter it registers to the active hooks, the first time that Parameter is
// registered while any hook is active (a tied weight registered again is not handed over twice).
// By then the parameter must hold its initial values: the layers here (and GPT) initialise a
// parameter before registering it, and a model meant to be built under a hook must do the same
// (an init pass after construction would write into whatever the hook left). Hooks nest; the
// innermost runs first. The scope belongs to the current Runtime and `build` must be synchronous.

import { DSError } from '../errors.js';
import { getRuntime } from '../runtime.js';
import type { Module } from './module.js';
import type { Parameter } from './parameter.js';

/** Sees a new parameter: `module` registered it under `name` (its short name, e.g. 'weight'). */
export type ParameterHook = (p: Parameter, module: Module, name: string) => void;

/** Runs `build` with `hook` called on each new parameter registered inside it. */
export function withParameterHook<T>(hook: ParameterHook, build: () => T): T {
  const rt = getRuntime();
  rt.parameterHooks.push(hook);
  try {
    const out = build();
    if (out instanceof Promise) throw new DSError('withParameterHook takes a synchronous function (modules are built synchronously)', { code: 'DS_ASYNC_SCOPE' });
    return out;
  } finally {
    rt.parameterHooks.splice(rt.parameterHooks.lastIndexOf(hook), 1);
  }
}

/** Called by Module.registerParameter: hands `p` to the active hooks once. */
export function announceParameter(p: Parameter, module: Module, name: string): void {
  const rt = getRuntime();
  if (rt.parameterHooks.length === 0 || rt.announcedParameters.has(p)) return;
  rt.announcedParameters.add(p);
  for (let i = rt.parameterHooks.length - 1; i >= 0; i--) rt.parameterHooks[i]!(p, module, name);
}
