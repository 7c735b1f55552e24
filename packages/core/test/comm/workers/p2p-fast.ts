// The point-to-point fast paths of the cpu backend on 2 ranks (native/comm/p2p.cc): a send that fits
// a free chunk half is written from the calling thread (sendEager), and a blocking recv
// (RecvOptions.blocking) runs on the calling thread when its channel's comm thread is idle, else
// queues behind what that thread has. Messages of every size class (empty, one chunk, just over one,
// several) in both directions, sends left in flight several deep, blocking and queued receives
// interleaved: every message must arrive whole and in order. Prints "ok <case>" lines on rank 1.
import type { DType } from '@ds/tensor';

import { initDistributed, type CommBuffer, type Work } from '../../../src/comm/index.js';
import { alloc, expectEqual, input } from './inputs.js';

const d = await initDistributed();
const g = d.world;
const me = d.rank;
const peer = 1 - me;
const log = (s: string): void => void (me === 1 && console.log(`ok ${s}`));
// 256 KiB chunks: 65536 f32 fill one, 65537 need two.
const sizes: [DType, number][] = [['f32', 0], ['f32', 1], ['bf16', 1000], ['f32', 65536], ['f32', 65537], ['i32', 300_001], ['u8', 7], ['f16', 131072]];

for (const [from, to] of [[0, 1], [1, 0]]) {
  const label = `${from}->${to}`;
  let tag = from * 1000;
  if (me === from) {
    // Every send started before any is awaited: the first ones go into the channel from here, the rest queue.
    const works: Work[] = [];
    for (let round = 0; round < 3; round++) for (const [dtype, n] of sizes) works.push(g.send(input(dtype, n, from, ++tag), { dst: to }));
    for (const w of works) await w;
  } else {
    // Alternate: a queued recv left pending, then a blocking one (which must queue behind it), and so on.
    const pending: [Work, CommBuffer, DType, number, number][] = [];
    let k = 0;
    for (let round = 0; round < 3; round++) {
      for (const [dtype, n] of sizes) {
        const buf = alloc(dtype, n);
        const t = ++tag;
        const blocking = k++ % 2 === 1;
        const w = g.recv(buf, { src: from, blocking });
        if (blocking) {
          for (const [pw, pb, pd, pn, pt] of pending.splice(0)) {
            await pw;
            expectEqual(`${label} queued recv ${pd} x${pn}`, pb.array, input(pd, pn, from, pt).array);
          }
          await w;
          expectEqual(`${label} blocking recv ${dtype} x${n}`, buf.array, input(dtype, n, from, t).array);
        } else pending.push([w, buf, dtype, n, t]);
      }
    }
    for (const [pw, pb, pd, pn, pt] of pending) {
      await pw;
      expectEqual(`${label} queued recv ${pd} x${pn}`, pb.array, input(pd, pn, from, pt).array);
    }
  }
  await g.barrier();
  log(`${label} ${3 * sizes.length} messages, sends in flight, blocking and queued receives interleaved`);

  // With nothing queued on the channel, a blocking recv runs here: its Work is over when recv() returns.
  tag += 100;
  if (me === from) await g.send(input('f32', 4096, from, tag), { dst: to });
  else {
    const buf = alloc('f32', 4096);
    const w = g.recv(buf, { src: from, blocking: true });
    if (!w.isCompleted()) throw new Error(`${label}: a blocking recv on an idle channel returned before its message was in`);
    expectEqual(`${label} blocking recv on an idle channel`, buf.array, input('f32', 4096, from, tag).array);
  }
  await g.barrier();
  log(`${label} blocking recv on an idle channel is complete on return`);
}

// Ping-pong with blocking receives on both sides, then a collective: sequence numbers stayed in step.
for (let i = 0; i < 50; i++) {
  const buf = alloc('f32', 1024);
  if ((i % 2) === me) await g.send(input('f32', 1024, me, 5000 + i), { dst: peer });
  else {
    await g.recv(buf, { src: peer, blocking: true });
    expectEqual(`ping-pong ${i}`, buf.array, input('f32', 1024, peer, 5000 + i).array);
  }
}
const sum = { dtype: 'i32' as const, array: Int32Array.of(me + 1) };
await g.allReduce(sum);
if (sum.array[0] !== 3) throw new Error(`allReduce after the ping-pong: ${sum.array[0]}`);
log('ping-pong of 50 with blocking receives, then a collective');
await d.destroy();
