// tensorboard monitor: writes TensorBoard event files (events.out.tfevents.<time>.<host>) with scalar
// summaries, readable by TensorBoard and tensorboard's EventAccumulator without TensorFlow.
//
// Writing follows PyTorch's SummaryWriter, which DeepSpeed's monitor uses: events queue in memory
// and reach the file when max_queue (10) are queued, every flush_secs (120 s, with an fsync), at
// close() (fsync) and when the process exits; nothing is fsynced per step.
//
// An event file is a sequence of TFRecords: u64 length, u32 masked CRC-32C of the length bytes, the
// payload (a serialized tensorflow.Event protobuf), u32 masked CRC-32C of the payload. The first
// event carries file_version "brain.Event:2"; each scalar is Event{wall_time, step,
// summary{value{tag, simple_value}}}. We encode the few protobuf fields we need by hand.
import { closeSync, mkdirSync, openSync, writeSync, fsyncSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

import { DSError } from '@ds/tensor';

import type { Monitor, MonitorEvent, MonitorOutput } from './types.js';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), as TFRecord uses. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function maskedCrc(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

const key = (field: number, wire: number) => varint((field << 3) | wire);

function lengthDelimited(field: number, payload: Uint8Array): number[] {
  return [...key(field, 2), ...varint(payload.length), ...payload];
}

/** Serialises tensorflow.Event with wall_time (1), step (2) and either file_version (3) or a scalar summary (5). */
export function encodeEvent(wallTime: number, step: number, content: { fileVersion: string } | { tag: string; value: number }): Uint8Array {
  const f64 = new Uint8Array(new Float64Array([wallTime]).buffer);
  const out: number[] = [...key(1, 1), ...f64, ...key(2, 0), ...varint(Math.max(0, Math.trunc(step)))];
  if ('fileVersion' in content) {
    out.push(...lengthDelimited(3, Buffer.from(content.fileVersion)));
  } else {
    const f32 = new Uint8Array(new Float32Array([content.value]).buffer);
    const value = [...lengthDelimited(1, Buffer.from(content.tag)), ...key(2, 5), ...f32];
    const summary = lengthDelimited(1, Uint8Array.from(value));
    out.push(...lengthDelimited(5, Uint8Array.from(summary)));
  }
  return Uint8Array.from(out);
}

export function encodeRecord(payload: Uint8Array): Uint8Array {
  const rec = new Uint8Array(12 + payload.length + 4);
  const dv = new DataView(rec.buffer);
  dv.setBigUint64(0, BigInt(payload.length), true);
  dv.setUint32(8, maskedCrc(rec.subarray(0, 8)), true);
  rec.set(payload, 12);
  dv.setUint32(12 + payload.length, maskedCrc(payload), true);
  return rec;
}

export interface TensorBoardOptions {
  /** Seconds between timed flushes (each with an fsync); SummaryWriter's flush_secs, 120. */
  flushSecs?: number;
  /** Queued events that trigger a write to the file; SummaryWriter's max_queue, 10. */
  maxQueue?: number;
  /** Wall-clock seconds for the events (tests pass a fixed clock). */
  now?: () => number;
}

export class TensorBoardMonitor implements Monitor {
  readonly file: string;
  private fd: number | null;
  private queue: Uint8Array[] = [];
  private readonly maxQueue: number;
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;
  /** A script may end without engine.destroy(): what is queued still reaches the file. */
  private readonly atExit = (): void => this.flush(false);

  constructor(out: MonitorOutput, opts: TensorBoardOptions = {}) {
    const dir = join(out.outputPath, out.jobName);
    mkdirSync(dir, { recursive: true });
    this.now = opts.now ?? (() => Date.now() / 1000);
    this.maxQueue = opts.maxQueue ?? 10;
    this.file = join(dir, `events.out.tfevents.${Math.floor(this.now())}.${hostname()}.${process.pid}`);
    this.fd = openSync(this.file, 'w');
    this.enqueue(encodeEvent(this.now(), 0, { fileVersion: 'brain.Event:2' }));
    this.flush(false);
    this.timer = setInterval(() => this.flush(true), 1000 * (opts.flushSecs ?? 120));
    this.timer.unref();
    process.on('exit', this.atExit);
  }

  private enqueue(payload: Uint8Array): void {
    if (this.fd === null) throw new DSError(`tensorboard monitor: ${this.file} is already closed; write events before close() (engine.destroy() closes the monitors)`, { code: 'DS_MONITOR_CLOSED' });
    this.queue.push(encodeRecord(payload));
  }

  writeEvents(events: readonly MonitorEvent[]): void {
    for (const [tag, value, step] of events) this.enqueue(encodeEvent(this.now(), step, { tag, value }));
    if (this.queue.length >= this.maxQueue) this.flush(false);
  }

  /** Writes the queued events to the file, and fsyncs it when `sync`. */
  flush(sync = true): void {
    if (this.fd === null) return;
    if (this.queue.length > 0) {
      writeSync(this.fd, Buffer.concat(this.queue.splice(0)));
    }
    if (sync) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd === null) return;
    clearInterval(this.timer);
    process.off('exit', this.atExit);
    this.flush(true);
    closeSync(this.fd);
    this.fd = null;
  }
}
