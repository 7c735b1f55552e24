import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

import { MonitorMaster, TensorBoardMonitor, crc32c, maskedCrc } from '../../src/monitor/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ds-mon-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Minimal protobuf reader for the test: field number -> list of raw values. */
function readProto(buf: Uint8Array): Map<number, Array<number | bigint | Uint8Array>> {
  const out = new Map<number, Array<number | bigint | Uint8Array>>();
  let i = 0;
  const varint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < buf.length) {
    const k = Number(varint());
    const field = k >> 3;
    const wire = k & 7;
    let val: number | bigint | Uint8Array;
    if (wire === 0) val = varint();
    else if (wire === 1) {
      val = new DataView(buf.buffer, buf.byteOffset + i, 8).getFloat64(0, true);
      i += 8;
    } else if (wire === 5) {
      val = new DataView(buf.buffer, buf.byteOffset + i, 4).getFloat32(0, true);
      i += 4;
    } else if (wire === 2) {
      const n = Number(varint());
      val = buf.subarray(i, i + n);
      i += n;
    } else throw new Error(`wire type ${wire}`);
    if (!out.has(field)) out.set(field, []);
    out.get(field)!.push(val);
  }
  return out;
}

describe('crc32c', () => {
  it('matches the standard check value and TFRecord masking', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    const c = crc32c(Buffer.from('abc'));
    expect(maskedCrc(Buffer.from('abc'))).toBe(((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0);
  });
});

describe('monitors', () => {
  it('a closed TensorBoard monitor refuses events with DS_MONITOR_CLOSED', () => {
    const tb = new TensorBoardMonitor({ outputPath: dir, jobName: 'closed' });
    tb.close();
    expect(() => tb.writeEvents([['Train/Samples/lr', 0.1, 48]])).toThrow(expect.objectContaining({ code: 'DS_MONITOR_CLOSED', message: expect.stringContaining('is already closed') }));
  });

  it('writes csv files per event and a TensorBoard event file with valid records', () => {
    const m = new MonitorMaster(
      {
        csv_monitor: { enabled: true, output_path: dir, job_name: 'run1' },
        tensorboard: { enabled: true, output_path: dir, job_name: 'tb' },
      },
      0,
    );
    m.writeEvents([
      ['Train/Samples/train_loss', 2.5, 16],
      ['Train/Samples/lr', 0.001, 16],
    ]);
    m.writeEvents([['Train/Samples/train_loss', 2.25, 32]]);
    m.close();

    expect(readFileSync(join(dir, 'run1', 'Train_Samples_train_loss.csv'), 'utf8')).toBe('step,train_loss\n16,2.5\n32,2.25\n');
    expect(readFileSync(join(dir, 'run1', 'Train_Samples_lr.csv'), 'utf8')).toBe('step,lr\n16,0.001\n');

    const [file] = readdirSync(join(dir, 'tb'));
    expect(file).toMatch(/^events\.out\.tfevents\.\d+\./);
    const bytes = readFileSync(join(dir, 'tb', file!));
    const events: Array<Map<number, Array<number | bigint | Uint8Array>>> = [];
    let o = 0;
    while (o < bytes.length) {
      const dv = new DataView(bytes.buffer, bytes.byteOffset + o);
      const len = Number(dv.getBigUint64(0, true));
      expect(dv.getUint32(8, true)).toBe(maskedCrc(bytes.subarray(o, o + 8)));
      const payload = bytes.subarray(o + 12, o + 12 + len);
      expect(dv.getUint32(12 + len, true)).toBe(maskedCrc(payload));
      events.push(readProto(payload));
      o += 16 + len;
    }
    expect(events).toHaveLength(4);
    expect(Buffer.from(events[0]!.get(3)![0] as Uint8Array).toString()).toBe('brain.Event:2');
    const scalars = events.slice(1).map((e) => {
      const summary = readProto(e.get(5)![0] as Uint8Array);
      const value = readProto(summary.get(1)![0] as Uint8Array);
      return [Buffer.from(value.get(1)![0] as Uint8Array).toString(), value.get(2)![0], Number(e.get(2)![0])];
    });
    expect(scalars).toEqual([
      ['Train/Samples/train_loss', 2.5, 16],
      ['Train/Samples/lr', Math.fround(0.001), 16],
      ['Train/Samples/train_loss', 2.25, 32],
    ]);
  });

  it('writes nothing on ranks other than 0', () => {
    const m = new MonitorMaster({ csv_monitor: { enabled: true, output_path: dir, job_name: 'rank1' } }, 1);
    expect(m.enabled).toBe(false);
    m.writeEvents([['x', 1, 1]]);
    expect(readdirSync(dir)).not.toContain('rank1');
  });
});

describe('TensorBoard flushing', () => {
  /** Records in a TFRecord file: each is 12 bytes of header, the payload and a 4-byte CRC. */
  function recordCount(file: string): number {
    const buf = readFileSync(file);
    let n = 0;
    for (let i = 0; i < buf.length; n++) i += 16 + Number(buf.readBigUInt64LE(i));
    return n;
  }

  it('queues events, writes them at max_queue, on the flush_secs timer and at close, with no write per step', () => {
    vi.useFakeTimers();
    try {
      const tb = new TensorBoardMonitor({ outputPath: dir, jobName: 'queued' }, { flushSecs: 5, maxQueue: 4 });
      expect(recordCount(tb.file)).toBe(1); // the file_version event
      tb.writeEvents([['Train/Samples/train_loss', 2, 8]]);
      tb.writeEvents([['Train/Samples/train_loss', 1.9, 16]]);
      expect(recordCount(tb.file)).toBe(1);
      vi.advanceTimersByTime(5000);
      expect(recordCount(tb.file)).toBe(3);
      tb.writeEvents([['a', 1, 1], ['b', 2, 1], ['c', 3, 1]]);
      expect(recordCount(tb.file)).toBe(3);
      tb.writeEvents([['d', 4, 1]]); // the fourth queued event writes the queue
      expect(recordCount(tb.file)).toBe(7);
      tb.writeEvents([['e', 5, 2]]);
      const before = statSync(tb.file).size;
      tb.close();
      expect(statSync(tb.file).size).toBeGreaterThan(before);
      expect(recordCount(tb.file)).toBe(8);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a script that exits without close() still leaves its queued events in the file', () => {
    const out = join(dir, 'exit');
    const src = new URL('../../src/monitor/tensorboard.ts', import.meta.url).pathname;
    const code = `import { TensorBoardMonitor } from ${JSON.stringify(src)};
const tb = new TensorBoardMonitor({ outputPath: ${JSON.stringify(out)}, jobName: 'j' });
tb.writeEvents([['Train/Samples/train_loss', 2.5, 16], ['Train/Samples/lr', 0.1, 16]]);
console.log(tb.file);`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', cwd: join(import.meta.dirname, '../..') });
    expect(r.status, r.stderr).toBe(0);
    expect(recordCount(r.stdout.trim())).toBe(3);
  });
});
