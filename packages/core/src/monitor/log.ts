// The engine's log: rank 0's lines, each with a level, filtered by DS_LOG_LEVEL (read in env.ts)
// before they reach the sink (initialize's `log` option, console.log by default). Warnings keep the
// `warning: ` prefix they always had, errors get `error: `, debug lines `debug: `; info lines are
// printed as they are. Other ranks log nothing (ARCHITECTURE.md section 5).
import { LOG_LEVELS, type LogLevel } from '../env.js';

/** A log line at a level (info when left out); lines below the threshold are dropped. */
export type Log = (message: string, level?: LogLevel) => void;

const PREFIX: Readonly<Record<LogLevel, string>> = { debug: 'debug: ', info: '', warn: 'warning: ', error: 'error: ' };

/** Whether a line at `level` passes the `threshold`. */
export function logLevelEnabled(level: LogLevel, threshold: LogLevel): boolean {
  return LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(threshold);
}

/** A Log writing lines at `threshold` or above to `sink`. */
export function createLog(sink: (line: string) => void, threshold: LogLevel): Log {
  return (message, level = 'info') => {
    if (logLevelEnabled(level, threshold)) sink(`${PREFIX[level]}${message}`);
  };
}

/** A Log that drops everything (ranks other than 0). */
export const silentLog: Log = () => {};
