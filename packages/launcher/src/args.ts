// The `ds` command line: DeepSpeed's runner flags (deepspeed/launcher/runner.py), then the user
// script and its arguments, which are passed through untouched. Flags accept `--flag value` and
// `--flag=value`. DeepSpeed flags we do not provide are rejected by name, never ignored.
import { DSLaunchError, DSLaunchUnsupportedError } from './errors.js';

/**
 * Seconds between SIGTERM and SIGKILL when ranks are stopped (a rank failed, or ds was interrupted):
 * DeepSpeed's launch.py terminates each rank's process tree and waits 30 s (psutil.wait_procs
 * timeout=30) before killing what is left; it has no flag or environment variable for it.
 * --term_grace_s is ours.
 */
export const DEEPSPEED_TERM_GRACE_S = 30;

export type LauncherName = 'ssh' | 'pdsh' | 'slurm' | 'openmpi';
export const LAUNCHERS: readonly LauncherName[] = ['ssh', 'pdsh', 'slurm', 'openmpi'];

export interface DsArgs {
  hostfile: string;
  include: string;
  exclude: string;
  /** -1: every host of the hostfile. */
  numNodes: number;
  /** -1: every slot; on a host without GPUs, the number of cpu ranks. */
  numGpus: number;
  /** '' means: ask the first host (`hostname -I` over ssh), or 127.0.0.1 when local. */
  masterAddr: string;
  masterPort: number;
  launcher: LauncherName;
  /** One string, split like a shell would; ssh options for ssh, pdsh options for pdsh, ... */
  launcherArgs: string;
  /** The user script names a package whose bin is run (`pkg` or `pkg:bin`). */
  module: boolean;
  /** Run the user script as an executable, not with node. */
  noPython: boolean;
  noLocalRank: boolean;
  noSsh: boolean;
  nodeRank: number;
  noSshCheck: boolean;
  sshPort: number | undefined;
  forceMulti: boolean;
  savePid: boolean;
  enableEachRankLog: string | undefined;
  bindCoresToRank: boolean;
  bindCoreList: string | undefined;
  /** Seconds between SIGTERM and SIGKILL when stopping ranks (ours; DeepSpeed waits 30 s). */
  termGraceS: number;
  /** -h/--help was given before the script: print usage, start nothing. */
  help: boolean;
  userScript: string;
  userArgs: string[];
}

export const DEFAULT_ARGS: Omit<DsArgs, 'userScript' | 'userArgs'> = {
  hostfile: '/job/hostfile',
  include: '',
  exclude: '',
  numNodes: -1,
  numGpus: -1,
  masterAddr: '',
  masterPort: 29500,
  launcher: 'ssh',
  launcherArgs: '',
  module: false,
  noPython: false,
  noLocalRank: false,
  noSsh: false,
  nodeRank: -1,
  noSshCheck: false,
  sshPort: undefined,
  forceMulti: false,
  savePid: false,
  enableEachRankLog: undefined,
  bindCoresToRank: false,
  bindCoreList: undefined,
  termGraceS: DEEPSPEED_TERM_GRACE_S,
  help: false,
};

type Kind = 'bool' | 'string' | 'int' | 'number';
interface FlagSpec {
  names: string[];
  key: keyof DsArgs;
  kind: Kind;
  help: string;
}

