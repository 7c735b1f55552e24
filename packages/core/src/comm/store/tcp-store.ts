// TCPStore: the client side of the rendezvous store, plus the server when this rank hosts it.
// Connecting retries with exponential backoff until the timeout, since rank 0 may start last.
import { connect, type Socket } from 'node:net';

import { DSCommError, DSTimeoutError } from '../../errors.js';
import { encodeFrame, FrameReader, toBytes, type ReplyHeader, type RequestHeader, type StoreOp } from './protocol.js';
import { StoreServer } from './server.js';
import type { Store } from './store.js';

export interface TCPStoreOptions {
  host: string;
  port: number;
  /** Start the server in this process (rank 0). With port 0 a free port is chosen; see `port`. */
  isServer: boolean;
  /** Default timeout of connect, get and wait; 300 s. */
  timeoutMs?: number;
}

interface Pending {
  resolve: (r: { header: ReplyHeader; blobs: Uint8Array[] }) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
  what: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class TCPStore implements Store {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly server: StoreServer | undefined,
    readonly host: string,
    readonly port: number,
    readonly timeoutMs: number,
  ) {
    // Idle, the connection does not keep the process alive; a request in flight does (see request()).
    socket.unref();
    const reader = new FrameReader();
    socket.on('data', (chunk) => {
      for (const f of reader.push(chunk)) this.onReply(f.header as ReplyHeader, f.blobs);
    });
    const lost = (err?: Error): void => this.failAll(new DSCommError(`rendezvous store connection to ${host}:${port} lost${err ? `: ${err.message}` : ''}`, { cause: err }));
    socket.on('error', lost);
    socket.on('close', () => lost());
  }

  static async create(opts: TCPStoreOptions): Promise<TCPStore> {
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const server = opts.isServer ? await StoreServer.listen(opts.port) : undefined;
    const port = server ? server.port : opts.port;
    const host = server ? '127.0.0.1' : opts.host;
    try {
      const socket = await connectWithBackoff(host, port, timeoutMs);
      return new TCPStore(socket, server, opts.host, port, timeoutMs);
    } catch (err) {
      await server?.close();
      throw err;
    }
  }

  private onReply(header: ReplyHeader, blobs: Uint8Array[]): void {
    const p = this.pending.get(header.id);
    if (!p) return;
    this.pending.delete(header.id);
    if (this.pending.size === 0) this.socket.unref();
    if (p.timer) clearTimeout(p.timer);
    if (header.ok) p.resolve({ header, blobs });
    else if (header.error === 'timeout') p.reject(new DSTimeoutError(`rendezvous store: ${p.what} timed out (${header.message ?? ''})`));
    else p.reject(new DSCommError(`rendezvous store: ${p.what} failed: ${header.message ?? 'unknown error'}`));
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      if (p.timer) clearTimeout(p.timer);
      p.reject(err);
    }
  }

  private request(op: StoreOp, keys: readonly string[], extra: { delta?: number; timeoutMs?: number } = {}, blobs: Uint8Array[] = []): Promise<{ header: ReplyHeader; blobs: Uint8Array[] }> {
    if (this.closed) return Promise.reject(new DSCommError(`rendezvous store: ${op} on a closed store`));
    const id = this.nextId++;
    const header: RequestHeader = { id, op, keys: [...keys], ...extra, blobs: blobs.map((b) => b.length) };
    const what = `${op}(${keys.join(', ')})`;
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject, timer: undefined, what };
      if (extra.timeoutMs !== undefined) {
        // The server answers timeouts itself; this guards against a server that stopped answering.
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          if (this.pending.size === 0) this.socket.unref();
          reject(new DSTimeoutError(`rendezvous store: ${what} got no answer from ${this.host}:${this.port} within ${extra.timeoutMs! + 5000} ms`));
        }, extra.timeoutMs + 5000);
      }
      if (this.pending.size === 0) this.socket.ref();
      this.pending.set(id, p);
      this.socket.write(encodeFrame(header, blobs));
    });
  }

  async set(key: string, value: string | Uint8Array): Promise<void> {
    await this.request('set', [key], {}, [toBytes(value)]);
  }
  async get(key: string, timeoutMs = this.timeoutMs): Promise<Uint8Array> {
    return (await this.request('get', [key], { timeoutMs })).blobs[0]!;
  }
  async wait(keys: readonly string[], timeoutMs = this.timeoutMs): Promise<void> {
    await this.request('wait', keys, { timeoutMs });
  }
  async add(key: string, delta: number): Promise<number> {
    return (await this.request('add', [key], { delta })).header.value as number;
  }
  async compareSet(key: string, expected: string | Uint8Array, desired: string | Uint8Array): Promise<Uint8Array> {
    return (await this.request('compareSet', [key], {}, [toBytes(expected), toBytes(desired)])).blobs[0]!;
  }
  async delete(key: string): Promise<boolean> {
    return (await this.request('delete', [key])).header.value as boolean;
  }
  async check(keys: readonly string[]): Promise<boolean> {
    return (await this.request('check', keys)).header.value as boolean;
  }
  async numKeys(): Promise<number> {
    return (await this.request('numKeys', [])).header.value as number;
  }

  /** Closes the connection, and the server when this process hosts it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new DSCommError('rendezvous store closed'));
    this.socket.removeAllListeners('close');
    this.socket.destroy();
    await this.server?.close();
  }
}

async function connectWithBackoff(host: string, port: number, timeoutMs: number): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  let lastError = '';
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect({ host, port });
        s.once('connect', () => {
          s.removeAllListeners('error');
          s.setNoDelay(true);
          resolve(s);
        });
        s.once('error', (err) => {
          s.destroy();
          reject(err);
        });
      });
    } catch (err) {
      lastError = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    }
    if (Date.now() + delay > deadline) {
      throw new DSTimeoutError(
        `rendezvous store: could not reach ${host}:${port} within ${timeoutMs} ms (last error: ${lastError}); ` +
          'is rank 0 running, and are MASTER_ADDR/MASTER_PORT the same on every rank?',
      );
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 1000);
  }
}
