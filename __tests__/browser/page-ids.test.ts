/**
 * Every element the page's script looks up by id (`$('…')` in client/main.ts, which throws at load
 * when one is missing) is in client/public/index.html, once.
 */
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const html = fs.readFileSync(path.join(root, 'client', 'public', 'index.html'), 'utf8');
const main = fs.readFileSync(path.join(root, 'client', 'main.ts'), 'utf8');

test('the ids main.ts asks for are in index.html, each once', () => {
  const wanted = [...main.matchAll(/\$(?:<[^>]+>)?\('([\w-]+)'\)/g)].map((m) => m[1]!);
  expect(wanted.length).toBeGreaterThan(20);
  const ids = [...html.matchAll(/\sid="([\w-]+)"/g)].map((m) => m[1]!);
  const missing = wanted.filter((id) => !ids.includes(id));
  expect(missing).toEqual([]);
  const twice = ids.filter((id, i) => ids.indexOf(id) !== i);
  expect(twice).toEqual([]);
});

test('every label and aria-controls of index.html points at an element that exists', () => {
  const ids = new Set([...html.matchAll(/\sid="([\w-]+)"/g)].map((m) => m[1]!));
  const refs = [...html.matchAll(/\s(?:for|aria-controls|aria-labelledby)="([\w-]+)"/g)].map((m) => m[1]!);
  expect(refs.filter((id) => !ids.has(id))).toEqual([]);
});
