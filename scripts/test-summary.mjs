#!/usr/bin/env node
// Adds up the vitest JSON reports in a folder (one per package, written when DS_TEST_REPORT_DIR is
// set) and prints the closing line CI reads: `N passed, N failed[, N skipped]`.
// Exit code 1 when any test failed, a suite failed to load, or no report was found at all.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: test-summary.mjs REPORT_DIR');
  process.exit(2);
}
let files = [];
try {
  files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
} catch (err) {
  console.error(`test-summary: cannot read ${dir}: ${err.message}`);
}
let passed = 0;
let failed = 0;
let skipped = 0;
let brokenSuites = 0;
const rows = [];
for (const f of files) {
  let r;
  try {
    r = JSON.parse(readFileSync(join(dir, f), 'utf8'));
  } catch (err) {
    console.error(`test-summary: ${f} is not a vitest JSON report: ${err.message}`);
    brokenSuites += 1;
    continue;
  }
  const p = r.numPassedTests ?? 0;
  const fl = r.numFailedTests ?? 0;
  const s = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  // A test file that fails to import counts as a failed suite with no failed test: count it too.
  const suiteFailures = (r.testResults ?? []).filter((t) => t.status === 'failed' && (t.assertionResults ?? []).length === 0).length;
  passed += p;
  failed += fl;
  skipped += s;
  brokenSuites += suiteFailures;
  rows.push(`  ${f.replace(/\.json$/, '').padEnd(20)} ${String(p).padStart(5)} passed ${String(fl).padStart(4)} failed ${String(s).padStart(4)} skipped${suiteFailures ? `  (${suiteFailures} file(s) failed to load)` : ''}`);
}
console.log('\nTest summary by project:');
for (const row of rows) console.log(row);
if (files.length === 0) console.log('  (no reports found)');
failed += brokenSuites;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || files.length === 0 ? 1 : 0);