const FLAGS: FlagSpec[] = [
  { names: ['-H', '--hostfile'], key: 'hostfile', kind: 'string', help: 'hostfile path (default /job/hostfile)' },
  { names: ['-i', '--include'], key: 'include', kind: 'string', help: "resources to use, e.g. 'host1:0,1@host2'" },
  { names: ['-e', '--exclude'], key: 'exclude', kind: 'string', help: "resources to leave out, e.g. 'host1:0'" },
  { names: ['--num_nodes'], key: 'numNodes', kind: 'int', help: 'use the first N hosts of the hostfile' },
  { names: ['--num_gpus', '--num_accelerators'], key: 'numGpus', kind: 'int', help: 'ranks per node (GPUs, or cpu ranks)' },
  { names: ['--master_addr'], key: 'masterAddr', kind: 'string', help: 'rendezvous address (default: first host)' },
  { names: ['--master_port'], key: 'masterPort', kind: 'int', help: 'rendezvous port (default 29500)' },
  { names: ['--launcher'], key: 'launcher', kind: 'string', help: 'ssh (default) | pdsh | slurm | openmpi' },
  { names: ['--launcher_args'], key: 'launcherArgs', kind: 'string', help: 'extra arguments for the launcher, one quoted string' },
  { names: ['--module'], key: 'module', kind: 'bool', help: "the script is a package name: run its bin ('pkg' or 'pkg:bin')" },
  { names: ['--no_python'], key: 'noPython', kind: 'bool', help: 'run the script as an executable, not with node' },
  { names: ['--no_local_rank'], key: 'noLocalRank', kind: 'bool', help: 'do not pass --local_rank=N to the script' },
  { names: ['--no_ssh'], key: 'noSsh', kind: 'bool', help: 'start only this node (needs --node_rank)' },
  { names: ['--node_rank'], key: 'nodeRank', kind: 'int', help: 'this node\'s index with --no_ssh' },
  { names: ['--no_ssh_check'], key: 'noSshCheck', kind: 'bool', help: 'skip the ssh reachability pre-check' },
  { names: ['--ssh_port'], key: 'sshPort', kind: 'int', help: 'ssh port of every node' },
  { names: ['--force_multi'], key: 'forceMulti', kind: 'bool', help: 'use the multi-node path even for one node' },
  { names: ['--save_pid'], key: 'savePid', kind: 'bool', help: 'write /tmp/<ds pid>.deepspeed with the agent pid' },
  { names: ['--enable_each_rank_log'], key: 'enableEachRankLog', kind: 'string', help: 'write each rank\'s output to DIR/<time>_rank<R>.log' },
  { names: ['--bind_cores_to_rank'], key: 'bindCoresToRank', kind: 'bool', help: 'pin each rank to its share of cores' },
  { names: ['--bind_core_list'], key: 'bindCoreList', kind: 'string', help: "cores to share out, e.g. '0-3,8'" },
  { names: ['--term_grace_s'], key: 'termGraceS', kind: 'number', help: `seconds from SIGTERM to SIGKILL when stopping ranks (default ${DEEPSPEED_TERM_GRACE_S}, as DeepSpeed's launch.py, which has no flag for it)` },
];

const UNSUPPORTED: Record<string, string> = {
  '--elastic_training': 'elastic training is not provided by @ds/launcher; launch a fixed world instead',
  '--min_elastic_nodes': 'elastic training is not provided by @ds/launcher',
  '--max_elastic_nodes': 'elastic training is not provided by @ds/launcher',
  '--autotuning': 'autotuning is not provided by @ds/launcher; set batch sizes in ds_config.json',
  '--venv_script': 'there is no Python venv to source; put environment variables in .deepspeed_env instead',
  '--detect_nvlink_pairs': 'NVLink pair detection is not provided by @ds/launcher',
  '--comment': 'slurm comments are passed with --launcher_args "--comment=..."',
};

export const UNSUPPORTED_LAUNCHERS: Record<string, string> = {
  mpich: 'MPICH', impi: 'Intel MPI', mvapich: 'MVAPICH',
};

export function usage(): string {
  const rows = FLAGS.map((f) => `  ${f.names.join(', ')}${f.kind === 'bool' ? '' : ' <value>'}`.padEnd(40) + f.help);
  rows.push('  -h, --help'.padEnd(40) + 'show this help');
  return ['usage: ds [flags] <script.ts|script.js|package> [script args...]', '', ...rows].join('\n');
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j]! + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = row[j]!;
      row[j] = next;
    }
  }
  return row[b.length]!;
}

