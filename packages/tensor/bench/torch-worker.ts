// A long-lived Python process serving a bench's PyTorch anchor one request at a time (JSON lines on
// stdin/stdout). Keeping one process lets a bench alternate short rounds of its own work with rounds
// of the anchor's, so both sides see the same load on a shared machine, and pay torch's import once.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';

import { pythonWithTorch } from '@ds-internal/bench-kit';

export class TorchWorker {
  private readonly lines: AsyncIterator<string>;
  private stderr = '';

  private constructor(private readonly child: ChildProcessWithoutNullStreams, rl: Interface) {
    this.lines = rl[Symbol.asyncIterator]();
    child.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
  }

  /** Starts `script` under the first python that imports torch (with `env` added and `unset` removed); a string says why there is none. */
  static start(script: string, env: NodeJS.ProcessEnv = {}, unset: readonly string[] = []): TorchWorker | string {
    const found = pythonWithTorch();
    if (typeof found === 'string') return found;
    const full: NodeJS.ProcessEnv = { ...process.env, ...env };
    for (const name of unset) delete full[name];
    const child = spawn(found.python, [script], { env: full, stdio: ['pipe', 'pipe', 'pipe'] });
    return new TorchWorker(child, createInterface({ input: child.stdout }));
  }

  /** Sends one request and waits (at most timeoutMs) for its one-line answer. */
  async request<T>(req: unknown, timeoutMs = 600_000): Promise<T> {
    this.child.stdin.write(`${JSON.stringify(req)}\n`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the PyTorch worker gave no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    });
    try {
      const next = await Promise.race([this.lines.next(), timeout]);
      if (next.done) throw new Error(`the PyTorch worker exited: ${this.stderr.trim().split('\n').pop() ?? 'no message'}`);
      return JSON.parse(next.value) as T;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill();
  }
}
