// `ds-zero` subcommands, written as functions that return text and an exit code (the bin prints and exits).
// Flags are parsed with node:util parseArgs: `--x=y` and `--x y` both work.
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { writeFp32, type ConsolidateOptions } from './consolidate.js';
import { estimateZero2, estimateZero3, modelStateBytes, type EstimateRow, type ZeroStage } from './estimate.js';

export interface CliResult {
  code: number;
  out: string;
}

const USAGE = `usage: ds-zero estimate --params N [--largest-layer-params N] [--gpus-per-node G] [--nodes M] [--buffer-factor F] [--json]
       ds-zero to-fp32 CHECKPOINT_DIR OUT.safetensors [--tag TAG]

  to-fp32 rebuilds whole fp32 weights from a ZeRO checkpoint's per-rank files (the tag in 'latest'
  unless --tag is given) and writes them to one safetensors file (DeepSpeed's zero_to_fp32.py).
  When it takes longer than a second it reports progress on stderr (rank files, bytes, elapsed).

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

type Parsed<O extends ParseArgsConfig['options']> = ReturnType<typeof parseArgs<{ options: O; allowPositionals: true; strict: true }>>;

/** node:util parseArgs (`--x=y` and `--x y`), or the usage problem in one line. */
function parseFlags<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O): Parsed<O> | string {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    const e = err as Error & { code?: string };
    // "Unknown option '--x'", "Option '-t, --tag <value>' argument missing": name the long form.
    const quoted = /'([^']+)'/.exec(e.message)?.[1] ?? '';
    const flag = /--[\w-]+/.exec(quoted)?.[0] ?? quoted.split(/[ ,]/)[0];
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown argument '${flag ?? e.message}'`;
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && / argument missing/.test(e.message)) return `${flag} needs a value`;
    return e.message.split('. ')[0]!;
  }
}

const ESTIMATE_OPTIONS = {
  params: { type: 'string' }, 'largest-layer-params': { type: 'string' }, 'gpus-per-node': { type: 'string' }, nodes: { type: 'string' },
  'buffer-factor': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
} as const;

export function estimateCommand(argv: string[]): CliResult {
  const parsed = parseFlags(argv, ESTIMATE_OPTIONS);
  if (typeof parsed === 'string') return { code: 2, out: `ds-zero estimate: ${parsed}\n\n${USAGE}` };
  const { values: opts, positionals } = parsed;
  if (opts.help) return { code: 0, out: USAGE };
  if (positionals.length > 0) return { code: 2, out: `ds-zero estimate: unknown argument '${positionals[0]}'\n\n${USAGE}` };
  const json = opts.json ?? false;
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

/** How a command reports while it runs (the bin: progress lines to stderr); tests pass a fake clock. */
export type CliIo = Pick<ConsolidateOptions, 'progress' | 'now' | 'after'>;

export function toFp32Command(argv: string[], io: CliIo = {}): CliResult {
  const parsed = parseFlags(argv, { tag: { type: 'string', short: 't' }, help: { type: 'boolean', short: 'h' } } as const);
  if (typeof parsed === 'string') return { code: 2, out: `ds-zero to-fp32: ${parsed}\n\n${USAGE}` };
  if (parsed.values.help) return { code: 0, out: USAGE };
  const positional = parsed.positionals;
  const tag = parsed.values.tag;
  if (positional.length !== 2) return { code: 2, out: `ds-zero to-fp32: expected CHECKPOINT_DIR and OUT.safetensors\n\n${USAGE}` };
  try {
    const c = writeFp32(positional[0]!, positional[1]!, tag, io);
    const numel = [...c.tensors.values()].reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    return { code: 0, out: `wrote ${c.tensors.size} fp32 tensors (${numel} parameters) of tag '${c.tag}' (ZeRO stage ${c.stage}, ${c.world} rank file(s)) to ${positional[1]}` };
  } catch (err) {
    return { code: 1, out: `ds-zero to-fp32: ${(err as Error).message}` };
  }
}

export function main(argv: string[], io: CliIo = {}): CliResult {
  const [cmd, ...rest] = argv;
  if (cmd === 'estimate') return estimateCommand(rest);
  if (cmd === 'to-fp32') return toFp32Command(rest, io);
  if (cmd === undefined || cmd === '-h' || cmd === '--help') return { code: cmd ? 0 : 2, out: USAGE };
  return { code: 2, out: `ds-zero: unknown command '${cmd}' (available: estimate, to-fp32)\n\n${USAGE}` };
}
