// The one way every @ds/* package builds native code.
//
// A package describes its addons in `native/addon.json`:
//   {
//     "cpu":  { "sources": ["native/binding.cc", "native/kernels/*.cc"], "include": ["native/include"],
//               (an include of the form "pkg:@scope/name/sub/dir" is that directory of a dependency,
//               found through node_modules: how one package compiles against another's headers)
//               "defines": [], "cflags": [], "libs": ["-ldl"] },
//     "cuda": { "sources": ["native/cuda/*.cu", "native/cuda/*.cc"], "arch": ["80", "90"], "libs": [] }
//   }
// and gets
//   prebuilds/linux-x64/node.napi.node        the cpu binary (what node-gyp-build loads), and
//   prebuilds/linux-x64-cuda/node.napi.node   the cuda binary, built only where nvcc is found.
//
// Why not binding.gyp + node-gyp: node-gyp fetches Node's headers from the network on a machine that
// lacks them, and has no good story for nvcc. Node-API is ABI-stable, so the headers of the
// `node-api-headers` package plus header-only `node-addon-api` are all a binary needs; we call the
// compilers directly. The output layout and names are prebuildify's, so node-gyp-build loads them.
//
// The cpu binary is compiled for baseline x86-64; kernels pick AVX2/AVX-512/AMX paths at run time
// with per-function `__attribute__((target(...)))`, never with global -m flags.
//
// Builds are incremental: each object file is named by a hash of its source, every header under
// native/ and the include directories, the compiler and the flags, so an unchanged tree compiles and
// links nothing.
import { createHash } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';

const require = createRequire(import.meta.url);

export class NativeBuildError extends Error {
  constructor(message) {
    super(message);
    this.name = 'NativeBuildError';
  }
}

/** Expands `dir/*.ext` and `dir/**\/*.ext` patterns relative to `base` (Node 20 has no fs.glob). */
export function expandSources(base, patterns) {
  const out = [];
  for (const pattern of patterns) {
    if (!pattern.includes('*')) {
      const file = resolve(base, pattern);
      if (!existsSync(file)) throw new NativeBuildError(`source '${pattern}' listed in native/addon.json does not exist`);
      out.push(file);
      continue;
    }
    const recursive = pattern.includes('/**/');
    const [dirPart, filePart] = recursive ? pattern.split('/**/') : [dirname(pattern), pattern.slice(pattern.lastIndexOf('/') + 1)];
    const re = new RegExp('^' + filePart.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*') + '$');
    const root = resolve(base, dirPart);
    if (!existsSync(root)) continue;
    const walk = (dir) => {
      for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) {
          if (recursive) walk(full);
        } else if (re.test(entry.name)) out.push(full);
      }
    };
    walk(root);
  }
  return [...new Set(out)];
}

/**
 * An addon.json include directory: relative to the package, or `pkg:<package>/<subdir>` for a
 * directory of a dependency, found by walking up node_modules from the package (no `exports` lookup,
 * so a package need not export its headers).
 */
export function resolveInclude(packageDir, entry) {
  if (!entry.startsWith('pkg:')) return resolve(packageDir, entry);
  const spec = entry.slice(4);
  const parts = spec.split('/');
  const nameLength = spec.startsWith('@') ? 2 : 1;
  const name = parts.slice(0, nameLength).join('/');
  const sub = parts.slice(nameLength).join('/');
  if (!name || (spec.startsWith('@') && parts.length < 2)) throw new NativeBuildError(`include '${entry}': expected pkg:<package>/<subdir>, e.g. pkg:@ds/tensor/native/include`);
  for (let dir = packageDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) {
      const full = join(candidate, sub);
      if (!existsSync(full)) throw new NativeBuildError(`include '${entry}': ${name} has no ${sub || 'directory'} (${full})`);
      return full;
    }
    if (dirname(dir) === dir) break;
  }
  throw new NativeBuildError(`include '${entry}': package ${name} is not installed below ${packageDir}; add it to the package's dependencies`);
}

function listHeaders(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/\.(h|hh|hpp|cuh|inc)$/.test(entry.name)) out.push(full);
    }
  };
  walk(dir);
  return out;
}

function hashOf(...parts) {
  const h = createHash('sha256');
  for (const p of parts) h.update(typeof p === 'string' ? p : p).update('\0');
  return h.digest('hex').slice(0, 16);
}

