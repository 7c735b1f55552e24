// HF-style "auto" values. Hugging Face's Trainer replaces them before DeepSpeed sees the config;
// DeepSpeed itself never accepts them. They are filled from the `autoValues` option (of loadConfig and
// of initialize(), which validates through loadConfig) or rejected with the same message on both paths.
import type { ConfigProblem } from '../errors.js';
import { joinPath } from './problems.js';
import type { ConfigObject } from './read.js';

/** Paths where "auto" is DeepSpeed's own legal value, not a placeholder. */
const LEGAL_AUTO = new Set(['pipeline.stages']);

/** Key path → value, or a function of the key path returning the value (undefined: not known). */
export type AutoValues = Readonly<Record<string, unknown>> | ((path: string) => unknown);

export function resolveAutoValues(raw: ConfigObject, autoValues: AutoValues | undefined): { raw: ConfigObject; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const lookup = (path: string): unknown =>
    autoValues === undefined ? undefined : typeof autoValues === 'function' ? autoValues(path) : Object.hasOwn(autoValues, path) ? autoValues[path] : undefined;

  const visit = (value: unknown, path: string): unknown => {
    if (value === 'auto' && !LEGAL_AUTO.has(path)) {
      const filled = lookup(path);
      if (filled !== undefined && filled !== 'auto') return filled;
      problems.push({
        path,
        value,
        message:
          `"auto" is a Hugging Face Trainer placeholder that the caller must fill in; DeepSpeed does not accept it. ` +
          `Put the number in the config, or pass { autoValues: { '${path}': <value> } } to initialize() or loadConfig()`,
      });
      return value;
    }
    if (Array.isArray(value)) return value.map((v, i) => visit(v, joinPath(path, [i])));
    if (typeof value === 'object' && value !== null) {
      const out: ConfigObject = {};
      for (const [k, v] of Object.entries(value)) Object.defineProperty(out, k, { value: visit(v, joinPath(path, [k])), enumerable: true, writable: true, configurable: true });
      return out;
    }
    return value;
  };
  return { raw: visit(raw, '') as ConfigObject, problems };
}
