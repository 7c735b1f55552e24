// Test-loads the cuda binary of @ds/tensor (the checkout's prebuilds) and prints its probe as JSON:
// driver, GPU, cuBLASLt, or the one sentence saying which is missing. Plain Node, no TypeScript.
import { createRequire } from 'node:module';
import { join } from 'node:path';

const pkg = process.argv[2] ?? 'packages/tensor';
const binary = join(pkg, 'prebuilds', 'linux-x64-cuda', 'node.napi.node');
let addon;
try {
  addon = createRequire(import.meta.url)(binary);
} catch (err) {
  console.log(JSON.stringify({ binary, code: 'no-binary', reason: err.message.split('\n')[0] }));
  process.exit(0);
}
const probe = addon.probe([]);
const result = { binary, ...probe };
if (probe.code === 'ok') {
  addon.openDevice(0, []);
  result.describe = addon.describe();
}
console.log(JSON.stringify(result, null, 2));