/** Finds nvcc: $NVCC, else PATH, else /usr/local/cuda*; null when there is none. */
export function findNvcc() {
  // An explicit NVCC wins, also when it names nothing (NVCC=none turns the cuda build off).
  const fromEnv = process.env.NVCC;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'nvcc'))) return join(dir, 'nvcc');
  }
  for (const dir of ['/usr/local/cuda/bin', ...listCudaDirs()]) {
    if (existsSync(join(dir, 'nvcc'))) return join(dir, 'nvcc');
  }
  return null;
}

function listCudaDirs() {
  try {
    return readdirSync('/usr/local').filter((d) => d.startsWith('cuda-')).map((d) => `/usr/local/${d}/bin`);
  } catch {
    return [];
  }
}

function toolVersion(tool) {
  const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
  if (r.error) throw new NativeBuildError(`cannot run '${tool}': ${r.error.message}. Install a C++17 compiler (g++ >= 10) or set CXX.`);
  return (r.stdout || r.stderr).split('\n')[0];
}

function run(cmd, args, cwd, verbose) {
  if (verbose) console.log([cmd, ...args].join(' '));
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'inherit', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', (err) => reject(new NativeBuildError(`cannot run '${cmd}': ${err.message}`)));
    child.on('close', (code) => {
      if (code === 0) {
        if (stderr.trim()) process.stderr.write(stderr);
        resolvePromise();
      } else reject(new NativeBuildError(`'${cmd} ${args.join(' ')}' failed with exit code ${code}:\n${stderr}`));
    });
  });
}

async function runPool(jobs, limit) {
  const queue = [...jobs];
  const workers = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    while (queue.length) await queue.shift()();
  });
  await Promise.all(workers);
}

const napiInclude = () => dirname(require.resolve('node-api-headers/include/node_api.h'));
const addonApiInclude = () => dirname(require.resolve('node-addon-api/napi.h'));

function baseFlags(debug) {
  return [
    debug ? '-O0' : '-O3',
    ...(debug ? ['-g'] : []),
    '-std=c++17',
    '-fPIC',
    '-march=x86-64',
    '-mtune=generic',
    '-fvisibility=hidden',
    '-fno-math-errno',
    '-pthread',
    '-Wall',
    '-Wno-unused-parameter',
    '-DNAPI_VERSION=8',
    '-DNAPI_CPP_EXCEPTIONS',
    '-DNODE_ADDON_API_DISABLE_DEPRECATED',
  ];
}

