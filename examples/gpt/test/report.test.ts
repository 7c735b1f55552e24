import { describe, expect, it } from 'vitest';

import { formatDuration, progressLine } from '../src/progress.js';
import { formatBytes, lossCurveSvg, table } from '../src/report.js';

describe('progress', () => {
  it('formats durations', () => {
    expect(formatDuration(5)).toBe('0:05');
    expect(formatDuration(65)).toBe('1:05');
    expect(formatDuration(3725)).toBe('1:02:05');
    expect(formatDuration(NaN)).toBe('--:--');
  });

  it('shows step, loss, tokens/s, lr and an ETA from the pace so far', () => {
    const line = progressLine({ step: 25, totalSteps: 100, loss: 2.5, tokensPerSec: 12345.6, lr: 3e-4, elapsedSec: 50 }, 8);
    expect(line).toBe('[##......] step  25/100 | loss 2.5000 | 12,346 tok/s | lr 3.00e-4 | elapsed 0:50 | eta 2:30');
  });
});

describe('report', () => {
  it('draws a two-column table', () => {
    expect(table([['steps', '10'], ['loss', '1.23']], 'Summary')).toBe(
      ['+-------+------+', '| Summary      |', '+-------+------+', '| steps |   10 |', '| loss  | 1.23 |', '+-------+------+'].join('\n'),
    );
  });

  it('formats bytes', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(300 * 2 ** 20)).toBe('300 MiB');
  });

  it('writes an SVG with one path per series and escaped labels', () => {
    const svg = lossCurveSvg(
      [
        { name: 'train', color: 'blue', points: [{ step: 0, value: 5 }, { step: 10, value: 2 }] },
        { name: 'val <held out>', color: 'red', points: [{ step: 10, value: 2.2 }], markers: true },
      ],
      'GPT & loss',
    );
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(svg.match(/<circle /g)).toHaveLength(1);
    expect(svg).toContain('GPT &amp; loss');
    expect(svg).toContain('val &lt;held out&gt;');
    expect(svg).toContain('>loss (nats/token)</text>');
    expect(lossCurveSvg([{ name: 'v', color: 'red', points: [{ step: 1, value: 3 }] }], 't', 'bits <per> byte')).toContain('>bits &lt;per&gt; byte</text>');
    expect(() => lossCurveSvg([], 'x')).toThrow(RangeError);
  });
});
