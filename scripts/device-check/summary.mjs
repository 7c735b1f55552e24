// The short table run.mjs prints last: how each stage ended, the test-load, the self-check's counts
// (with the first failures by name and the worst margin among the passes), and the bench rows.
// Reads what the stages wrote to the out folder: `node summary.mjs <outDir>`.
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
for (const s of read('stages.json') ?? []) if (s.ended !== 'exit 0') lines.push([`stage ${s.stage}`, `${s.ended} after ${s.seconds} s`]);
const probe = read('probe.json');
lines.push(['test-load', probe ? (probe.code === 'ok' ? `ok: ${probe.gpu} (cc ${probe.computeCapability}), ${probe.cublasLt}` : `${probe.code}: ${probe.reason}`) : 'no probe output']);
const sc = read('selfcheck.json');
if (!sc) lines.push(['self-check', 'no selfcheck.json (timed out or did not start)']);
else if (!sc.available) lines.push(['self-check', `not run: ${sc.reason}`]);
else {
  lines.push(['self-check', `${sc.passed} passed, ${sc.failed} failed of ${sc.cases.length} cases (${(sc.ms / 1000).toFixed(1)} s)`]);
  for (const c of sc.cases.filter((x) => !x.ok).slice(0, 8)) {
    const err = c.worstError === null ? '' : ` (|diff| ${c.worstError.toPrecision(3)}, atol ${c.tolerance.atol} rtol ${c.tolerance.rtol})`;
    lines.push(['  FAILED', `${c.name} [${c.dtype}]${err}`]);
  }
  // The pass closest to its tolerance: where a kernel is nearest to failing.
  const margin = (c) => Math.max(...c.outputs.map((o) => (o.worstRatio === null ? 0 : o.worstRatio)));
  const closest = sc.cases.filter((c) => c.ok && c.worstError !== null).sort((a, b) => margin(b) - margin(a))[0];
  if (closest) lines.push(['  closest pass', `${closest.name} [${closest.dtype}]: ${(100 * margin(closest)).toFixed(0)}% of its tolerance`]);
}
const rows = read('results.cuda.json');
if (rows) {
  for (const r of rows) {
    const anchor = r.anchorValue === null ? `anchor missing: ${r.config?.anchorMissing ?? '?'}` : `torch ${r.anchorValue.toFixed(1)}, ratio ${r.ratio.toFixed(2)}`;
    lines.push([r.metric, `${r.value.toFixed(1)} ${r.unit} (${anchor})${r.config?.note ? `; ${r.config.note}` : ''}`]);
  }
}
const missing = read('bench-missing.json') ?? {};
for (const [metric, why] of Object.entries(missing)) lines.push([metric, `not measured: ${String(why).split('\n')[0].slice(0, 300)}`]);
if (!rows && Object.keys(missing).length === 0) lines.push(['bench', sc && !sc.available ? 'not run: cuda unavailable' : 'no rows (timed out or did not start)']);
const w = Math.max(...lines.map((l) => l[0].length));
for (const [k, val] of lines) console.log(`${k.padEnd(w)}  ${val}`);
