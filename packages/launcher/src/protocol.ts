// What a node agent prints, and how `ds` reads it back: every rank line carries `[rank R] `, and
// the agent's own reports are single `@@ds-agent {json}` lines on stderr.

export const AGENT_EVENT_PREFIX = '@@ds-agent ';

export interface AgentFailureEvent {
  event: 'failed';
  host: string;
  nodeRank: number;
  rank: number;
  exitCode: number | null;
  signal: string | null;
  tail: string[];
}

export function rankLine(rank: number, line: string): string {
  return `[rank ${rank}] ${line}`;
}

const RANK_LINE = /^\[rank (\d+)\] ?(.*)$/s;

/** Splits `[rank R] text` into its parts; null for any other line. */
export function parseRankLine(line: string): { rank: number; text: string } | null {
  const m = RANK_LINE.exec(line);
  return m ? { rank: Number(m[1]), text: m[2]! } : null;
}

export function formatAgentEvent(e: AgentFailureEvent): string {
  return AGENT_EVENT_PREFIX + JSON.stringify(e);
}

export function parseAgentEvent(line: string): AgentFailureEvent | null {
  if (!line.startsWith(AGENT_EVENT_PREFIX)) return null;
  try {
    const e = JSON.parse(line.slice(AGENT_EVENT_PREFIX.length)) as AgentFailureEvent;
    return e.event === 'failed' && Number.isInteger(e.rank) ? e : null;
  } catch {
    return null;
  }
}

/** The failure report `ds` prints: which rank, how it ended, its last lines. */
export function formatFailure(f: { rank: number; host: string; pid?: number; exitCode: number | null; signal: string | null; tail: readonly string[]; others: number }): string {
  const how = f.signal !== null ? `was killed by ${f.signal}` : `exited with code ${f.exitCode}`;
  const where = f.pid !== undefined ? `pid ${f.pid} on ${f.host}` : `on ${f.host}`;
  const lines = [`ds: rank ${f.rank} (${where}) ${how}; stopped the other ${f.others} rank(s).`];
  if (f.tail.length > 0) {
    lines.push(`ds: last ${f.tail.length} line(s) of rank ${f.rank}:`);
    for (const l of f.tail) lines.push(`  | ${l}`);
  } else {
    lines.push(`ds: rank ${f.rank} printed nothing.`);
  }
  return lines.join('\n');
}
