// `pnpm bench` for @ds/tensor: imports every bench/*.bench.ts (each exports
// `run(opts: {smoke}) => Promise<Row[]>`), prints one table and writes bench/results.json.
// `--smoke` runs one tiny iteration of everything (CI); its figures mean nothing and go to
// bench/results.smoke.json. `--only=<prefix>` runs the matching files and updates just their rows.

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * One result row (ARCHITECTURE.md section 6); ratio = value / anchorValue, above 1 is better. A string
 * `config.note` (fraction of a peak or of a bandwidth, say) is printed in the table's last column.
 */
export interface Row {
  metric: string;
  value: number;
  unit: string;
  anchor: string | null;
  anchorValue: number | null;
  ratio: number | null;
  config: Record<string, unknown>;
}

type BenchModule = { run(opts: { smoke: boolean }): Promise<Row[]> };

function fmt(v: number | null): string {
  if (v === null) return '-';
  if (Math.abs(v) >= 1e6) return v.toExponential(3);
  return v >= 100 ? v.toFixed(1) : v.toPrecision(4);
}

function table(rows: Row[]): string {
  const head = ['metric', 'value', 'unit', 'anchor value', 'ratio (>1 better)', 'anchor', 'note'];
  const body = rows.map((r) => [r.metric, fmt(r.value), r.unit, fmt(r.anchorValue), r.ratio === null ? '-' : r.ratio.toFixed(2),
    r.anchor ?? `none: ${String(r.config.anchorMissing ?? 'no anchor')}`, typeof r.config.note === 'string' ? r.config.note : '']);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const smoke = process.argv.includes('--smoke');
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  const dir = dirname(fileURLToPath(import.meta.url));
  const files = readdirSync(dir).filter((f) => f.endsWith('.bench.ts') && (!only || f.startsWith(only))).sort();
  const rows: Row[] = [];
  for (const file of files) {
    const mod = (await import(pathToFileURL(join(dir, file)).href)) as BenchModule;
    const t0 = performance.now();
    const got = await mod.run({ smoke });
    console.error(`${file}: ${got.length} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    rows.push(...got);
  }
  console.log(table(rows));
  // A smoke run's figures are not measurements: they go to results.smoke.json, never over the
  // committed results.json. A full run with --only replaces its own rows and keeps the others.
  const out = join(dir, smoke ? 'results.smoke.json' : 'results.json');
  let kept: Row[] = [];
  if (only && !smoke && existsSync(out)) {
    const fresh = new Set(rows.map((r) => r.metric));
    kept = (JSON.parse(readFileSync(out, 'utf8')) as Row[]).filter((r) => !fresh.has(r.metric));
  }
  writeFileSync(out, JSON.stringify([...kept, ...rows], null, 2) + '\n');
  console.log(`\nwrote ${out}${smoke ? ' (smoke run: figures are not measurements)' : kept.length ? ` (${rows.length} rows replaced, ${kept.length} kept)` : ''}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
