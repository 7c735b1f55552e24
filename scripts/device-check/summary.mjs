// The short table device-check.sh prints last: the test-load, the kernel suite's counts (and the
// first failures by name), and the bench rows. Reads what the earlier stages wrote to the out folder.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const out = process.argv[2];
const read = (f) => {
  const p = join(out, f);
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8'));
  } catch {
    return null;
  }
};
const lines = [];
const probe = read('probe.json');
lines.push(['test-load', probe ? (probe.code === 'ok' ? `ok: ${probe.gpu} (cc ${probe.computeCapability}), ${probe.cublasLt}` : `${probe.code}: ${probe.reason}`) : 'no probe output']);
const v = read('vitest.json');
if (v) {
  lines.push(['kernel suite', `${v.numPassedTests} passed, ${v.numFailedTests} failed, ${v.numPendingTests + (v.numTodoTests ?? 0)} skipped of ${v.numTotalTests}`]);
  const failed = (v.testResults ?? []).flatMap((f) => (f.assertionResults ?? []).filter((a) => a.status === 'failed').map((a) => a.fullName));
  for (const name of failed.slice(0, 8)) lines.push(['  FAILED', name]);
} else lines.push(['kernel suite', 'no vitest report (timed out or did not start)']);
const rows = read('results.cuda.json');
if (rows) {
  for (const r of rows) {
    const anchor = r.anchorValue === null ? `anchor missing: ${r.config?.anchorMissing ?? '?'}` : `torch ${r.anchorValue.toFixed(1)}, ratio ${r.ratio.toFixed(2)}`;
    lines.push([r.metric, `${r.value.toFixed(1)} ${r.unit} (${anchor})${r.config?.note ? `; ${r.config.note}` : ''}`]);
  }
  if (!rows.some((r) => r.metric === 'gpt2_124m_tokens_per_s_cuda')) lines.push(['gpt2_124m_tokens_per_s_cuda', 'not measured (see the bench output above)']);
} else lines.push(['bench', 'no results.cuda.json (timed out or skipped)']);
const w = Math.max(...lines.map((l) => l[0].length));
for (const [k, val] of lines) console.log(`${k.padEnd(w)}  ${val}`);
