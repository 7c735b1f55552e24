#!/usr/bin/env node
// ds-config check FILE [--world-size N] [--strict]
// Validates a ds_config and explains it: the resolved batch triad, the plugins it needs and whether
// they are installed (installed @ds/* plugins are loaded so their own schemas check their sections),
// and every problem. Exit code 0 when valid, 1 when not, 2 for a usage error.
import { parseArgs } from 'node:util';

import { checkConfig, formatCheckReport } from '../config/check.js';
import { isMainModule } from '../main-module.js';
import { discoverPlugins } from '../plugin/discover.js';

const USAGE = `usage: ds-config check FILE [--world-size N] [--strict]
       ds-config --help
  FILE          a ds_config.json (JSON or hjson), or a base64 string of JSON
  --world-size  data-parallel world size used to resolve the batch triad (default 1)
  --strict      unknown top-level keys are errors, not warnings`;

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

interface Args {
  file: string;
  worldSize: number;
  strict: boolean;
}

/** The parsed command, '' for --help, or a usage problem. Flags take `--x=y` and `--x y` (node:util parseArgs). */
function parseCommand(argv: readonly string[]): Args | string {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { 'world-size': { type: 'string' }, strict: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    // parseArgs' first sentence names the option ("Unknown option '--x'", "Option '--y <value>' argument missing").
    return (err as Error).message.split('. ')[0]!;
  }
  const { values, positionals } = parsed;
  if (values.help) return '';
  const [command, file, ...extra] = positionals;
  if (command !== 'check') return command === undefined ? 'missing command (check)' : `unknown command '${command}'`;
  if (file === undefined) return 'missing FILE';
  if (extra.length > 0) return `unexpected argument '${extra[0]}'`;
  const raw = values['world-size'];
  const worldSize = raw === undefined ? 1 : Number(raw);
  if (!Number.isInteger(worldSize) || worldSize < 1) return `--world-size needs an integer >= 1, got '${raw ?? ''}'`;
  return { file, worldSize, strict: values.strict ?? false };
}

export { discoverPlugins };
export type Discover = typeof discoverPlugins;

/** Runs the command; `discover` is replaceable so that tests can look plugins up once for many runs. */
export async function main(argv: readonly string[], io: Io, discover: Discover = discoverPlugins): Promise<number> {
  const args = parseCommand(argv);
  if (typeof args === 'string') {
    if (!args) {
      io.out(USAGE);
      return 0;
    }
    io.err(`ds-config: ${args}\n${USAGE}`);
    return 2;
  }
  const { registry, installed, notes } = await discover();
  const report = checkConfig(args.file, { worldSize: args.worldSize, strict: args.strict, registry, installed });
  for (const note of notes) io.err(`note: ${note}`);
  const text = formatCheckReport(report, args.file.length > 100 ? `${args.file.slice(0, 97)}...` : args.file);
  (report.ok ? io.out : io.err)(text);
  return report.ok ? 0 : 1;
}

// Run only when this file is the program, not when imported (tests import it).
const invokedDirectly = isMainModule(import.meta.url);
if (invokedDirectly) {
  main(process.argv.slice(2), { out: (l) => console.log(l), err: (l) => console.error(l) }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`ds-config: ${(err as Error)?.stack ?? String(err)}`);
      process.exitCode = 1;
    },
  );
}
