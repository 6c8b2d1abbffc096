'use strict';

// The bench's chart (`--svg <file>`): a plain SVG bar chart of forkline/node ratios, one horizontal bar per table
// row. The scale is logarithmic (base 2) with a line at 1.0: a bar goes right of the line where forkline is better,
// left where it is worse, and 2x and 0.5x are the same length, so that one large ratio does not flatten the rest.
// No dependencies: the SVG is written as text, with every label escaped.

const FONT = 12;
const CHAR = 7; // a generous average width of one character at FONT px, to size the label column
const LINE = 18;
const BAR = 14;
const PAD = 16;
const PLOT = 480; // width of the bar area

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]);

const isRatio = (r) => typeof r === 'number' && Number.isFinite(r) && r > 0;

// The scale's ends, powers of 2 around every ratio (at least 0.5x to 2x).
function scaleOf(ratios) {
  const lo = Math.min(-1, ...ratios.map((r) => Math.floor(Math.log2(r))));
  const hi = Math.max(1, ...ratios.map((r) => Math.ceil(Math.log2(r))));
  return { lo, hi };
}

// rows: [{ label, ratio, group? }] in table order (ratio null: the row has no result, shown as text instead of a
// bar); a row whose group differs from the row above starts with the group's name as a heading.
// title: one line; notes: lines under it (what the ratio means, the machine).
function barChart({ title, notes = [], rows }) {
  const { lo, hi } = scaleOf(rows.map((row) => row.ratio).filter(isRatio));
  const labelWidth = Math.max(...rows.map((row) => String(row.label).length), 10) * CHAR;
  const x0 = PAD + labelWidth + 8;
  const x = (ratio) => x0 + ((Math.log2(ratio) - lo) / (hi - lo)) * PLOT;
  const headHeight = PAD + LINE * (1 + notes.length) + 8;
  const plotTop = headHeight + LINE; // room for the scale's numbers
  const headings = rows.filter((row, i) => row.group !== undefined && row.group !== rows[i - 1]?.group).length;
  const plotHeight = (rows.length + headings) * LINE + 4;
  const width = x0 + PLOT + 60 + PAD;
  const height = plotTop + plotHeight + PAD;
  const notesWidth = Math.max(title.length, ...notes.map((n) => n.length)) * CHAR * 0.85 + 2 * PAD;
  const svgWidth = Math.ceil(Math.max(width, notesWidth));

  const out = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${svgWidth}" height="${height}" ` +
      `viewBox="0 0 ${svgWidth} ${height}" font-family="sans-serif" font-size="${FONT}">`,
  );
  out.push(`<rect width="${svgWidth}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${PAD}" y="${PAD + FONT}" font-size="${FONT + 2}" font-weight="bold">${escape(title)}</text>`);
  notes.forEach((note, i) => {
    out.push(`<text x="${PAD}" y="${PAD + FONT + LINE * (i + 1)}" fill="#555555">${escape(note)}</text>`);
  });

  // The scale: a grid line and a number at each power of 2.
  const ticks = [];
  for (let e = lo; e <= hi; e++) ticks.push(2 ** e);
  out.push('<g class="scale" stroke="#e0e0e0">');
  for (const v of ticks) {
    out.push(`<line x1="${x(v).toFixed(1)}" y1="${plotTop}" x2="${x(v).toFixed(1)}" y2="${plotTop + plotHeight}"/>`);
  }
  out.push('</g>');
  out.push('<g class="scale-labels" fill="#555555" text-anchor="middle">');
  for (const v of ticks) out.push(`<text x="${x(v).toFixed(1)}" y="${plotTop - 6}">${v}x</text>`);
  out.push('</g>');

  const one = x(1);
  let line = 0;
  rows.forEach((row, i) => {
    if (row.group !== undefined && row.group !== rows[i - 1]?.group) {
      const y = plotTop + 2 + line++ * LINE + BAR / 2 + FONT / 2 - 2;
      out.push(`<text class="group" x="${PAD}" y="${y}" font-weight="bold">${escape(row.group)}</text>`);
    }
    const y = plotTop + 2 + line++ * LINE;
    const mid = y + BAR / 2 + FONT / 2 - 2;
    out.push(`<text class="label" x="${x0 - 8}" y="${mid}" text-anchor="end">${escape(row.label)}</text>`);
    if (isRatio(row.ratio)) {
      const end = x(row.ratio);
      const better = row.ratio >= 1;
      out.push(
        `<rect class="bar" x="${Math.min(one, end).toFixed(1)}" y="${y}" width="${Math.abs(end - one).toFixed(1)}" ` +
          `height="${BAR}" fill="${better ? '#2e7d32' : '#e65100'}" data-ratio="${row.ratio}"/>`,
      );
      // The number right of the bar, or right of the line for a bar that goes left.
      out.push(`<text x="${(better ? end : one) + 4}" y="${mid}">${row.ratio.toFixed(2)}x</text>`);
    } else {
      out.push(`<text x="${one + 4}" y="${mid}" fill="#b00020">no result</text>`);
    }
  });

  // The line at 1.0, over the bars.
  out.push(
    `<line class="one" x1="${one.toFixed(1)}" y1="${plotTop - 2}" x2="${one.toFixed(1)}" ` +
      `y2="${plotTop + plotHeight}" stroke="#000000" stroke-width="1.5" stroke-dasharray="4 3"/>`,
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}

module.exports = { barChart, escape };
