// Wire format of the rendezvous store: each message is one frame
//   u32 frameBytes | u32 headerBytes | header (UTF-8 JSON) | blob 0 | blob 1 | ...
// where the header lists the byte length of each binary blob. Requests carry an id that the reply
// echoes, so a client may have several requests in flight (a long `wait` beside a `set`).

export type StoreOp = 'set' | 'get' | 'wait' | 'add' | 'compareSet' | 'delete' | 'check' | 'numKeys';

export interface RequestHeader {
  id: number;
  op: StoreOp;
  keys: string[];
  delta?: number;
  timeoutMs?: number;
  blobs: number[];
}

export interface ReplyHeader {
  id: number;
  ok: boolean;
  /** 'timeout' or 'error' when ok is false. */
  error?: 'timeout' | 'error';
  message?: string;
  value?: number | boolean;
  blobs: number[];
}

export function encodeFrame(header: object & { blobs: number[] }, blobs: readonly Uint8Array[]): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const total = 4 + json.length + blobs.reduce((s, b) => s + b.length, 0);
  const out = Buffer.allocUnsafe(4 + total);
  out.writeUInt32LE(total, 0);
  out.writeUInt32LE(json.length, 4);
  json.copy(out, 8);
  let at = 8 + json.length;
  for (const b of blobs) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/** Accumulates socket data and yields whole frames. */
export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  push(chunk: Buffer): { header: unknown; blobs: Uint8Array[] }[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const frames: { header: unknown; blobs: Uint8Array[] }[] = [];
    let buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    while (buf.length >= 4) {
      const total = buf.readUInt32LE(0);
      if (buf.length < 4 + total) break;
      const headerBytes = buf.readUInt32LE(4);
      const header = JSON.parse(buf.subarray(8, 8 + headerBytes).toString('utf8')) as { blobs?: unknown };
      const lengths = Array.isArray(header.blobs) ? (header.blobs as number[]) : [];
      const blobs: Uint8Array[] = [];
      let at = 8 + headerBytes;
      for (const len of lengths) {
        blobs.push(new Uint8Array(buf.subarray(at, at + len)));
        at += len;
      }
      frames.push({ header, blobs });
      buf = buf.subarray(4 + total);
    }
    this.pending = buf.length ? [buf] : [];
    this.pendingBytes = buf.length;
    return frames;
  }
}

export function toBytes(value: string | Uint8Array): Uint8Array {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
