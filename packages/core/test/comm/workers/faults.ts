// Failure injection. FAULT selects what rank 1 does wrong; every surviving rank prints one line
// `RESULT {json}` describing how its op ended, then exits without the (collective) teardown.
import { isDSError } from '@ds/tensor';

import { initDistributed, type CommBuffer } from '../../../src/comm/index.js';

const fault = process.env.FAULT ?? '';
const timeoutMs = Number(process.env.OP_TIMEOUT_MS ?? 20_000);
const d = await initDistributed();
const g = d.world;
const f32 = (n: number): CommBuffer => ({ dtype: 'f32', array: new Float32Array(n).fill(1) });
const bad = d.rank === 1;

function report(result: object): never {
  console.log(`RESULT ${JSON.stringify({ rank: d.rank, ...result })}`);
  process.exit(0);
}

async function attempt(run: () => PromiseLike<void>): Promise<never> {
  const t0 = Date.now();
  try {
    await run();
    report({ outcome: 'ok', ms: Date.now() - t0 });
  } catch (err) {
    const e = err as Error & { code?: string };
    // The group must refuse further work after a failure, at once.
    const t1 = Date.now();
    let next = '';
    try {
      await g.barrier({ timeoutMs: 5000 });
      next = 'ok';
    } catch (err2) {
      next = (err2 as Error).message;
    }
    report({ outcome: 'error', name: e.name, code: e.code, ds: isDSError(e), message: e.message, ms: t1 - t0, next, nextMs: Date.now() - t1 });
  }
}

await g.barrier();
const big = f32(1 << 22); // 16 MiB: long enough to be caught in the middle
switch (fault) {
  case 'exit':
  case 'kill':
    if (bad) {
      void g.allReduce(big);
      setTimeout(() => (fault === 'exit' ? process.exit(7) : process.kill(process.pid, 'SIGKILL')), 2);
      await new Promise(() => {});
    }
    await attempt(async () => {
      for (let i = 0; i < 50; i++) await g.allReduce(big, { timeoutMs });
    });
    break;
  case 'hang':
    if (bad) {
      await new Promise((r) => setTimeout(r, Number(process.env.HANG_MS ?? 4000)));
      process.exit(0);
    }
    await attempt(() => g.allReduce(f32(100), { timeoutMs }));
    break;
  case 'size':
    await attempt(() => g.allReduce(f32(bad ? 12 : 10), { timeoutMs }));
    break;
  case 'dtype':
    await attempt(() => g.allReduce(bad ? { dtype: 'bf16', array: new Uint16Array(10) } : f32(10), { timeoutMs }));
    break;
  case 'op':
    await attempt(() => (bad ? g.broadcast(f32(10), { root: 0, timeoutMs }) : g.allReduce(f32(10), { timeoutMs })));
    break;
  case 'p2p':
  case 'p2p-blocking':
    // p2p-blocking: rank 1 receives on its own thread (RecvOptions.blocking), rank 0's send is eager.
    if (d.rank === 0) await attempt(() => g.send(f32(10), { dst: 1, timeoutMs }));
    else if (d.rank === 1) await attempt(() => g.recv(f32(12), { src: 0, timeoutMs, blocking: fault === 'p2p-blocking' }));
    report({ outcome: 'idle' });
    break;
  case 'p2p-blocking-hang':
    // Rank 1 waits, blocking, for a message rank 0 never sends: the wait ends at the op timeout.
    if (d.rank === 1) await attempt(() => g.recv(f32(12), { src: 0, timeoutMs, blocking: true }));
    await new Promise((r) => setTimeout(r, timeoutMs + 2000));
    report({ outcome: 'idle' });
    break;
  default:
    throw new Error(`unknown FAULT '${fault}'`);
}
