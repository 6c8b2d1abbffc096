'use strict';

// What the JS layer's sources must be for the memory of every process that loads them.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');

function jsFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return jsFiles(file);
    return entry.name.endsWith('.js') ? [file] : [];
  });
}

// V8 keeps a script's source for as long as its functions live, at one byte a character while every character is
// Latin-1 and at two for the whole file otherwise: one arrow in a comment doubled channel.js's 32 KB in the heap of
// every parent and runtime child.
test('index.js and lib/ hold only Latin-1 characters, so V8 keeps their sources at one byte a character', () => {
  const files = [path.join(ROOT, 'index.js'), ...jsFiles(path.join(ROOT, 'lib'))];
  assert.ok(files.length > 20, `found ${files.length} files`);
  const wide = [];
  for (const file of files) {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      const char = [...line].find((c) => c.codePointAt(0) > 0xff);
      if (char) wide.push(`${path.relative(ROOT, file)}:${i + 1}: ${JSON.stringify(char)}`);
    });
  }
  assert.deepStrictEqual(wide, []);
});
