// Rank 0's progress line: step, loss, tokens/s, learning rate and ETA, redrawn in place on a
// terminal and printed as plain lines (every `every` steps) when the output is a pipe or a log.

export interface ProgressState {
  step: number;
  totalSteps: number;
  loss: number;
  tokensPerSec: number;
  lr: number;
  elapsedSec: number;
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '--:--';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}

export function progressLine(p: ProgressState, width = 24): string {
  const frac = p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : 0;
  const filled = Math.round(frac * width);
  const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
  const eta = p.step > 0 ? (p.elapsedSec / p.step) * (p.totalSteps - p.step) : NaN;
  return (
    `[${bar}] step ${String(p.step).padStart(String(p.totalSteps).length)}/${p.totalSteps}` +
    ` | loss ${p.loss.toFixed(4)} | ${Math.round(p.tokensPerSec).toLocaleString('en-US')} tok/s` +
    ` | lr ${p.lr.toExponential(2)} | elapsed ${formatDuration(p.elapsedSec)} | eta ${formatDuration(eta)}`
  );
}

export class ProgressBar {
  private readonly tty: boolean;
  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly every: number,
  ) {
    this.tty = Boolean(out.isTTY);
  }

  update(p: ProgressState): void {
    const line = progressLine(p);
    if (this.tty) this.out.write(`\r${line}\x1b[K`);
    else if (p.step % this.every === 0 || p.step === p.totalSteps) this.out.write(line + '\n');
  }

  /** Prints a message without tearing the bar. */
  log(message: string): void {
    this.out.write(this.tty ? `\r\x1b[K${message}\n` : message + '\n');
  }

  done(): void {
    if (this.tty) this.out.write('\n');
  }
}
