#!/usr/bin/env node
// The installed `ds-io` command: loads the built entry.
// This file is committed, so it exists before the first build and pnpm and npm link the bin at
// install time (they skip a bin whose target is missing, and a bare npx would then ask the npm
// registry for a package of that name).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/bin/ds-io.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write(`ds-io: ${fileURLToPath(entry)} is not built; in a checkout of the repository run \`pnpm build\` first (an installed @ds/offload-nvme ships it).\n`);
  process.exit(1);
}
await import(entry.href);
