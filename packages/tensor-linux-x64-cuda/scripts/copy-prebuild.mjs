#!/usr/bin/env node
// Copies the cuda binary @ds/tensor built (../tensor/prebuilds/linux-x64-cuda/node.napi.node) into
// this package's prebuilds/, where @ds/tensor's loader looks first. Without it (no nvcc where
// @ds/tensor was built) there is nothing to copy: the package stays empty and says so. With
// --require (what `prepack` passes) that is an error, so that no binary-less package is published.
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const rel = join('prebuilds', 'linux-x64-cuda', 'node.napi.node');
const src = join(here, '..', 'tensor', rel);
const dst = join(here, rel);
if (existsSync(src)) {
  mkdirSync(dirname(dst), { recursive: true });
  copyFileSync(src, dst);
  console.log(`@ds/tensor-linux-x64-cuda: copied ${src} -> ${rel}`);
} else {
  rmSync(dst, { force: true });
  const msg = `@ds/tensor-linux-x64-cuda: ${src} does not exist (build @ds/tensor where nvcc is installed first)`;
  if (process.argv.includes('--require')) {
    console.error(`${msg}; refusing to pack a package without its binary`);
    process.exit(1);
  }
  console.log(`${msg}; nothing copied`);
}
