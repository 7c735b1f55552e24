// What every package's `pnpm bench` shares: the result row of ARCHITECTURE.md section 6, the table
// printed at the end of a run, and writing the rows to bench/results.json. Benches run under tsx, so
// this package is TypeScript source with no build step.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

/**
 * What the machine was doing around a measurement. Load flatters us (PyTorch's OpenMP threads lose
 * far more than our pool on a busy machine), so every result records it: the load averages, and the
 * CPU time other processes used over a short window sampled from /proc/stat while the bench itself
 * is idle (before it measures, and again after), which, unlike the load average, sees a busy loop
 * at once.
 */
export interface MachineState {
  cpuModel: string;
  cpus: number;
  /** os.loadavg(): 1, 5 and 15 minutes. */
  loadavg: [number, number, number];
  /** Busy CPUs (0 .. cpus) over the sampling window, from /proc/stat; null where it cannot be read. */
  busyCpus: number | null;
  at: string;
}

/** Above this many busy CPUs per core (others' work, sampled while the bench is idle) a run is noisy. */
export const NOISY_BUSY_PER_CORE = 0.5;

function cpuTimes(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/** Samples the machine for `sampleMs` (blocking: call it while nothing of the bench runs). */
export function machineState(sampleMs = 1000): MachineState {
  const n = cpus().length;
  const a = cpuTimes();
  if (sampleMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, sampleMs);
  const b = cpuTimes();
  const busyCpus = a && b && b.total > a.total ? ((b.busy - a.busy) / (b.total - a.total)) * n : null;
  const [l1, l5, l15] = loadavg() as [number, number, number];
  return { cpuModel: cpus()[0]?.model ?? 'unknown', cpus: n, loadavg: [l1, l5, l15], busyCpus, at: new Date().toISOString() };
}

/** Noisy: other work kept NOISY_BUSY_PER_CORE of the cores or more busy before or after the run. */
export function isNoisy(states: readonly MachineState[]): boolean {
  return states.some((m) => m.busyCpus !== null && m.busyCpus >= NOISY_BUSY_PER_CORE * m.cpus);
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
    [r.config.noisy === true ? 'NOISY' : '', typeof r.config.note === 'string' ? r.config.note : ''].filter(Boolean).join(': '),
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
  /**
   * The machine before the bench measured (machineState() at its start). The writer samples it again
   * (the bench is idle by then); each row records both, and a noisy run goes to results.noisy.json,
   * never over results.json, so figures from a busy machine are not committed as results.
   */
  before?: MachineState;
  /** The state after the run; default: sampled now. (Tests pass one.) */
  after?: MachineState;
}

/** Writes the rows to `<benchDir>/results.json` (results.smoke.json, results.noisy.json) and returns a line saying what it did. */
export function writeResults(benchDir: string, inputRows: readonly Row[], opts: WriteOptions): string {
  const after = opts.after ?? machineState();
  const states = opts.before ? [opts.before, after] : [after];
  // A bench may mark a row noisy itself (e.g. its anchor measured alone differs from the in-run figure).
  const markedRows = inputRows.filter((r) => r.config.noisy === true).map((r) => r.metric);
  const noisy = !opts.smoke && (isNoisy(states) || markedRows.length > 0);
  const machine = { cpuModel: after.cpuModel, cpus: after.cpus, before: opts.before ?? null, after };
  const rows = inputRows.map((r) => ({ ...r, config: { ...r.config, machine, ...(noisy ? { noisy: true } : {}) } }));
  if (noisy) {
    const out = join(benchDir, 'results.noisy.json');
    writeFileSync(out, `${JSON.stringify(rows, null, 2)}\n`);
    const busy = states.map((m) => (m.busyCpus === null ? '?' : m.busyCpus.toFixed(2))).join(' then ');
    const why = isNoisy(states) ? `other work kept ${busy} of ${after.cpus} CPUs busy (${NOISY_BUSY_PER_CORE} per core or more)` : `the bench marked ${markedRows.join(', ')} noisy`;
    return `NOISY run: ${why}; wrote ${out}, results.json untouched: rerun on a quiet machine`;
  }
  const out = join(benchDir, opts.smoke ? 'results.smoke.json' : 'results.json');
  let old: Row[] | null = null;
  if (!opts.smoke && existsSync(out)) {
    const parsed: unknown = JSON.parse(readFileSync(out, 'utf8'));
    if (Array.isArray(parsed)) old = parsed as Row[];
    else if (opts.merge) throw new Error(`${out} does not hold an array of rows; delete it or run the whole bench`);
  }
  // A row measured without its anchor (PyTorch missing on this machine, say) does not replace a row
  // of results.json that has one: the run goes to results.anchorless.json and results.json stays.
  const anchored = new Set((old ?? []).filter((r) => r.anchorValue !== null && r.anchorValue !== undefined).map((r) => r.metric));
  const lost = rows.filter((r) => r.anchorValue === null && anchored.has(r.metric));
  if (lost.length > 0) {
    const side = join(benchDir, 'results.anchorless.json');
    writeFileSync(side, `${JSON.stringify(rows, null, 2)}\n`);
    const why = lost.map((r) => `${r.metric} (${String((r.config as Record<string, unknown>).anchorMissing ?? r.anchor ?? 'no anchor')})`).join('; ');
    return `ANCHOR MISSING: ${why}; results.json holds these rows with their anchors, so this run went to ${side}: install the anchor and rerun`;
  }
  let kept: Row[] = [];
  if (opts.merge && old) {
    const fresh = new Set(rows.map((r) => r.metric));
    kept = old.filter((r) => !fresh.has(r.metric));
  }
  writeFileSync(out, `${JSON.stringify([...kept, ...rows], null, 2)}\n`);
  if (opts.smoke) return `wrote ${out} (smoke run: figures are not measurements)`;
  return `wrote ${out}${kept.length ? ` (${rows.length} rows replaced, ${kept.length} kept)` : ''}`;
}

/**
 * In-run and standalone anchor figures further apart than this mark a row noisy: a load that came and
 * went while the anchor alternated with ours moved it (the issue-23 rule: 15%).
 */
export const ANCHOR_DRIFT = 0.15;

/**
 * How far the anchor measured alternately with ours (`inRun`) lies from the same anchor measured
 * alone afterwards (`alone`), as a fraction of `alone`, and, when that is above ANCHOR_DRIFT, the
 * sentence that marks the row noisy (`what` names the anchor, `unit` its figures). Either figure
 * missing: no drift and no reason (a row without an anchor says so elsewhere).
 */
export function anchorDrift(inRun: number | null, alone: number | null, what: string, unit: string): { drift: number | null; reason: string | null } {
  if (inRun === null || alone === null || !(alone > 0)) return { drift: null, reason: null };
  const drift = Math.abs(inRun - alone) / alone;
  if (!(drift > ANCHOR_DRIFT)) return { drift, reason: null };
  const fmt = (v: number) => (v >= 1e5 ? v.toExponential(2) : v >= 100 ? v.toFixed(0) : v.toPrecision(3));
  return { drift, reason: `${what} in the run ${fmt(inRun)} vs alone ${fmt(alone)} ${unit} (${(100 * drift).toFixed(0)}% apart, above ${100 * ANCHOR_DRIFT}%)` };
}

/**
 * A round's probe (f32 FMAs on the round's cores right after our part of it, GFLOP/s per core over
 * wall time) below this fraction of the run's measured one-core peak saw the cores taken: on the VMs
 * we run on the host takes CPU time in episodes that neither the load average nor steal time shows.
 */
export const CONTENDED_FRACTION = 0.9;

/**
 * The rounds whose probe (`probes[i]`, null where none ran) fell below CONTENDED_FRACTION of `peak`,
 * and, when there are `minRounds` or more of them, the sentence that marks the row noisy (`where`
 * says which cores the probe ran on). No peak: no rounds and no reason.
 */
export function contendedRounds(probes: readonly (number | null)[], peak: number | null, minRounds: number, where: string): { rounds: number[]; reason: string | null } {
  if (peak === null || !(peak > 0)) return { rounds: [], reason: null };
  const rounds = probes.flatMap((g, i) => (g !== null && g < CONTENDED_FRACTION * peak ? [i] : []));
  if (rounds.length < minRounds) return { rounds, reason: null };
  return {
    rounds,
    reason: `after ${rounds.length} of ${probes.length} rounds ${where} ran the FMA probe below ${100 * CONTENDED_FRACTION}% of one core's peak (${rounds.map((i) => probes[i]!.toFixed(0)).join(', ')} vs ${peak.toFixed(0)} GFLOP/s per core): something else had the CPU time (another process, or the host)`,
  };
}

/** Median of a non-empty list (the upper middle for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/**
 * A Debian library an anchor needs: the path `ldconfig -p` gives for the first soname matching
 * `soname`, installing Debian package `pkg` (with an apt-get update if the first try fails) when it is
 * missing, `install` is true and this process is root; or why there is none, naming the package.
 */
export function debianLib(soname: RegExp, pkg: string, purpose: string, install = true): { path: string } | string {
  const find = (): string | null => {
    const r = spawnSync('sh', ['-c', 'ldconfig -p'], { encoding: 'utf8' });
    if (r.status !== 0) return null;
    for (const line of r.stdout.split('\n')) {
      const m = /^\s*(\S+)\s.*=>\s*(\S+)/.exec(line);
      if (m && soname.test(m[1]!)) return m[2]!;
    }
    return null;
  };
  const have = find();
  if (have) return { path: have };
  if (!install) return `${pkg} is not installed (apt-get install ${pkg})`;
  if (process.getuid?.() !== 0) return `${pkg} is not installed and this bench is not root (apt-get install ${pkg})`;
  console.log(`installing ${pkg} (Debian) ${purpose} ...`);
  const apt = `DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkg} >/dev/null 2>&1`;
  spawnSync('sh', ['-c', `${apt} || (apt-get update -qq && ${apt})`], { encoding: 'utf8', timeout: 600_000 });
  const installed = find();
  return installed ? { path: installed } : `apt-get could not install ${pkg}`;
}

/**
 * The TCMalloc library to preload into a PyTorch anchor, as PyTorch's own CPU launcher does
 * (`python -m torch.backends.xeon.run_cpu` preloads TCMalloc by default: glibc's malloc returns a large
 * tensor's pages to the kernel on free, so every step faults its temporaries in again; measured on a
 * 2-vCPU Zen 4 with PyTorch 1.13, TCMalloc made the GPT bench's bf16 step 14-23% faster and
 * foreach AdamW over 50M parameters stop faulting 400 MB a step). Debian's libtcmalloc-minimal4 is
 * installed when missing and this process is root (debianLib); `env.DS_BENCH_TORCH_MALLOC=default`
 * keeps glibc's malloc; `install` false only looks. Returns the path, or why there is none (the anchor
 * then runs on glibc's malloc and says so).
 */
export function tcmallocPreload(env: NodeJS.ProcessEnv = process.env, install = true): { path: string } | string {
  if (env.DS_BENCH_TORCH_MALLOC === 'default') return 'DS_BENCH_TORCH_MALLOC=default: glibc malloc asked for';
  return debianLib(/^libtcmalloc(_minimal)?\.so\.4$/, 'libtcmalloc-minimal4', 'for the PyTorch anchor, as torch.backends.xeon.run_cpu preloads it', install);
}

/** The environment that preloads `malloc` (tcmallocPreload's answer) ahead of any LD_PRELOAD already set; none for a reason string. */
export function preloadEnv(malloc: { path: string } | string): NodeJS.ProcessEnv {
  return typeof malloc === 'string' ? {} : { LD_PRELOAD: [malloc.path, process.env.LD_PRELOAD].filter(Boolean).join(':') };
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
  return `torch is not importable here (${candidates.map((p) => `${p} -c "import torch"`).join(' and ')} failed; on Debian: apt-get install python3-torch)`;
}

/** One run of the gloo anchor: 2-rank allreduce figures per size key. */
export interface GlooRun {
  torch: string;
  rows: Record<string, { bytes: number; timeUs: number; algbw: number; busbw: number }>;
}

/**
 * PyTorch gloo's 2-rank allreduce on this host (gloo_anchor.py beside this package), measured the
 * way @ds/core's perf.ts measures ours, for every comm bench's anchor; a string says why there is none.
 */
export function glooAnchor(cfg: { sizes: Record<string, number>; reps: number; warmup: number; smoke: boolean }): GlooRun | string {
  const found = pythonWithTorch();
  if (typeof found === 'string') return found;
  const script = fileURLToPath(new URL('../gloo_anchor.py', import.meta.url));
  const r = spawnSync(found.python, [script, JSON.stringify(cfg)], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) return `the gloo anchor failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr.trim().split('\n').pop() ?? ''}`;
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as GlooRun;
}
