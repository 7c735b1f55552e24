// `ds-zero` subcommands, written as functions that return text and an exit code (the bin prints and exits).
import { writeFp32 } from './consolidate.js';
import { estimateZero2, estimateZero3, modelStateBytes, type EstimateRow, type ZeroStage } from './estimate.js';

export interface CliResult {
  code: number;
  out: string;
}

const USAGE = `usage: ds-zero estimate --params N [--largest-layer-params N] [--gpus-per-node G] [--nodes M] [--buffer-factor F] [--json]
       ds-zero to-fp32 CHECKPOINT_DIR OUT.safetensors [--tag TAG]

  to-fp32 rebuilds whole fp32 weights from a ZeRO checkpoint's per-rank files (the tag in 'latest'
  unless --tag is given) and writes them to one safetensors file (DeepSpeed's zero_to_fp32.py).

  N accepts suffixes K, M, B (or T): 7.5B = 7.5e9 parameters.
  Prints the ZeRO paper's per-rank model-state memory for stages 0-3 over G*M data-parallel ranks,
  then DeepSpeed's ZeRO-2 and ZeRO-3 estimators (with offload options).`;

/** Parses 7.5B, 125M, 3e9, 1_000 into a number; NaN when it is not one. */
export function parseCount(s: string): number {
  const m = /^\s*([0-9][0-9_]*(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)\s*([kmbt]?)\s*$/i.exec(s);
  if (!m) return NaN;
  const scale = { '': 1, k: 1e3, m: 1e6, b: 1e9, t: 1e12 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'b' | 't'];
  return Number(m[1]!.replace(/_/g, '')) * scale;
}

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(bytes / 1e9 >= 100 ? 1 : 2)} GB`;
const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)}GB`;

function rowsTable(rows: EstimateRow[]): string[] {
  return ['    per CPU |  per GPU | Options', ...rows.map((r) => `  ${gib(r.perCpuBytes).padStart(9)} | ${gib(r.perGpuBytes).padStart(8)} | ${r.options}`)];
}

const FORMULAS: Record<ZeroStage, string> = { 0: '16 Psi', 1: '4 Psi + 12 Psi/N', 2: '2 Psi + 14 Psi/N', 3: '16 Psi/N' };

export function estimateCommand(argv: string[]): CliResult {
  const opts: Record<string, string> = {};
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '-h' || a === '--help') return { code: 0, out: USAGE };
    else if (a.startsWith('--') && ['--params', '--largest-layer-params', '--gpus-per-node', '--nodes', '--buffer-factor'].includes(a.split('=')[0]!)) {
      const [k, inline] = a.split('=');
      const v = inline ?? argv[++i];
      if (v === undefined) return { code: 2, out: `ds-zero estimate: ${k} needs a value\n\n${USAGE}` };
      opts[k!.slice(2)] = v;
    } else return { code: 2, out: `ds-zero estimate: unknown argument '${a}'\n\n${USAGE}` };
  }
  if (opts.params === undefined) return { code: 2, out: `ds-zero estimate: --params is required\n\n${USAGE}` };
  const totalParams = parseCount(opts.params);
  const largestLayerParams = opts['largest-layer-params'] === undefined ? 0 : parseCount(opts['largest-layer-params']);
  const gpusPerNode = opts['gpus-per-node'] === undefined ? 1 : Number(opts['gpus-per-node']);
  const nodes = opts.nodes === undefined ? 1 : Number(opts.nodes);
  const bufferFactor = opts['buffer-factor'] === undefined ? 1.5 : Number(opts['buffer-factor']);
  const input = { totalParams, largestLayerParams, gpusPerNode, nodes, bufferFactor };
  let z2: EstimateRow[];
  let z3: EstimateRow[];
  try {
    z2 = estimateZero2(input);
    z3 = estimateZero3(input);
  } catch (err) {
    return { code: 2, out: `ds-zero estimate: ${(err as Error).message}` };
  }
  const ranks = gpusPerNode * nodes;
  const stages = ([0, 1, 2, 3] as const).map((s) => ({ stage: s, bytesPerRank: modelStateBytes(s, totalParams, ranks), formula: FORMULAS[s] }));
  if (json) return { code: 0, out: JSON.stringify({ input, ranks, stages, zero2: z2, zero3: z3 }, null, 2) };
  const lines = [
    `ZeRO model states per rank (ZeRO paper count: mixed-precision Adam, K = 12; Psi = ${(totalParams / 1e9).toFixed(2)}B params, N = ${ranks} ranks, GB = 1e9 bytes):`,
    '  stage | per rank  | formula',
    ...stages.map((s) => `  ${String(s.stage).padEnd(5)} | ${gb(s.bytesPerRank).padStart(9)} | ${s.formula}`),
    '',
    `DeepSpeed estimator (GB = 2^30 bytes, buffer factor ${bufferFactor}). Estimated memory needed for params, optim states and gradients for a:`,
    `HW: Setup with ${nodes} node${nodes === 1 ? '' : 's'}, ${gpusPerNode} GPU${gpusPerNode === 1 ? '' : 's'} per node.`,
    `SW: Model with ${Math.round(totalParams / 1e6)}M total params, ${Math.round(largestLayerParams / 1e6)}M largest layer params.`,
    'ZeRO-2:',
    ...rowsTable(z2),
    'ZeRO-3:',
    ...rowsTable(z3),
  ];
  return { code: 0, out: lines.join('\n') };
}

export function toFp32Command(argv: string[]): CliResult {
  const positional: string[] = [];
  let tag: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') return { code: 0, out: USAGE };
    if (a === '--tag' || a === '-t') {
      tag = argv[++i];
      if (tag === undefined) return { code: 2, out: `ds-zero to-fp32: ${a} needs a value\n\n${USAGE}` };
    } else if (a.startsWith('--tag=')) tag = a.slice('--tag='.length);
    else if (a.startsWith('-')) return { code: 2, out: `ds-zero to-fp32: unknown argument '${a}'\n\n${USAGE}` };
    else positional.push(a);
  }
  if (positional.length !== 2) return { code: 2, out: `ds-zero to-fp32: expected CHECKPOINT_DIR and OUT.safetensors\n\n${USAGE}` };
  try {
    const c = writeFp32(positional[0]!, positional[1]!, tag);
    const numel = [...c.tensors.values()].reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    return { code: 0, out: `wrote ${c.tensors.size} fp32 tensors (${numel} parameters) of tag '${c.tag}' (ZeRO stage ${c.stage}, ${c.world} rank file(s)) to ${positional[1]}` };
  } catch (err) {
    return { code: 1, out: `ds-zero to-fp32: ${(err as Error).message}` };
  }
}

export function main(argv: string[]): CliResult {
  const [cmd, ...rest] = argv;
  if (cmd === 'estimate') return estimateCommand(rest);
  if (cmd === 'to-fp32') return toFp32Command(rest);
  if (cmd === undefined || cmd === '-h' || cmd === '--help') return { code: cmd ? 0 : 2, out: USAGE };
  return { code: 2, out: `ds-zero: unknown command '${cmd}' (available: estimate, to-fp32)\n\n${USAGE}` };
}
