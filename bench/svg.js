'use strict';

// The bench's chart (`--svg <file>`): a plain SVG bar chart of forkline/node ratios, one horizontal bar per table
// row, on a linear scale from 0 with a line at 1.0 (to its right, forkline is better). No dependencies: the SVG is
// written as text, with every label escaped.

const FONT = 12;
const CHAR = 7; // a generous average width of one character at FONT px, to size the label column
const LINE = 18;
const BAR = 14;
const PAD = 16;
const PLOT = 440; // width of the bar area

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]);

// The top of the scale: a round number above every ratio and above 1, and the step of its grid lines.
function scaleOf(ratios) {
  const top = Math.max(1, ...ratios) * 1.05;
  const step = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100].find((s) => top / s <= 8) ?? Math.ceil(top / 8);
  return { max: Math.ceil(top / step) * step, step };
}

// rows: [{ label, ratio }] in table order (ratio null: the row has no result, shown as text instead of a bar).
// title: one line; notes: lines under it (what the ratio means, the machine).
function barChart({ title, notes = [], rows }) {
  const ratios = rows.map((row) => row.ratio).filter((r) => typeof r === 'number' && Number.isFinite(r));
  const { max, step } = scaleOf(ratios);
  const labelWidth = Math.max(...rows.map((row) => String(row.label).length), 10) * CHAR;
  const x0 = PAD + labelWidth + 8;
  const x = (ratio) => x0 + (ratio / max) * PLOT;
  const headHeight = PAD + LINE * (1 + notes.length) + 8;
  const plotTop = headHeight + LINE; // room for the scale's numbers
  const plotHeight = rows.length * LINE + 4;
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

  // The scale: a grid line and a number per step.
  out.push('<g class="scale" stroke="#e0e0e0">');
  for (let v = 0; v <= max + 1e-9; v += step) {
    out.push(`<line x1="${x(v).toFixed(1)}" y1="${plotTop}" x2="${x(v).toFixed(1)}" y2="${plotTop + plotHeight}"/>`);
  }
  out.push('</g>');
  out.push('<g class="scale-labels" fill="#555555" text-anchor="middle">');
  for (let v = 0; v <= max + 1e-9; v += step) {
    out.push(`<text x="${x(v).toFixed(1)}" y="${plotTop - 6}">${Number(v.toFixed(2))}x</text>`);
  }
  out.push('</g>');

  rows.forEach((row, i) => {
    const y = plotTop + 2 + i * LINE;
    const mid = y + BAR / 2 + FONT / 2 - 2;
    out.push(`<text class="label" x="${x0 - 8}" y="${mid}" text-anchor="end">${escape(row.label)}</text>`);
    if (typeof row.ratio === 'number' && Number.isFinite(row.ratio)) {
      const better = row.ratio >= 1;
      const w = Math.max(0, x(row.ratio) - x0).toFixed(1);
      out.push(
        `<rect class="bar" x="${x0}" y="${y}" width="${w}" height="${BAR}" ` +
          `fill="${better ? '#2e7d32' : '#e65100'}" data-ratio="${row.ratio}"/>`,
      );
      out.push(`<text x="${x(row.ratio) + 4}" y="${mid}">${row.ratio.toFixed(2)}x</text>`);
    } else {
      out.push(`<text x="${x0 + 4}" y="${mid}" fill="#b00020">no result</text>`);
    }
  });

  // The line at 1.0, over the bars.
  out.push(
    `<line class="one" x1="${x(1).toFixed(1)}" y1="${plotTop - 2}" x2="${x(1).toFixed(1)}" ` +
      `y2="${plotTop + plotHeight}" stroke="#000000" stroke-width="1.5" stroke-dasharray="4 3"/>`,
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}

module.exports = { barChart, escape };
