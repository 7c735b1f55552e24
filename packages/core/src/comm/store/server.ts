// The rendezvous store's server (rank 0 runs it): an in-memory key-value map over TCP with blocking
// waits, like torch's TCPStore daemon. Keys live until deleted or the server closes.
import { createServer, type Server, type Socket } from 'node:net';

import { DSCommError } from '../../errors.js';
import { bytesEqual, encodeFrame, FrameReader, type ReplyHeader, type RequestHeader } from './protocol.js';

interface Waiter {
  keys: string[];
  reply: () => void;
  timer: NodeJS.Timeout | undefined;
  socket: Socket;
}

export class StoreServer {
  private readonly data = new Map<string, Uint8Array>();
  private waiters = new Set<Waiter>();
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server, readonly port: number) {}

  /** Listens on `port` (0 picks a free one) on every interface. */
  static async listen(port: number, host = '0.0.0.0'): Promise<StoreServer> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new DSCommError(
            `rendezvous store: cannot listen on ${host}:${port} (${err.code ?? err.message}); ` +
              'another job may hold MASTER_PORT: pick a different one',
            { cause: err },
          ),
        ),
      );
      server.listen({ port, host, exclusive: true }, () => resolve());
    });
    const address = server.address();
    const s = new StoreServer(server, typeof address === 'object' && address ? address.port : port);
    server.on('connection', (socket) => s.accept(socket));
    // The store never keeps the process alive by itself: a job that ended exits (its ranks' exit
    // handshake, Distributed.destroy, holds the process while others still need the store).
    server.unref();
    return s;
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    socket.unref();
    this.sockets.add(socket);
    const reader = new FrameReader();
    socket.on('data', (chunk) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const f of frames) this.handle(socket, f.header as RequestHeader, f.blobs);
    });
    const drop = (): void => {
      this.sockets.delete(socket);
      for (const w of this.waiters) {
        if (w.socket === socket) {
          if (w.timer) clearTimeout(w.timer);
          this.waiters.delete(w);
        }
      }
    };
    socket.on('error', drop);
    socket.on('close', drop);
  }

  private send(socket: Socket, header: Omit<ReplyHeader, 'blobs'>, blobs: Uint8Array[] = []): void {
    if (socket.destroyed) return;
    socket.write(encodeFrame({ ...header, blobs: blobs.map((b) => b.length) }, blobs));
  }

  private handle(socket: Socket, req: RequestHeader, blobs: Uint8Array[]): void {
    const id = req.id;
    const keys = Array.isArray(req.keys) ? req.keys : [];
    const key = keys[0] ?? '';
    switch (req.op) {
      case 'set':
        this.put(key, blobs[0] ?? new Uint8Array());
        return this.send(socket, { id, ok: true });
      case 'get':
        return this.whenPresent(socket, req, [key], () => this.send(socket, { id, ok: true }, [this.data.get(key)!]));
      case 'wait':
        return this.whenPresent(socket, req, keys, () => this.send(socket, { id, ok: true }));
      case 'add': {
        const old = this.data.get(key);
        const current = old ? Number(Buffer.from(old).toString('utf8')) : 0;
        if (!Number.isFinite(current)) return this.send(socket, { id, ok: false, error: 'error', message: `key '${key}' does not hold a number` });
        const next = current + (req.delta ?? 0);
        this.put(key, Buffer.from(String(next), 'utf8'));
        return this.send(socket, { id, ok: true, value: next });
      }
      case 'compareSet': {
        const [expected = new Uint8Array(), desired = new Uint8Array()] = blobs;
        const old = this.data.get(key);
        if ((old === undefined && expected.length === 0) || (old !== undefined && bytesEqual(old, expected))) {
          this.put(key, desired);
          return this.send(socket, { id, ok: true }, [desired]);
        }
        return this.send(socket, { id, ok: true }, [old ?? expected]);
      }
      case 'delete':
        return this.send(socket, { id, ok: true, value: this.data.delete(key) });
      case 'check':
        return this.send(socket, { id, ok: true, value: keys.every((k) => this.data.has(k)) });
      case 'numKeys':
        return this.send(socket, { id, ok: true, value: this.data.size });
      default:
        return this.send(socket, { id, ok: false, error: 'error', message: `unknown store op '${String(req.op)}'` });
    }
  }

  private whenPresent(socket: Socket, req: RequestHeader, keys: string[], reply: () => void): void {
    if (keys.every((k) => this.data.has(k))) return reply();
    const waiter: Waiter = { keys, reply, timer: undefined, socket };
    if (req.timeoutMs !== undefined && req.timeoutMs >= 0) {
      waiter.timer = setTimeout(() => {
        this.waiters.delete(waiter);
        const missing = keys.filter((k) => !this.data.has(k));
        this.send(socket, { id: req.id, ok: false, error: 'timeout', message: `keys not set: ${missing.join(', ')}` });
      }, req.timeoutMs);
    }
    this.waiters.add(waiter);
  }

  private put(key: string, value: Uint8Array): void {
    this.data.set(key, value);
    for (const w of this.waiters) {
      if (w.keys.includes(key) && w.keys.every((k) => this.data.has(k))) {
        if (w.timer) clearTimeout(w.timer);
        this.waiters.delete(w);
        w.reply();
      }
    }
  }

  async close(): Promise<void> {
    for (const w of this.waiters) if (w.timer) clearTimeout(w.timer);
    this.waiters.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
