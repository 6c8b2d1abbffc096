'use strict';

// The bench's chart (bench/svg.js, `node bench/bench.js --svg <file>`): well-formed XML, one bar per table row from
// the line at 1.0, bar lengths in proportion to the log of the ratios, labels escaped.

const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  'node bench/bench.js --svg <file>: a chart of the rows it ran':
    "the bench's forkline rows run children on forkline's runtime",
});
const { barChart } = require('../bench/svg');

// A small XML parser that accepts only well-formed documents (an XML declaration, comments, elements with quoted
// attributes, text with the predefined and numeric entities, one root) and returns the root element as
// { name, attrs, children, text }. Throws on anything else.
function parseXml(xml) {
  let i = 0;
  const fail = (what) => {
    throw new Error(`not well-formed XML at ${i}: ${what}: ${JSON.stringify(xml.slice(i, i + 40))}`);
  };
  const NAME = /[A-Za-z_:][\w.:-]*/y;
  const name = () => {
    NAME.lastIndex = i;
    const m = NAME.exec(xml);
    if (!m) fail('expected a name');
    i = NAME.lastIndex;
    return m[0];
  };
  const space = () => {
    while (/\s/.test(xml[i] ?? '')) i++;
  };
  const checkText = (s) => {
    if (s.includes('<')) fail('< in text or attribute');
    for (const m of s.matchAll(/&([^;]*);?/g)) {
      if (!m[0].endsWith(';') || !/^(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+)$/.test(m[1])) fail(`bad entity ${m[0]}`);
    }
    return s;
  };
  const misc = () => {
    for (;;) {
      space();
      if (xml.startsWith('<!--', i)) {
        const end = xml.indexOf('-->', i);
        if (end < 0) fail('unclosed comment');
        i = end + 3;
      } else return;
    }
  };
  const element = () => {
    if (xml[i] !== '<') fail('expected <');
    i++;
    const el = { name: name(), attrs: {}, children: [], text: '' };
    for (;;) {
      space();
      if (xml.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (xml[i] === '>') {
        i++;
        break;
      }
      const attr = name();
      if (attr in el.attrs) fail(`duplicate attribute ${attr}`);
      space();
      if (xml[i++] !== '=') fail('expected =');
      space();
      const quote = xml[i++];
      if (quote !== '"' && quote !== "'") fail('expected a quoted value');
      const end = xml.indexOf(quote, i);
      if (end < 0) fail('unclosed attribute value');
      el.attrs[attr] = checkText(xml.slice(i, end));
      i = end + 1;
    }
    for (;;) {
      const lt = xml.indexOf('<', i);
      if (lt < 0) fail(`unclosed <${el.name}>`);
      el.text += checkText(xml.slice(i, lt));
      i = lt;
      if (xml.startsWith('</', i)) {
        i += 2;
        if (name() !== el.name) fail(`mismatched end tag for <${el.name}>`);
        space();
        if (xml[i++] !== '>') fail('expected >');
        return el;
      }
      if (xml.startsWith('<!--', i)) misc();
      else el.children.push(element());
    }
  };
  if (xml.startsWith('<?xml')) {
    const end = xml.indexOf('?>');
    if (end < 0) fail('unclosed XML declaration');
    i = end + 2;
  }
  misc();
  const root = element();
  misc();
  if (i !== xml.length) fail('content after the root element');
  return root;
}

function descendants(el, pred, out = []) {
  for (const child of el.children) {
    if (pred(child)) out.push(child);
    descendants(child, pred, out);
  }
  return out;
}
const bars = (root) => descendants(root, (el) => el.name === 'rect' && el.attrs.class === 'bar');

test('the XML check rejects what is not well-formed', () => {
  for (const bad of ['<a><b></a>', '<a x="1" x="2"/>', '<a>&nope;</a>', '<a>1 < 2</a>', '<a/><b/>', '<a x=1/>']) {
    assert.throws(() => parseXml(bad), /not well-formed/, bad);
  }
  assert.deepStrictEqual(parseXml('<?xml version="1.0"?><a k="&amp;">t&lt;</a>').attrs, { k: '&amp;' });
});

test('barChart: one bar per row, from the line at 1.0, lengths in proportion to the log of the ratios', () => {
  const rows = [
    { label: 'parent → child, msgs/s', ratio: 2.5, group: 'child_process' },
    { label: 'round trip p99, µs', ratio: 0.8, group: 'child_process' },
    { label: 'a <label> with & and "quotes"', ratio: 1, group: 'child_process' },
    { label: 'keep-alive, SCHED_RR, req/s', ratio: 1.6, group: "cluster's <group>" },
  ];
  const svg = barChart({ title: 'forkline / node <test>', notes: ["node's & forkline's"], rows });
  const root = parseXml(svg);
  assert.strictEqual(root.name, 'svg');
  assert.strictEqual(root.attrs.xmlns, 'http://www.w3.org/2000/svg');

  const drawn = bars(root);
  assert.strictEqual(drawn.length, rows.length);
  const [one] = descendants(root, (el) => el.name === 'line' && el.attrs.class === 'one');
  const line = Number(one.attrs.x1);
  const left = (bar) => Number(bar.attrs.x);
  const width = (bar) => Number(bar.attrs.width);
  rows.forEach((row, i) => {
    const bar = drawn[i];
    assert.strictEqual(Number(bar.attrs['data-ratio']), row.ratio);
    // Right of the line where forkline is better, left of it where it is worse.
    if (row.ratio >= 1) assert.ok(Math.abs(left(bar) - line) < 0.1, `bar ${i} starts at the line`);
    else assert.ok(Math.abs(left(bar) + width(bar) - line) < 0.1, `bar ${i} ends at the line`);
    const expected = Math.abs(Math.log(row.ratio) / Math.log(rows[0].ratio));
    assert.ok(Math.abs(width(bar) / width(drawn[0]) - expected) < 0.01, `bar ${i}: ${width(bar)}`);
  });
  // Rows top to bottom in table order; worse in another colour than better.
  const ys = drawn.map((bar) => Number(bar.attrs.y));
  assert.deepStrictEqual(
    ys,
    [...ys].sort((a, b) => a - b),
  );
  assert.notStrictEqual(drawn[1].attrs.fill, drawn[0].attrs.fill);
  assert.strictEqual(drawn[3].attrs.fill, drawn[0].attrs.fill);

  const texts = (cls) => descendants(root, (el) => el.attrs.class === cls).map((el) => el.text);
  assert.deepStrictEqual(texts('label'), [
    'parent → child, msgs/s',
    'round trip p99, µs',
    'a &lt;label&gt; with &amp; and &quot;quotes&quot;',
    'keep-alive, SCHED_RR, req/s',
  ]);
  assert.deepStrictEqual(texts('group'), ['child_process', 'cluster&apos;s &lt;group&gt;']);
});

test('barChart: a row without a result gets no bar', () => {
  const root = parseXml(
    barChart({
      title: 't',
      rows: [
        { label: 'a', ratio: 1.2 },
        { label: 'b', ratio: null },
      ],
    }),
  );
  assert.strictEqual(bars(root).length, 1);
  assert.ok(descendants(root, (el) => el.name === 'text').some((el) => el.text === 'no result'));
});

test('node bench/bench.js --svg <file>: a chart of the rows it ran', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-bench-svg-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'bench.svg');
  const bench = path.join(__dirname, '..', 'bench', 'bench.js');
  // rtt: three rows (p50, p99, the parent's CPU), under 2 s with --quick and one round.
  const child = spawn(process.execPath, [bench, '--only=rtt', '--quick', '--rounds=1', '--svg', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
    killSignal: 'SIGKILL',
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const [code] = await new Promise((resolve) => child.on('close', (...args) => resolve(args)));
  assert.strictEqual(code, 0, stderr);

  const tableRows = stdout.split('\n').filter((line) => /^\| round trip( p50| p99|, parent CPU)/.test(line));
  assert.strictEqual(tableRows.length, 3, stdout);
  const root = parseXml(fs.readFileSync(file, 'utf8'));
  const drawn = bars(root);
  assert.strictEqual(drawn.length, 3);
  // Each bar is its table row's forkline↔node / node ratio, as printed.
  tableRows.forEach((line, i) => {
    const printed = line.split('|')[5].trim();
    assert.strictEqual(`${Number(drawn[i].attrs['data-ratio']).toFixed(2)}x`, printed);
  });
  const labels = descendants(root, (el) => el.attrs.class === 'label').map((el) => el.text);
  assert.deepStrictEqual(labels, ['round trip p50, µs', 'round trip p99, µs', 'round trip, parent CPU µs each']);
});
