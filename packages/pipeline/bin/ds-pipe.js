#!/usr/bin/env node
// The installed `ds-pipe` command: loads the built entry.
// Committed so that it exists before the first build: pnpm and npm link a bin at install time only
// when its target exists.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/bin/ds-pipe.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write(`ds-pipe: ${fileURLToPath(entry)} is not built; in a checkout of the repository run \`pnpm build\` first (an installed @ds/pipeline ships it).\n`);
  process.exit(1);
}
await import(entry.href);
