// The end-of-run summary table and the loss-curve picture (SVG, readable in any browser).

export interface CurvePoint {
  step: number;
  value: number;
}

export function table(rows: ReadonlyArray<readonly [string, string]>, title?: string): string {
  const w = Math.max(...rows.map((r) => r[0].length));
  const v = Math.max(...rows.map((r) => r[1].length));
  const rule = `+${'-'.repeat(w + 2)}+${'-'.repeat(v + 2)}+`;
  const lines = [rule];
  if (title) lines.push(`| ${title.padEnd(w + v + 3)} |`, rule);
  for (const [k, val] of rows) lines.push(`| ${k.padEnd(w)} | ${val.padStart(v)} |`);
  lines.push(rule);
  return lines.join('\n');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let x = n / 1024;
  let i = 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2)} ${units[i]}`;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

/** Line chart of one or more series (train loss, validation loss, reference lines) as SVG text. */
export function lossCurveSvg(
  series: ReadonlyArray<{ name: string; color: string; points: readonly CurvePoint[]; dashed?: boolean; markers?: boolean }>,
  title: string,
  yLabel = 'loss (nats/token)',
): string {
  const W = 720;
  const H = 420;
  const m = { l: 60, r: 160, t: 40, b: 45 };
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) throw new RangeError('lossCurveSvg: no points to draw');
  const xMin = Math.min(...all.map((p) => p.step));
  const xMax = Math.max(...all.map((p) => p.step), xMin + 1);
  const yMin = Math.min(...all.map((p) => p.value));
  const yMax = Math.max(...all.map((p) => p.value), yMin + 1e-6);
  const pad = (yMax - yMin) * 0.05;
  const y0 = yMin - pad;
  const y1 = yMax + pad;
  const sx = (x: number) => m.l + ((x - xMin) / (xMax - xMin)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - m.r / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(title)}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 10}" text-anchor="middle">step</text>`,
    `<text x="15" y="${(m.t + H - m.b) / 2}" text-anchor="middle" transform="rotate(-90 15 ${(m.t + H - m.b) / 2})">${escapeXml(yLabel)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const yv = y0 + ((y1 - y0) * i) / 5;
    const xv = xMin + ((xMax - xMin) * i) / 5;
    parts.push(`<line x1="${m.l}" y1="${sy(yv)}" x2="${W - m.r}" y2="${sy(yv)}" stroke="#ddd"/>`);
    parts.push(`<text x="${m.l - 6}" y="${sy(yv) + 4}" text-anchor="end">${(Math.abs(yv) < 5e-3 ? 0 : yv).toFixed(2)}</text>`);
    parts.push(`<text x="${sx(xv)}" y="${H - m.b + 16}" text-anchor="middle">${Math.round(xv)}</text>`);
  }
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${sx(p.step).toFixed(1)},${sy(p.value).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    if (s.markers) for (const p of s.points) parts.push(`<circle cx="${sx(p.step).toFixed(1)}" cy="${sy(p.value).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
    const ly = m.t + 10 + i * 20;
    parts.push(`<line x1="${W - m.r + 12}" y1="${ly}" x2="${W - m.r + 36}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    parts.push(`<text x="${W - m.r + 42}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
