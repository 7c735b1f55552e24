#!/usr/bin/env node
// ds-report: what this machine offers the TypeScript DeepSpeed. Versions (node, @ds packages), the
// CPU ISA the kernels found, threads, the comm backends and plugins installed, and whether the CUDA
// and NCCL libraries that the cuda paths dlopen can be found (LD_LIBRARY_PATH, /usr/local/cuda*/lib64,
// `ldconfig -p`, Python's nvidia-* wheels). It only reports; it never fails because something is missing.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { cudaStatus, loadCpuAddon, nvidiaLibraryDirs, readTensorEnv, type CudaStatus } from '@ds/tensor';

import { isMainModule } from '../main-module.js';
import { KNOWN_PLUGINS } from '../plugin/catalogue.js';

export const CUDA_LIBRARIES = ['libcudart', 'libcublas', 'libcublasLt', 'libnccl'] as const;

export interface LibrarySearch {
  /** Directories to list, in order. */
  dirs: readonly string[];
  /** The text of `ldconfig -p`, when available. */
  ldconfig?: string;
}

/** For each library, the first file found (`libX.so` or `libX.so.N...`), or null. */
export function findLibraries(search: LibrarySearch, names: readonly string[] = CUDA_LIBRARIES): Record<string, string | null> {
  const found: Record<string, string | null> = {};
  const matches = (file: string, name: string) => file === `${name}.so` || file.startsWith(`${name}.so.`);
  for (const name of names) {
    found[name] = null;
    for (const dir of search.dirs) {
      let files: string[];
      try {
        files = readdirSync(dir);
      } catch {
        continue;
      }
      const hit = files.filter((f) => matches(f, name)).sort()[0];
      if (hit) {
        found[name] = join(dir, hit);
        break;
      }
    }
    if (found[name] === null && search.ldconfig) {
      for (const line of search.ldconfig.split('\n')) {
        const m = /^\s*(\S+)\s.*=>\s*(\S+)\s*$/.exec(line);
        if (m && matches(m[1]!, name)) {
          found[name] = m[2]!;
          break;
        }
      }
    }
  }
  return found;
}

function ldconfigOutput(): string | undefined {
  for (const cmd of ['ldconfig', '/sbin/ldconfig']) {
    try {
      return execFileSync(cmd, ['-p'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      // try the next location
    }
  }
  return undefined;
}

function packageVersion(pkg: string): string | null {
  for (const base of [join(process.cwd(), 'package.json'), import.meta.url]) {
    try {
      const path = createRequire(base).resolve(`${pkg}/package.json`);
      return (JSON.parse(readFileSync(path, 'utf8')) as { version?: string }).version ?? '?';
    } catch {
      // not resolvable from this base
    }
  }
  return null;
}

function ownVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const m = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
      if (m.name === '@ds/core') return m.version ?? '?';
    }
    dir = dirname(dir);
  }
  return '?';
}

export interface Report {
  versions: Record<string, string | null>;
  cpu: { avx2: boolean; avx512f: boolean; avx512bf16: boolean; amx: boolean; isa: string } | { error: string };
  threads: { cores: number; configured: number | null };
  commBackends: string[];
  plugins: Array<{ package: string; installed: boolean }>;
  /** The cuda device: which binary loaded (or why none could), the GPU and cuBLASLt it found. */
  cuda: CudaStatus | { available: false; binary: null; reason: string };
  libraries: Record<string, string | null>;
}

