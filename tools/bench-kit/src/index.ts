// What every package's `pnpm bench` shares: the result row of ARCHITECTURE.md section 6, the table
// printed at the end of a run, and writing the rows to bench/results.json. Benches run under tsx, so
// this package is TypeScript source with no build step.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * One result row. `ratio` is oriented so that above 1 is better: value / anchorValue for a rate,
 * anchorValue / value for a time or a size. A string `config.note` (a fraction of a peak or of a
 * bandwidth, say) is printed in the table's last column; `config.anchorMissing` says why a row has
 * no anchor.
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

/** A number for the table: 4 significant digits, one decimal from 100 on, exponent from 1e6 on. */
export function formatValue(v: number | null): string {
  if (v === null) return '-';
  if (Math.abs(v) >= 1e6) return v.toExponential(3);
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}

/** The rows as an aligned text table: metric, value, unit, anchor value, ratio, anchor, note. */
export function table(rows: readonly Row[]): string {
  const head = ['metric', 'value', 'unit', 'anchor value', 'ratio (>1 better)', 'anchor', 'note'];
  const body = rows.map((r) => [
    r.metric,
    formatValue(r.value),
    r.unit,
    formatValue(r.anchorValue),
    r.ratio === null ? '-' : r.ratio.toFixed(2),
    r.anchor ?? `none: ${String(r.config.anchorMissing ?? 'no anchor')}`,
    typeof r.config.note === 'string' ? r.config.note : '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

export interface WriteOptions {
  /** A smoke run's figures are not measurements: they go to results.smoke.json, never over results.json. */
  smoke: boolean;
  /** A partial run (say `--only=<file>`): replace the rows of the same metrics and keep the others. */
  merge?: boolean;
}

/** Writes the rows to `<benchDir>/results.json` (or results.smoke.json) and returns a line saying what it did. */
export function writeResults(benchDir: string, rows: readonly Row[], opts: WriteOptions): string {
  const out = join(benchDir, opts.smoke ? 'results.smoke.json' : 'results.json');
  let kept: Row[] = [];
  if (opts.merge && !opts.smoke && existsSync(out)) {
    const fresh = new Set(rows.map((r) => r.metric));
    const old: unknown = JSON.parse(readFileSync(out, 'utf8'));
    if (!Array.isArray(old)) throw new Error(`${out} does not hold an array of rows; delete it or run the whole bench`);
    kept = (old as Row[]).filter((r) => !fresh.has(r.metric));
  }
  writeFileSync(out, `${JSON.stringify([...kept, ...rows], null, 2)}\n`);
  if (opts.smoke) return `wrote ${out} (smoke run: figures are not measurements)`;
  return `wrote ${out}${kept.length ? ` (${rows.length} rows replaced, ${kept.length} kept)` : ''}`;
}

/** Median of a non-empty list (the upper middle for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/**
 * The first of `python3` (on PATH) and Debian's `/usr/bin/python3` that imports torch, for benches
 * whose anchor is PyTorch measured in the same run; a string says why there is none. Torch is never a
 * dependency: without it a bench reports its rows with the anchor missing.
 */
export function pythonWithTorch(candidates: readonly string[] = ['python3', '/usr/bin/python3']): { python: string } | string {
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 });
    if (probe.status === 0) return { python };
  }
  return `torch is not importable here (${candidates.map((p) => `${p} -c "import torch"`).join(' and ')} failed)`;
}
