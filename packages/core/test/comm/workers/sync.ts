// waitSync()/isCompleted() from code that never yields to the event loop (as autograd hooks run):
// the op must complete and be observable while the JS thread is blocked.
import { initDistributed } from '../../../src/comm/index.js';

const d = await initDistributed();
const g = d.world;
const events: { seq: number; ok: boolean }[] = [];
g.addObserver((e) => events.push({ seq: e.seq, ok: e.ok }));
const buf = { dtype: 'f32' as const, array: new Float32Array(1 << 16).fill(d.rank + 1) };
const w = g.allReduce(buf);
w.waitSync!();
// The observer heard of it at once, without the event loop (a comms logger read inside hooks).
const heardAtOnce = events.length;
if (buf.array[0] !== (g.size * (g.size + 1)) / 2) throw new Error(`waitSync returned before the result landed: ${buf.array[0]}`);
if (!w.isCompleted()) throw new Error('isCompleted() false after waitSync');
// Polling isCompleted() in a busy loop also sees completion without the event loop.
const w2 = g.allGather({ dtype: 'i32', array: new Int32Array(g.size) }, { dtype: 'i32', array: Int32Array.of(d.rank) });
const t0 = Date.now();
while (!w2.isCompleted()) if (Date.now() - t0 > 20_000) throw new Error('isCompleted() never turned true');
// A failing op throws from waitSync: rank 1 asks for a different size.
const bad = g.allReduce({ dtype: 'f32', array: new Float32Array(d.rank === 1 ? 3 : 2) }, { timeoutMs: 10_000 });
try {
  bad.waitSync!();
  console.log('RESULT no error');
} catch (err) {
  console.log(`RESULT ${(err as Error).name}: ${(err as Error).message}`);
}
await bad.wait().catch(() => undefined);
await w;
await new Promise((r) => setTimeout(r, 50));
// Each op once: allReduce (waited synchronously), allGather (polled), the failed allReduce.
console.log(`EVENTS ${JSON.stringify({ heardAtOnce, events })}`);
console.log('done');
process.exit(0);