function nearestFlag(name: string): string {
  const all = FLAGS.flatMap((f) => f.names).filter((n) => n.startsWith('--'));
  return all.reduce((best, n) => (editDistance(n, name) < editDistance(best, name) ? n : best), all[0]!);
}

function convert(spec: FlagSpec, flag: string, raw: string): string | number {
  if (spec.kind === 'string') return raw;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || (spec.kind === 'int' && !Number.isInteger(n))) {
    if (spec.key === 'numNodes' && raw.includes(':')) {
      throw new DSLaunchUnsupportedError(
        `--num_nodes '${raw}': the MIN:MAX form is only for elastic training, which @ds/launcher does not provide; pass one number.`,
      );
    }
    throw new DSLaunchError(`${flag} expects ${spec.kind === 'int' ? 'an integer' : 'a number'}, got '${raw}'.`);
  }
  return n;
}

/** Parses `ds` arguments (without the leading `node ds`). Throws DSLaunchError on a bad flag. */
export function parseDsArgs(argv: readonly string[]): DsArgs {
  const out: Record<string, unknown> = { ...DEFAULT_ARGS };
  let i = 0;
  for (; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '--') {
      i++;
      break;
    }
    if (!token.startsWith('-') || token === '-') break;
    if (token === '-h' || token === '--help') return { ...DEFAULT_ARGS, help: true, userScript: '', userArgs: [] };
    const eq = token.startsWith('--') ? token.indexOf('=') : -1;
    const flag = eq >= 0 ? token.slice(0, eq) : token;
    if (UNSUPPORTED[flag]) throw new DSLaunchUnsupportedError(`${flag}: ${UNSUPPORTED[flag]}.`);
    const spec = FLAGS.find((f) => f.names.includes(flag));
    if (!spec) {
      throw new DSLaunchError(`Unknown flag '${flag}' before the script. Did you mean ${nearestFlag(flag)}? Run 'ds --help' for the list.`);
    }
    if (spec.kind === 'bool') {
      if (eq >= 0) throw new DSLaunchError(`${flag} takes no value; write it alone.`);
      out[spec.key] = true;
      continue;
    }
    let raw: string | undefined;
    if (eq >= 0) raw = token.slice(eq + 1);
    else raw = argv[++i];
    if (raw === undefined) throw new DSLaunchError(`${flag} needs a value (${spec.help}).`);
    out[spec.key] = convert(spec, flag, raw);
  }
  const userScript = argv[i];
  if (userScript === undefined) {
    throw new DSLaunchError(`No script given. ${usage()}`);
  }
  out.userScript = userScript;
  out.userArgs = argv.slice(i + 1);
  const launcher = String(out.launcher).toLowerCase();
  if (UNSUPPORTED_LAUNCHERS[launcher]) {
    throw new DSLaunchUnsupportedError(
      `--launcher ${launcher}: ${UNSUPPORTED_LAUNCHERS[launcher]} is not supported by @ds/launcher; use ${LAUNCHERS.join(', ')}.`,
    );
  }
  if (!(LAUNCHERS as readonly string[]).includes(launcher)) {
    throw new DSLaunchError(`--launcher '${out.launcher}' is unknown; choose one of ${LAUNCHERS.join(', ')}.`);
  }
  out.launcher = launcher;
  const args = out as unknown as DsArgs;
  if (args.noPython && args.module) {
    throw new DSLaunchError("Don't use both --no_python and --module: a package's bin is always run with node.");
  }
  if (args.termGraceS < 0) throw new DSLaunchError(`--term_grace_s must be >= 0, got ${args.termGraceS}.`);
  return args;
}

/** Splits a string into words the way a POSIX shell does (quotes and backslashes; no expansion). */
export function shellSplit(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1]!)) word += text[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new DSLaunchError(`--launcher_args '${text}' has an unclosed ${quote} quote.`);
  if (inWord) words.push(word);
  return words;
}

/** Quotes one word for a POSIX shell (the remote side of ssh/pdsh). */
export function shellQuote(word: string): string {
  if (/^[\w@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
