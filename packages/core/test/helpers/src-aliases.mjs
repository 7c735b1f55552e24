// Loaded with `node --import` in withWorld's children: resolves @ds/<pkg> to packages/<pkg>/src/index.ts
// (compiled by tsx), as vitest's aliases do in-process, so workers never depend on a stale dist/.
import { register } from 'node:module';

register('./src-aliases-hooks.mjs', import.meta.url);
