// The GPU check of @ds/tensor's cuda device from the built package alone (plain Node, no TypeScript,
// no vitest): `node scripts/device-check/run.mjs [outDir]` (scripts/device-check.sh says what to
// carry). Each stage runs in its own node process under its own time limit, so a hang or a GPU
// fault in one still leaves the others' results and the summary:
//   machine    nvidia-smi, lscpu, node and torch versions (in this process)
//   probe      probe.mjs: test-loads the cuda binary directly             -> probe.json
//   selfcheck  cudaSelfCheck() from dist: every cuda kernel against its
//              cpu twin, the same cases as test/cuda/kernels.test.ts       -> selfcheck.json
//   bench      cudaBench() from dist, each row written as it is measured  -> results.cuda.json
//   summary    summary.mjs: the short table, printed last
// Without a GPU every stage reports cuda unavailable with the reason, and the run still ends with the table.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const pkg = join(root, 'packages', 'tensor');
const dist = join(pkg, 'dist', 'index.js');
/** Seconds each stage may run: with the machine stage, under 9 minutes in all (a healthy run takes 2 to 5). */
const LIMIT_S = { probe: 45, selfcheck: 150, bench: 300 };

const write = (out, file, value) => writeFileSync(join(out, file), `${JSON.stringify(value, null, 2)}\n`);
const firstLine = (s) => String(s ?? '').trim().split('\n')[0];

function run(cmd, args, timeoutS) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutS * 1000 });
  if (r.error) return `${cmd}: ${r.error.code === 'ENOENT' ? 'not found' : r.error.message}`;
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

function machine() {
  console.log('== machine');
  console.log(run('nvidia-smi', ['--query-gpu=name,memory.total,driver_version,compute_cap', '--format=csv'], 30));
  console.log(run('lscpu', [], 10).split('\n').filter((l) => /^(Model name|CPU\(s\)|Socket)/.test(l)).join('\n'));
  const torch = run('python3', ['-c', 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'], 60).split('\n').pop();
  console.log(`node ${process.version}; ${torch}`);
  console.log(`LD_LIBRARY_PATH=${process.env.LD_LIBRARY_PATH ?? ''}`);
}

async function tensor() {
  if (!existsSync(dist)) throw new Error(`${dist} is missing: build it here first (cd packages/tensor && pnpm run build) and carry packages/tensor/dist`);
  return import(pathToFileURL(dist).href);
}

/** Every cuda kernel against its cpu twin; prints a count, each failure, and the slowest cases. */
async function selfcheck(out) {
  const { cudaSelfCheck } = await tensor();
  let done = 0;
  const r = cudaSelfCheck({ onCase: (c) => {
    done++;
    if (!c.ok) console.log(`FAILED ${c.name} [${c.dtype}]: ${c.message.split('\n').slice(0, 4).join('\n    ')}`);
    else if (done % 50 === 0) console.log(`  ${done} cases run`);
  } });
  write(out, 'selfcheck.json', r);
  if (!r.available) {
    console.log(`cuda unavailable: ${r.reason}`);
    return;
  }
  console.log(r.device);
  console.log(`${r.passed} of ${r.cases.length} cases passed, ${r.failed} failed (${(r.ms / 1000).toFixed(1)} s)`);
}

/** The cuda rows with their PyTorch anchors; results.cuda.json is rewritten after each row. */
async function bench(out) {
  const { cudaBench } = await tensor();
  const rows = [];
  const r = cudaBench({ log: (line) => console.log(line), onRow: (row) => {
    rows.push(row);
    write(out, 'results.cuda.json', rows);
  } });
  if (!r.available) console.log(`cuda unavailable: ${r.reason}`);
  write(out, 'bench-missing.json', r.missing);
}

/** Runs one stage in a child process under its time limit; returns how it ended. */
function stage(name, out) {
  console.log(`== ${name}`);
  const t0 = Date.now();
  const args = name === 'probe' ? [join(here, 'probe.mjs'), pkg] : [fileURLToPath(import.meta.url), '--stage', name, out];
  const r = spawnSync(process.execPath, args, { stdio: name === 'probe' ? ['ignore', 'pipe', 'inherit'] : 'inherit', encoding: 'utf8', timeout: LIMIT_S[name] * 1000, killSignal: 'SIGKILL' });
  if (name === 'probe' && r.stdout) {
    process.stdout.write(r.stdout);
    writeFileSync(join(out, 'probe.json'), r.stdout);
  }
  const s = (Date.now() - t0) / 1000;
  const ended = r.error?.code === 'ETIMEDOUT' ? `stopped at its ${LIMIT_S[name]} s limit` : r.error ? `did not start: ${r.error.message}` : r.signal ? `killed by ${r.signal}` : `exit ${r.status}`;
  if (ended !== 'exit 0') console.log(`${name}: ${ended}`);
  return { stage: name, ended, seconds: Math.round(s * 10) / 10 };
}

async function main() {
  const [, , flag, stageName, stageOut] = process.argv;
  if (flag === '--stage') {
    await { selfcheck, bench }[stageName](stageOut);
    return;
  }
  const out = resolve(flag ?? process.env.DS_CHECK_OUT ?? process.env.OUT ?? join(root, '.device', 'out'));
  mkdirSync(out, { recursive: true });
  machine();
  const stages = ['probe', 'selfcheck', 'bench'].map((name) => stage(name, out));
  write(out, 'stages.json', stages);
  console.log('== summary');
  const s = spawnSync(process.execPath, [join(here, 'summary.mjs'), out], { stdio: 'inherit' });
  if (s.status !== 0) console.log(`summary: ${firstLine(s.error?.message) || `exit ${s.status}`}`);
}

await main();
