// `ds-pipe` subcommands as a function returning text and an exit code (the bin prints and exits).
import { parseArgs } from 'node:util';

import { writePipelineFp32 } from './consolidate.js';

export interface CliResult {
  code: number;
  out: string;
}

const USAGE = `usage: ds-pipe to-fp32 CHECKPOINT_DIR OUT.safetensors [--tag TAG]

  to-fp32 joins a pipeline and/or tensor-parallel checkpoint (one mp_rank_NN file per stage and
  model rank, layer_NN-model_MM files for pipelines) into whole fp32 weights in one safetensors file,
  named as the module names them on one stage with a model degree of 1 (the tag in 'latest' unless
  --tag is given).`;

export function main(argv: string[]): CliResult {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h') return { code: cmd === undefined ? 2 : 0, out: USAGE };
  if (cmd !== 'to-fp32') return { code: 2, out: `ds-pipe: unknown command '${cmd}' (available: to-fp32)\n\n${USAGE}` };
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: { tag: { type: 'string' } }, allowPositionals: true, strict: true });
  } catch (err) {
    return { code: 2, out: `ds-pipe to-fp32: ${(err as Error).message}\n\n${USAGE}` };
  }
  if (parsed.positionals.length !== 2) return { code: 2, out: `ds-pipe to-fp32: expected CHECKPOINT_DIR and OUT.safetensors\n\n${USAGE}` };
  const [dir, out] = parsed.positionals as [string, string];
  try {
    const c = writePipelineFp32(dir, out, parsed.values.tag);
    const numel = [...c.tensors.values()].reduce((a, t) => a + t.data.length, 0);
    return { code: 0, out: `ds-pipe to-fp32: ${c.tensors.size} tensors (${numel} fp32 values) from tag '${c.tag}' (pipe ${c.pipe} x model ${c.model}) written to ${out}` };
  } catch (err) {
    return { code: 1, out: `ds-pipe to-fp32: ${(err as Error).message}` };
  }
}