async function buildTarget({ packageDir, target, spec, verbose, headersHash }) {
  const debug = process.env.DS_NATIVE_DEBUG === '1';
  const isCuda = target === 'cuda';
  const cxx = process.env.CXX || 'g++';
  const nvcc = isCuda ? findNvcc() : null;
  const includes = [napiInclude(), addonApiInclude(), ...(spec.include ?? []).map((p) => resolveInclude(packageDir, p))];
  const defines = (spec.defines ?? []).map((d) => `-D${d}`);
  const cxxFlags = [...baseFlags(debug), ...defines, ...(spec.cflags ?? []), ...includes.map((i) => `-I${i}`)];
  const arch = spec.arch ?? ['80', '90'];
  const nvccFlags = [
    debug ? '-O0' : '-O3',
    '-std=c++17',
    '-Xcompiler',
    '-fPIC,-fvisibility=hidden',
    ...arch.flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]),
    ...defines,
    ...(spec.nvccflags ?? []),
    ...includes.map((i) => `-I${i}`),
  ];
  const compilerId = toolVersion(cxx) + (nvcc ? toolVersion(nvcc) : '');
  const sources = expandSources(packageDir, spec.sources ?? []);
  if (sources.length === 0) throw new NativeBuildError(`native/addon.json '${target}' lists no sources that exist`);
  const objDir = join(packageDir, 'build', 'native', target);
  mkdirSync(objDir, { recursive: true });

  const objects = [];
  const jobs = [];
  for (const src of sources) {
    const isCu = src.endsWith('.cu');
    const flags = isCu ? nvccFlags : cxxFlags;
    const h = hashOf(readFileSync(src), headersHash, compilerId, flags.join(' '));
    const obj = join(objDir, `${relative(packageDir, src).split(sep).join('_')}-${h}.o`);
    objects.push(obj);
    if (existsSync(obj)) continue;
    jobs.push(async () => {
      const tmp = `${obj}.tmp`;
      await run(isCu ? nvcc : cxx, [...flags, '-c', src, '-o', tmp], packageDir, verbose);
      renameSync(tmp, obj);
    });
  }
  const parallel = Number(process.env.DS_BUILD_JOBS) || availableParallelism();
  await runPool(jobs, parallel);

  const outDir = join(packageDir, 'prebuilds', isCuda ? 'linux-x64-cuda' : 'linux-x64');
  const output = join(outDir, 'node.napi.node');
  const linkArgs = isCuda
    ? ['-shared', ...arch.flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]), '-Xcompiler', '-static-libstdc++,-static-libgcc', ...objects, ...(spec.libs ?? []), '-o', `${output}.tmp`]
    : ['-shared', '-pthread', '-static-libstdc++', '-static-libgcc', ...(debug ? [] : ['-s']), ...objects, ...(spec.libs ?? []), '-o', `${output}.tmp`];
  // The stamp holds the link inputs and the size and mtime of the binary they made, so a binary
  // replaced by hand (a copy kept for profiling, say) is relinked rather than taken as current.
  const stamp = join(objDir, 'link.stamp');
  const linkKey = hashOf(objects.join('\n'), linkArgs.join(' '));
  const stampOf = () => {
    const st = statSync(output);
    return `${linkKey} ${st.size} ${st.mtimeMs}`;
  };
  if (jobs.length === 0 && existsSync(output) && existsSync(stamp) && readFileSync(stamp, 'utf8') === stampOf()) {
    return { target, status: 'up to date', output: relative(packageDir, output) };
  }
  mkdirSync(outDir, { recursive: true });
  await run(isCuda ? nvcc : cxx, linkArgs, packageDir, verbose);
  renameSync(`${output}.tmp`, output);
  writeFileSync(stamp, stampOf());
  return { target, status: `built (${jobs.length}/${sources.length} compiled)`, output: relative(packageDir, output) };
}

/**
 * Builds every target in `<packageDir>/native/addon.json`.
 * @param {{packageDir?: string, cuda?: 'auto'|'on'|'off', verbose?: boolean}} opt
 */
export async function buildPackage(opt = {}) {
  const packageDir = resolve(opt.packageDir ?? process.cwd());
  const cuda = opt.cuda ?? process.env.DS_BUILD_CUDA ?? 'auto';
  const configPath = join(packageDir, 'native', 'addon.json');
  if (!existsSync(configPath)) throw new NativeBuildError(`${configPath} not found: a native package describes its addon there`);
  let config;
  try {
    config = JSON.parse(readFileSync(configPath, 'utf8'));
  } catch (err) {
    throw new NativeBuildError(`${configPath} is not valid JSON: ${err.message}`);
  }
  for (const key of Object.keys(config)) {
    if (key !== 'cpu' && key !== 'cuda' && !key.startsWith('//')) {
      throw new NativeBuildError(`${configPath}: unknown target '${key}' (expected 'cpu' or 'cuda')`);
    }
  }
  // Every header the build can see: under native/ and under each include directory (a dependency's
  // headers too, so that changing them rebuilds this package's objects).
  const headerDirs = [join(packageDir, 'native')];
  for (const spec of [config.cpu, config.cuda]) for (const inc of spec?.include ?? []) headerDirs.push(resolveInclude(packageDir, inc));
  const headerFiles = [...new Set(headerDirs.flatMap((d) => listHeaders(d)))];
  const headersHash = hashOf(...headerFiles.map((f) => readFileSync(f)));
  const results = [];
  if (config.cpu) results.push(await buildTarget({ packageDir, target: 'cpu', spec: config.cpu, verbose: opt.verbose, headersHash }));
  if (config.cuda) {
    if (cuda === 'off') results.push({ target: 'cuda', status: 'skipped', reason: 'cuda build turned off' });
    else if (!findNvcc()) {
      if (cuda === 'on') throw new NativeBuildError('the cuda build was required (--cuda on / DS_BUILD_CUDA=on) but nvcc was not found on PATH or in /usr/local/cuda*');
      results.push({ target: 'cuda', status: 'skipped', reason: 'nvcc not found' });
    } else results.push(await buildTarget({ packageDir, target: 'cuda', spec: config.cuda, verbose: opt.verbose, headersHash }));
  }
  return results;
}
