// The observers of a group's ops (the comms logger is one), shared by every backend.
import type { CommEvent, CommObserver, ObserverOptions } from './types.js';

const COMM_DIR = /[\\/]src[\\/]comm[\\/]|[\\/]dist[\\/]index\.js/;

export class Observers {
  private readonly fns = new Map<CommObserver, boolean>();

  add(fn: CommObserver, opts: ObserverOptions = {}): () => void {
    this.fns.set(fn, opts.captureCaller ?? false);
    return () => {
      this.fns.delete(fn);
    };
  }

  get empty(): boolean {
    return this.fns.size === 0;
  }

  get wantCaller(): boolean {
    for (const v of this.fns.values()) if (v) return true;
    return false;
  }

  /**
   * The first stack frame outside the comm layer: the function that called the op. A backend that
   * lives in another package passes the pattern of its own frames (`backendFrames`) to skip them too.
   */
  static caller(backendFrames?: RegExp): string | undefined {
    const holder: { stack?: string } = {};
    Error.captureStackTrace(holder);
    const stack = holder.stack?.split('\n').slice(1) ?? [];
    for (const frame of stack) {
      if (COMM_DIR.test(frame) || backendFrames?.test(frame)) continue;
      const m = /at (?:async )?([^\s(]+) \(/.exec(frame) ?? /at (.*)$/.exec(frame);
      return m?.[1]?.trim();
    }
    return undefined;
  }

  emit(event: CommEvent): void {
    for (const fn of this.fns.keys()) fn(event);
  }
}
