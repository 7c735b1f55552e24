// The text of a step's profile, laid out as DeepSpeed's print_model_profile: a summary (parameters,
// forward MACs and FLOPs, the latencies of forward, backward and step, FLOPS), an aggregated profile
// (per depth, the top_modules module types by parameters, MACs and forward latency) and, when
// `detailed`, one row per module down to module_depth. Backward is not measured per module: its
// FLOPs are estimated as (2 + recompute_fwd_factor) x forward, as DeepSpeed does. Added here: the
// measured peak of the device and the MFU against it. "per GPU" reads "per rank" (most runs here are
// on the cpu).
import { flatten, type ModuleProfile } from './flops-profiler.js';

/** What the engine measured at the profiled step. */
export interface StepProfile {
  step: number;
  worldSize: number;
  dataParallelSize: number;
  modelParallelSize: number;
  /** Samples in the profiled micro batch on this rank. */
  microBatch: number;
  tree: ModuleProfile;
  fwdMs: number;
  /** Backward including the wait for gradient reductions (DeepSpeed's bwd timer). */
  bwdMs: number;
  /** The optimizer step. */
  stepMs: number;
  recomputeFwdFactor: number;
  /** Measured peak FLOP/s of this rank's compute, or why there is none. */
  peak: { flops: number; what: string } | { missing: string };
}

export interface ProfileFigures {
  fwdFlops: number;
  /** 2 + recompute_fwd_factor. */
  bwdFactor: number;
  iterMs: number;
  /** (bwdFactor + 1) x forward FLOPs over the iteration latency. */
  flopsPerSecond: number;
  /** flopsPerSecond over the measured peak; null without a peak. */
  mfu: number | null;
  samplesPerSecond: number;
}

export function profileFigures(p: StepProfile): ProfileFigures {
  const fwdFlops = p.tree.flops;
  const bwdFactor = 2 + p.recomputeFwdFactor;
  const iterMs = p.fwdMs + p.bwdMs + p.stepMs;
  const flopsPerSecond = ((bwdFactor + 1) * fwdFlops) / (iterMs / 1000);
  return {
    fwdFlops,
    bwdFactor,
    iterMs,
    flopsPerSecond,
    mfu: 'flops' in p.peak ? flopsPerSecond / p.peak.flops : null,
    samplesPerSecond: p.microBatch / (iterMs / 1000),
  };
}

/** DeepSpeed's number_to_string: 1234567 -> '1.23 M'. */
export function siNumber(n: number, precision = 2): string {
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'K'],
  ];
  for (const [scale, unit] of units) if (Math.abs(n) >= scale) return `${(n / scale).toFixed(precision)} ${unit}`;
  return `${n.toFixed(n === Math.trunc(n) ? 0 : precision)} `;
}

export function duration(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 1) return `${ms.toFixed(2)} ms`;
  return `${(ms * 1000).toFixed(2)} us`;
}

const pct = (part: number, whole: number) => `${whole > 0 ? ((100 * part) / whole).toFixed(2) : '0.00'}%`;
const perSecond = (n: number, ms: number) => (ms > 0 ? n / (ms / 1000) : 0);

function line(label: string, value: string | number): string {
  return `${label.padEnd(70)}${value}`;
}

function summary(p: StepProfile, f: ProfileFigures): string[] {
  const fwdMacs = p.tree.macs;
  const bwd = f.bwdFactor === 2 ? '2' : f.bwdFactor.toFixed(2);
  const all = (f.bwdFactor + 1).toFixed(f.bwdFactor === 2 ? 0 : 2);
  const out = [
    `Profile Summary at step ${p.step}:`,
    'Notations:',
    'data parallel size (dp_size), model parallel size(mp_size),',
    'number of parameters (params), number of multiply-accumulate operations(MACs),',
    'number of floating-point operations (flops), floating-point operations per second (FLOPS),',
    'fwd latency (forward propagation latency), bwd latency (backward propagation latency),',
    'step (weights update latency), iter latency (sum of fwd, bwd and step latency)',
    `backward is not measured per module: its flops are ${bwd} x the forward's (DeepSpeed's estimate)`,
    '',
    line('world size:', p.worldSize),
    line('data parallel size:', p.dataParallelSize),
    line('model parallel size:', p.modelParallelSize),
    line('batch size per rank:', p.microBatch),
    line('params per rank:', siNumber(p.tree.params)),
    line('params of model = params per rank * mp_size:', siNumber(p.tree.params * p.modelParallelSize)),
    line('fwd MACs per rank:', `${siNumber(fwdMacs)}MACs`),
    line('fwd flops per rank:', siNumber(f.fwdFlops)),
    line('fwd flops of model = fwd flops per rank * mp_size:', siNumber(f.fwdFlops * p.modelParallelSize)),
    line('fwd latency:', duration(p.fwdMs)),
    line('fwd FLOPS per rank = fwd flops per rank / fwd latency:', `${siNumber(perSecond(f.fwdFlops, p.fwdMs))}FLOPS`),
    line('bwd latency:', duration(p.bwdMs)),
    line(`bwd FLOPS per rank = ${bwd} * fwd flops per rank / bwd latency:`, `${siNumber(perSecond(f.bwdFactor * f.fwdFlops, p.bwdMs))}FLOPS`),
    line(`fwd+bwd FLOPS per rank = ${all} * fwd flops per rank / (fwd+bwd latency):`, `${siNumber(perSecond((f.bwdFactor + 1) * f.fwdFlops, p.fwdMs + p.bwdMs))}FLOPS`),
    line('step latency:', duration(p.stepMs)),
    line('iter latency:', duration(f.iterMs)),
    line(`FLOPS per rank = ${all} * fwd flops per rank / iter latency:`, `${siNumber(f.flopsPerSecond)}FLOPS`),
    line('samples/second:', f.samplesPerSecond.toFixed(2)),
  ];
  if ('flops' in p.peak) {
    out.push(line('measured peak per rank:', `${siNumber(p.peak.flops)}FLOPS (${p.peak.what})`));
    out.push(line('MFU = FLOPS per rank / measured peak per rank:', `${(100 * f.mfu!).toFixed(1)}%`));
  } else {
    out.push(line('MFU:', `not measured: ${p.peak.missing}`));
  }
  return out;
}

