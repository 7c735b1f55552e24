#!/usr/bin/env node
// ds-native-build [--package DIR] [--cuda auto|on|off] [--verbose]
// Builds the addon(s) that DIR/native/addon.json describes. Only this bin exits; the library throws.
import { buildPackage } from './build.mjs';

const args = process.argv.slice(2);
const opt = { packageDir: process.cwd(), cuda: 'auto', verbose: false };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--package') opt.packageDir = args[++i];
  else if (a === '--cuda') opt.cuda = args[++i];
  else if (a === '--verbose' || a === '-v') opt.verbose = true;
  else {
    console.error(`ds-native-build: unknown argument '${a}'. Usage: ds-native-build [--package DIR] [--cuda auto|on|off] [--verbose]`);
    process.exit(2);
  }
}
try {
  const results = await buildPackage(opt);
  for (const r of results) console.log(`ds-native-build: ${r.target} ${r.status}${r.reason ? ` (${r.reason})` : ''} -> ${r.output ?? '-'}`);
} catch (err) {
  console.error(`ds-native-build: ${err.message}`);
  process.exit(1);
}
