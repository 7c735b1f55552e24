// Deterministic release: tidy(fn) disposes every tensor created inside fn except the ones fn
// returns (found in arrays and plain objects of the result) and the ones kept with keep().
// Returned tensors move to the enclosing scope, so nested tidies compose.

import { DSError } from '../errors.js';
import { getRuntime, type ScopeFrame } from '../runtime.js';
import { Tensor } from '../tensor.js';

function collectTensors(value: unknown, out: Set<Tensor>): void {
  const stack: unknown[] = [value];
  const seen = new Set<unknown>();
  while (stack.length) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    if (v instanceof Tensor) {
      out.add(v);
      continue;
    }
    if (Array.isArray(v)) stack.push(...v);
    else if (v instanceof Map) stack.push(...v.values());
    else if (Object.getPrototypeOf(v) === Object.prototype) stack.push(...Object.values(v));
  }
}

/** Runs fn in a new scope and disposes what it created, except its result and kept tensors. */
export function tidy<T>(fn: () => T): T {
  const rt = getRuntime();
  const frame: ScopeFrame = { tensors: new Set() };
  rt.scopes.push(frame);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) throw new DSError('tidy takes a synchronous function; await outside it and tidy each synchronous step', { code: 'DS_ASYNC_SCOPE' });
  } catch (err) {
    rt.scopes.pop();
    disposeFrame(frame, new Set());
    throw err;
  }
  rt.scopes.pop();
  const escaping = new Set<Tensor>();
  collectTensors(result, escaping);
  disposeFrame(frame, escaping);
  const parent = rt.scopes[rt.scopes.length - 1] ?? null;
  for (const t of escaping) if (!t.isDisposed && frame.tensors.has(t)) t.adoptInto(parent);
  return result;
}

function disposeFrame(frame: ScopeFrame, spare: Set<Tensor>): void {
  for (const t of [...frame.tensors]) if (!spare.has(t as Tensor)) t.dispose();
}

/** Exempts tensors from scope disposal; they live until dispose(). Returns its argument. */
export function keep<T extends Tensor | readonly Tensor[]>(t: T): T {
  if (t instanceof Tensor) t.keep();
  else for (const x of t as readonly Tensor[]) x.keep();
  return t;
}

/** Disposes tensors found in a value (arrays, plain objects, maps). */
export function dispose(value: unknown): void {
  const found = new Set<Tensor>();
  collectTensors(value, found);
  for (const t of found) t.dispose();
}