/** The deepest level to show: module_depth, or every level for -1. */
function maxDepth(all: readonly ModuleProfile[], moduleDepth: number): number {
  const deepest = Math.max(...all.map((m) => m.depth));
  return moduleDepth < 0 ? deepest : Math.min(moduleDepth, deepest);
}

/** Per depth, the top_modules module types by params, MACs and latency (types summed at a depth, as DeepSpeed). */
function aggregated(all: readonly ModuleProfile[], moduleDepth: number, topModules: number): string[] {
  const out = ['Top modules in terms of params, MACs or fwd latency at different model depths:'];
  for (let d = 0; d <= maxDepth(all, moduleDepth); d++) {
    const byType = new Map<string, { params: number; macs: number; latencyMs: number }>();
    for (const m of all) {
      if (m.depth !== d) continue;
      const t = byType.get(m.type) ?? { params: 0, macs: 0, latencyMs: 0 };
      t.params += m.params;
      t.macs += m.macs;
      t.latencyMs += m.latencyMs;
      byType.set(m.type, t);
    }
    const top = (key: 'params' | 'macs' | 'latencyMs', fmt: (n: number) => string) =>
      `{${[...byType]
        .sort((a, b) => b[1][key] - a[1][key])
        .slice(0, topModules)
        .map(([type, v]) => `'${type}': '${fmt(v[key])}'`)
        .join(', ')}}`;
    out.push(`depth ${d}:`);
    out.push(`    params      - ${top('params', (n) => siNumber(n))}`);
    out.push(`    MACs        - ${top('macs', (n) => `${siNumber(n)}MACs`)}`);
    out.push(`    fwd latency - ${top('latencyMs', duration)}`);
  }
  return out;
}

/** One row per module down to module_depth, indented by depth. */
function detailedRows(p: StepProfile, all: readonly ModuleProfile[], moduleDepth: number): string[] {
  const root = p.tree;
  const depth = maxDepth(all, moduleDepth);
  const rows = all.filter((m) => m.depth <= depth);
  const label = (m: ModuleProfile) => `${'  '.repeat(m.depth)}${m.name === '' ? '(model)' : m.name.split('.').pop()}: ${m.type}`;
  const width = Math.max(...rows.map((m) => label(m).length), 6) + 2;
  const head = `${'module'.padEnd(width)}${'params'.padStart(11)}${'%'.padStart(8)}${'MACs'.padStart(14)}${'%'.padStart(8)}${'fwd latency'.padStart(13)}${'%'.padStart(8)}${'FLOPS'.padStart(14)}`;
  const out = [
    'Each module is listed with its params, percentage of total params, MACs, percentage of total MACs, fwd latency, percentage of total fwd latency, fwd FLOPS',
    head,
  ];
  for (const m of rows) {
    out.push(
      `${label(m).padEnd(width)}${siNumber(m.params).padStart(11)}${pct(m.params, root.params).padStart(8)}${`${siNumber(m.macs)}MACs`.padStart(14)}${pct(m.macs, root.macs).padStart(8)}` +
        `${duration(m.latencyMs).padStart(13)}${pct(m.latencyMs, root.latencyMs).padStart(8)}${`${siNumber(perSecond(m.flops, m.latencyMs))}FLOPS`.padStart(14)}${m.counted ? '' : '  (no formula: own ops not counted)'}`,
    );
  }
  return out;
}

export interface ReportOptions {
  moduleDepth: number;
  topModules: number;
  detailed: boolean;
}

/** The whole profile as lines of text. */
export function formatProfile(p: StepProfile, opts: ReportOptions): string[] {
  const all = flatten(p.tree);
  const f = profileFigures(p);
  const rule = (title: string) => `${'-'.repeat(26)} ${title} ${'-'.repeat(26)}`;
  const out = ['', rule('DeepSpeed Flops Profiler'), ...summary(p, f), '', rule('Aggregated Profile per rank'), ...aggregated(all, opts.moduleDepth, opts.topModules)];
  if (opts.detailed) out.push('', rule('Detailed Profile per rank'), ...detailedRows(p, all, opts.moduleDepth));
  const uncounted = all.filter((m) => !m.counted).map((m) => `${m.name || '(model)'} (${m.type})`);
  if (uncounted.length > 0) out.push('', `no flop formula for: ${uncounted.join(', ')}; their own ops are missing from the counts`);
  out.push(rule('End of DeepSpeed Flops Profiler'), '');
  return out;
}
