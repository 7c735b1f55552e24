// Warnings a plugin's config schema attaches to the section it parsed. A zod schema can only fail
// or succeed, yet a plugin must be able to say "accepted, but this has no effect here" the way core
// does for its own keys (key-rules.ts). The parsed section carries its notes under a Symbol.for key,
// non-enumerable, so copies of @ds/core agree on it and spreads and JSON never see it; the
// validator turns them into config warnings prefixed with the section's key.
import type { ConfigProblem } from '../errors.js';

export const CONFIG_NOTES: unique symbol = Symbol.for('ds.config.notes') as never;

/** A warning about a key inside a plugin section; `path` is relative to the section. */
export interface ConfigNote {
  path: string;
  message: string;
  value?: unknown;
}

/** Attaches `notes` to a parsed section (replacing earlier ones) and returns it. */
export function attachConfigNotes<T extends object>(section: T, notes: readonly ConfigNote[]): T {
  Object.defineProperty(section, CONFIG_NOTES, { value: [...notes], enumerable: false, configurable: true });
  return section;
}

/** The notes of a parsed section as warnings with full key paths (`section.key`). */
export function configNotesOf(section: unknown, key: string): ConfigProblem[] {
  if (typeof section !== 'object' || section === null) return [];
  const notes = (section as { [CONFIG_NOTES]?: ConfigNote[] })[CONFIG_NOTES] ?? [];
  return notes.map((n) => ({ path: n.path ? `${key}.${n.path}` : key, message: n.message, ...(n.value !== undefined ? { value: n.value } : {}) }));
}
