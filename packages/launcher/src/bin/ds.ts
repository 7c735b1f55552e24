#!/usr/bin/env node
// `ds`: start a training script on every rank, DeepSpeed-style. See `ds --help`.
import { runDs } from '../cli.js';

runDs(process.argv.slice(2), { env: process.env, cwd: process.cwd(), stdout: process.stdout, stderr: process.stderr }).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ds: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(err instanceof Error && 'code' in err && err.code === 'DS_UNSUPPORTED' ? 2 : 1);
  },
);
