#!/usr/bin/env node
// The per-node agent `ds` starts on each node; not meant to be run by hand.
import { runAgent } from '../agent.js';

runAgent(process.argv.slice(2), process.env).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ds agent: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
