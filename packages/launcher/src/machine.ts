// Facts about this machine and its files that the launcher needs: GPU and NUMA counts, cores,
// tools on PATH, the TypeScript loader, and how to start the user's script.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { delimiter, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DSLaunchError } from './errors.js';
import type { Env, ResolvedScript } from './rank-env.js';

/**
 * NVIDIA GPUs on this host (0 where there is no driver). Cheap, no nvidia-smi: the driver's
 * /proc/driver/nvidia/gpus entries, else the /dev/nvidiaN device nodes (containers often have
 * the nodes without the /proc entries).
 */
export function localGpuCount(): number {
  try {
    const n = readdirSync('/proc/driver/nvidia/gpus').length;
    if (n > 0) return n;
  } catch {
    // no driver entries; look for device nodes
  }
  try {
    return readdirSync('/dev').filter((f) => /^nvidia\d+$/.test(f)).length;
  } catch {
    return 0;
  }
}

/** NUMA nodes (at least 1); DeepSpeed's cpu accelerator starts one rank per NUMA node by default. */
export function numaNodeCount(): number {
  try {
    return Math.max(1, readdirSync('/sys/devices/system/node').filter((n) => /^node\d+$/.test(n)).length);
  } catch {
    return 1;
  }
}

export function cpuCores(): number {
  return availableParallelism();
}

/** Physical cores (one per core id per socket), which DeepSpeed shares out when binding. */
export function physicalCoreCount(): number {
  try {
    const seen = new Set<string>();
    for (const block of readFileSync('/proc/cpuinfo', 'utf8').split('\n\n')) {
      const phys = /physical id\s*:\s*(\d+)/.exec(block)?.[1];
      const core = /core id\s*:\s*(\d+)/.exec(block)?.[1];
      if (phys !== undefined && core !== undefined) seen.add(`${phys}:${core}`);
    }
    return seen.size > 0 ? seen.size : availableParallelism();
  } catch {
    return availableParallelism();
  }
}

/** The absolute path of an executable on PATH, or null. */
export function which(name: string, env: Env): string | null {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** The tsx loader (a dependency of this package) as a URL for `node --import`. */
export function tsLoaderUrl(): string {
  // createRequire rather than import.meta.resolve, which test runners such as vitest do not provide.
  return pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
}

const TS_EXT = new Set(['.ts', '.mts', '.cts', '.tsx']);

function kindOf(path: string): ResolvedScript['kind'] {
  return TS_EXT.has(extname(path)) ? 'ts' : 'node';
}

/** Finds `<cwd or a parent>/node_modules/<name>/package.json`. */
function findPackageJson(name: string, cwd: string): string | null {
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name, 'package.json');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return null;
  }
}

/**
 * `--module` support: `pkg` or `pkg:bin` names an installed package; its bin is run with node
 * (through tsx when the bin is TypeScript). A package with one bin needs no `:bin`.
 */
export function resolvePackageBin(spec: string, cwd: string): ResolvedScript {
  const colon = spec.lastIndexOf(':');
  const name = colon > 0 ? spec.slice(0, colon) : spec;
  const wanted = colon > 0 ? spec.slice(colon + 1) : undefined;
  const pkgPath = findPackageJson(name, cwd);
  if (!pkgPath) {
    throw new DSLaunchError(`--module '${spec}': package '${name}' is not installed in ${cwd} or a parent node_modules.`);
  }
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { name?: string; bin?: string | Record<string, string> };
  const bins: Record<string, string> =
    typeof pkg.bin === 'string' ? { [name.replace(/^@[^/]+\//, '')]: pkg.bin } : { ...(pkg.bin ?? {}) };
  const names = Object.keys(bins);
  if (names.length === 0) throw new DSLaunchError(`--module '${spec}': package '${name}' declares no bin in ${pkgPath}.`);
  const pick = wanted ?? (names.length === 1 ? names[0] : name.replace(/^@[^/]+\//, ''));
  const rel = pick === undefined ? undefined : bins[pick];
  if (rel === undefined) {
    throw new DSLaunchError(
      `--module '${spec}': package '${name}' has no bin '${pick}'; its bins are ${names.join(', ')}. Write '${name}:<bin>'.`,
    );
  }
  const path = resolve(dirname(pkgPath), rel);
  return { kind: kindOf(path), path };
}

/** How to start the user's script on this node. Checks that it exists, so a typo fails before any rank starts. */
export function resolveScript(script: string, opts: { module: boolean; noPython: boolean; cwd: string; env: Env }): ResolvedScript {
  if (opts.module) return resolvePackageBin(script, opts.cwd);
  if (opts.noPython) {
    const local = isAbsolute(script) || script.includes('/') ? resolve(opts.cwd, script) : which(script, opts.env);
    if (!local || !existsSync(local)) {
      throw new DSLaunchError(`--no_python: executable '${script}' not found (cwd ${opts.cwd}, and not on PATH).`);
    }
    return { kind: 'exec', path: local };
  }
  const path = resolve(opts.cwd, script);
  if (!existsSync(path)) {
    throw new DSLaunchError(
      `Script '${script}' not found (looked for ${path}). Pass a .ts/.js file, or --module <package> to run a package's bin.`,
    );
  }
  return { kind: kindOf(path), path };
}

/**
 * Preloaded into every node rank: watches fd 3, a pipe whose other end the launcher (or node
 * agent) holds. If that end closes while the rank runs, the launcher died without cleaning up (for
 * example it was SIGKILLed), so the rank kills its own process group rather than live on as an orphan.
 */
const WATCHDOG_SOURCE = [
  "import net from 'node:net';",
  "if (process.env.DS_LAUNCH_WATCHDOG_FD === '3') {",
  "  delete process.env.DS_LAUNCH_WATCHDOG_FD;",
  '  const s = new net.Socket({ fd: 3, readable: true, writable: false });',
  "  s.on('error', () => {});",
  "  s.on('close', () => { try { process.kill(-process.pid, 'SIGKILL'); } catch {} process.exit(137); });",
  '  s.resume();',
  '  s.unref();',
  '}',
].join('\n');

export const WATCHDOG_URL = `data:text/javascript,${encodeURIComponent(WATCHDOG_SOURCE)}`;
export const WATCHDOG_ENV = 'DS_LAUNCH_WATCHDOG_FD';

/** This package's root directory (the folder of its package.json), from wherever this module runs. */
export function packageRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === '@ds/launcher') return dir;
    if (dirname(dir) === dir) throw new DSLaunchError(`@ds/launcher: cannot find its package.json above ${fileURLToPath(import.meta.url)}.`);
  }
}

/** The command that starts the node agent: the built dist/bin/agent.js, or the TypeScript source via tsx. */
export function agentCommand(nodePath: string): string[] {
  const root = packageRoot();
  if (fileURLToPath(import.meta.url).endsWith('.ts')) return [nodePath, '--import', tsLoaderUrl(), join(root, 'src/bin/agent.ts')];
  return [nodePath, join(root, 'dist/bin/agent.js')];
}