export function collectReport(env: NodeJS.ProcessEnv = process.env): Report {
  const versions: Record<string, string | null> = { node: process.versions.node, '@ds/core': ownVersion(), '@ds/tensor': packageVersion('@ds/tensor') };
  const plugins = KNOWN_PLUGINS.map((p) => {
    const version = packageVersion(p.package);
    versions[p.package] = version;
    return { package: p.package, installed: version !== null };
  });
  let cpu: Report['cpu'];
  try {
    cpu = loadCpuAddon().cpuInfo();
  } catch (err) {
    cpu = { error: (err as Error)?.message ?? String(err) };
  }
  let configured: number | null = null;
  try {
    configured = readTensorEnv(env).numThreads ?? null;
  } catch {
    configured = null;
  }
  const commBackends = ['cpu', ...KNOWN_PLUGINS.filter((p) => p.commBackends.length > 0 && plugins.find((q) => q.package === p.package)?.installed).flatMap((p) => p.commBackends)];
  const ldconfig = ldconfigOutput();
  // The same directories the cuda binary and @ds/comm-nccl try (one list, in @ds/tensor).
  const libraries = findLibraries({ dirs: nvidiaLibraryDirs(env), ...(ldconfig ? { ldconfig } : {}) });
  let cuda: Report['cuda'];
  try {
    cuda = cudaStatus();
  } catch (err) {
    cuda = { available: false, binary: null, reason: (err as Error)?.message ?? String(err) };
  }
  return { versions, cpu, threads: { cores: availableParallelism(), configured }, commBackends, plugins, cuda, libraries };
}

export function formatReport(r: Report): string {
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const lines = ['ds-report', '', 'versions:'];
  for (const [name, v] of Object.entries(r.versions)) lines.push(`  ${name.padEnd(18)} ${v ?? 'not installed'}`);
  lines.push('', 'cpu:');
  if ('error' in r.cpu) lines.push(`  cpu addon not available: ${r.cpu.error}`);
  else lines.push(`  isa in use         ${r.cpu.isa}`, `  avx2 ${yes(r.cpu.avx2)}, avx512f ${yes(r.cpu.avx512f)}, avx512bf16 ${yes(r.cpu.avx512bf16)}, amx ${yes(r.cpu.amx)}`);
  lines.push(`  threads            ${r.threads.configured ?? `${r.threads.cores} (one per core; DS_NUM_THREADS/OMP_NUM_THREADS not set)`}`);
  lines.push('', `comm backends:       ${r.commBackends.join(', ')}`, '', 'plugins:');
  for (const p of r.plugins) lines.push(`  ${p.package.padEnd(18)} ${p.installed ? 'installed' : 'not installed'}`);
  lines.push('', 'devices:', '  cpu                available', '  sim                available (test device: opaque memory run by the cpu kernels)');
  if (r.cuda.available) lines.push(`  cuda               available: ${'gpu' in r.cuda ? r.cuda.gpu : 'GPU'}, cuBLASLt ${'cublasLt' in r.cuda ? r.cuda.cublasLt : '?'}; binary ${r.cuda.binary}`);
  else lines.push(`  cuda               not available: ${r.cuda.reason}${r.cuda.binary ? ` (binary ${r.cuda.binary})` : ''}`);
  lines.push('', 'cuda libraries:');
  for (const [name, path] of Object.entries(r.libraries)) lines.push(`  ${name.padEnd(18)} ${path ?? 'not found'}`);
  return lines.join('\n');
}

const USAGE = `usage: ds-report [--json]
  prints versions, the CPU ISA in use, threads, comm backends, plugins and CUDA/NCCL libraries found
  --json   the same as one JSON object`;

/** Runs the command: 0, or 2 for a usage error (flags through node:util parseArgs). */
export function main(argv: readonly string[], io: { out: (text: string) => void; err: (text: string) => void }, env: NodeJS.ProcessEnv = process.env): number {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    io.err(`ds-report: ${(err as Error).message.split('. ')[0]}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const report = collectReport(env);
  io.out(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  return 0;
}

// Run only when this file is the program, not when imported (tests import it).
if (isMainModule(import.meta.url)) {
  try {
    process.exitCode = main(process.argv.slice(2), { out: (t) => console.log(t), err: (t) => console.error(t) });
  } catch (err) {
    console.error(`ds-report: ${(err as Error)?.stack ?? String(err)}`);
    process.exitCode = 1;
  }
}
