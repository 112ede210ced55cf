// Writes a latency chart as a self-contained SVG: one row per runner, each sample a faint
// dot, a box from p25 to p75 with the median marked and labelled, whiskers to p1 and p99.
// Used by bench/spawn.mjs --svg FILE. No dependencies.
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function latencySvg(title, subtitle, series) {
  const q = (xs, p) => xs[Math.min(xs.length - 1, Math.max(0, Math.floor((p / 100) * xs.length)))];
  const rows = series.map(({ name, samples, highlight }) => {
    const s = [...samples].sort((a, b) => a - b);
    return { name, s, highlight, p1: q(s, 1), p25: q(s, 25), p50: q(s, 50), p75: q(s, 75), p99: q(s, 99) };
  });
  const max = Math.max(...rows.map((r) => r.p99)) * 1.08;
  const step = [0.5, 1, 2, 5, 10, 20, 50].find((t) => max / t <= 10) ?? 100;
  const W = 860, left = 190, right = 170, top = 58, rowH = 46, H = top + rows.length * rowH + 42;
  const x = (v) => left + (Math.min(v, max) / max) * (W - left - right);
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="13">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${left}" y="22" font-size="15" font-weight="600">${esc(title)}</text>`);
  out.push(`<text x="${left}" y="40" fill="#555" font-size="12">${esc(subtitle)}</text>`);
  for (let t = 0; t <= max; t += step) {
    out.push(`<line x1="${x(t)}" x2="${x(t)}" y1="${top - 6}" y2="${top + rows.length * rowH}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x(t)}" y="${top + rows.length * rowH + 16}" text-anchor="middle" fill="#555" font-size="11">${t} ms</text>`);
  }
  rows.forEach((r, i) => {
    const cy = top + i * rowH + rowH / 2;
    const col = r.highlight ? '#1f6feb' : '#6e7781';
    out.push(`<text x="${left - 10}" y="${cy + 4}" text-anchor="end" font-weight="${r.highlight ? 600 : 400}">${esc(r.name)}</text>`);
    // every sample, spread a little vertically so that dense regions show
    r.s.forEach((v, k) => out.push(`<circle cx="${x(v).toFixed(1)}" cy="${(cy - 12 + ((k * 7919) % 25)).toFixed(1)}" r="1.4" fill="${col}" fill-opacity="0.18"/>`));
    out.push(`<line x1="${x(r.p1)}" x2="${x(r.p99)}" y1="${cy}" y2="${cy}" stroke="${col}" stroke-width="1.5"/>`);
    for (const v of [r.p1, r.p99]) out.push(`<line x1="${x(v)}" x2="${x(v)}" y1="${cy - 6}" y2="${cy + 6}" stroke="${col}" stroke-width="1.5"/>`);
    out.push(`<rect x="${x(r.p25)}" y="${cy - 9}" width="${Math.max(1, x(r.p75) - x(r.p25))}" height="18" fill="${col}" fill-opacity="0.25" stroke="${col}"/>`);
    out.push(`<line x1="${x(r.p50)}" x2="${x(r.p50)}" y1="${cy - 12}" y2="${cy + 12}" stroke="${col}" stroke-width="3"/>`);
    out.push(`<text x="${x(r.p99) + 6}" y="${cy + 4}" fill="#333" font-size="11">p50 ${r.p50.toFixed(2)} · p99 ${r.p99.toFixed(2)}</text>`);
  });
  out.push(`<text x="${left}" y="${H - 6}" fill="#777" font-size="11">box: p25–p75, thick line: median, whiskers: p1 and p99, dots: every sample</text>`);
  out.push('</svg>');
  return out.join('\n');
}
