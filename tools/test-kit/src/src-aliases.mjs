// Loaded with `node --import` in withWorld's children: resolves @ds/<name> to the repository's
// packages/<name>/src/index.ts (compiled by tsx), as vitest's aliases (vitest.shared.ts) do in-process,
// so workers never run a stale dist/. Vitest's aliases do not reach child processes.
import { register } from 'node:module';

register('./src-aliases-hooks.mjs', import.meta.url);
