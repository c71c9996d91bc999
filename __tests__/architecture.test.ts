/**
 * The layers of the code (README, "Development"), checked: every relative import of every `.ts`
 * file under server/, client/ and cli/ goes to its own layer or to one below it, never up.
 *
 * From the top:
 *   server/main.ts, server/server.ts        the wiring
 *   server/api/
 *   server/workflows/, catalog/, sources/   peers: they may import one another
 *   server/fleet/                           fleet mode: drives the downloader across servers
 *   server/downloader/
 *   server/store/
 *   server/net/
 *   server/disk/
 *   server/protocol/
 *   server/config.ts, errors.ts, logger.ts  the base, importable by every server module
 * client/ may import client/ and server/protocol/ only; cli/ also client/. No server module
 * imports client/ or cli/.
 *
 * Imports are read from the syntax tree (TypeScript's parser), so `import type`, `export … from`,
 * `import()` and `typeof import()` count as much as a plain import: a type-only import still ties a
 * module to the layer it names.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(__dirname, '..');

/**
 * Upward imports known and tolerated for now, as `<importing file> -> <imported file>`. The test
 * expects exactly this list: a new upward import fails it, and so does an entry whose import is
 * gone (delete the entry then). Empty when this test was written:
 * the tree had no upward import. Add to it only with a reason beside the entry.
 */
const KNOWN_UPWARD_IMPORTS: readonly string[] = [];

/** Server layers, top first; a path belongs to the first prefix it starts with. */
const SERVER_LAYERS: ReadonlyArray<{ name: string; rank: number; prefixes: readonly string[] }> = [
  { name: 'wiring', rank: 0, prefixes: ['server/main.ts', 'server/server.ts'] },
  { name: 'api', rank: 1, prefixes: ['server/api/'] },
  { name: 'workflows/catalog/sources', rank: 2, prefixes: ['server/workflows/', 'server/catalog/', 'server/sources/'] },
  // Fleet mode coordinates this server's Downloader with the other servers on a shared volume: a
  // client of the downloader and the store as the API is, with nothing of HTTP in it; below the
  // API that presents it and below the peers, which may come to ask it (a workflow's plan: is a
  // model being downloaded by another server?). The downloader knows it only as an interface of
  // its own (downloader/claims.ts).
  { name: 'fleet', rank: 3, prefixes: ['server/fleet/'] },
  { name: 'downloader', rank: 4, prefixes: ['server/downloader/'] },
  { name: 'store', rank: 5, prefixes: ['server/store/'] },
  { name: 'net', rank: 6, prefixes: ['server/net/'] },
  { name: 'disk', rank: 7, prefixes: ['server/disk/'] },
  { name: 'base (config, errors, logger)', rank: 8, prefixes: ['server/config.ts', 'server/errors.ts', 'server/logger.ts'] },
  // The wire types, the state machine and the error codes: pure, importing nothing, so that the
  // page can compile them too; errors.ts types its codes by the registry.
  { name: 'protocol', rank: 9, prefixes: ['server/protocol/'] },
];

type Place = { kind: 'server'; name: string; rank: number } | { kind: 'client' } | { kind: 'cli' } | { kind: 'elsewhere' };

/** Where a repository-relative path (`/` separators) sits in the layering. */
function placeOf(rel: string): Place {
  if (rel.startsWith('client/')) return { kind: 'client' };
  if (rel.startsWith('cli/')) return { kind: 'cli' };
  for (const layer of SERVER_LAYERS) {
    if (layer.prefixes.some((p) => rel === p || rel.startsWith(p) || `${rel}/` === p)) return { kind: 'server', name: layer.name, rank: layer.rank };
  }
  return { kind: 'elsewhere' };
}

const describePlace = (p: Place): string => (p.kind === 'server' ? `${p.name} (layer ${p.rank})` : p.kind === 'elsewhere' ? 'outside server/, client/, cli/' : `${p.kind}/`);

/** Why `from` may not import `to`, or undefined when it may. */
function refusal(fromRel: string, toRel: string): string | undefined {
  const from = placeOf(fromRel);
  const to = placeOf(toRel);
  if (from.kind === 'elsewhere') return `${fromRel} belongs to no layer: add it to SERVER_LAYERS here and to the README's code map`;
  if (to.kind === 'elsewhere') return `it reaches ${describePlace(to)}`;
  if (from.kind === 'client' || from.kind === 'cli') {
    if (to.kind === 'client' && from.kind === 'client') return undefined;
    if (to.kind === 'cli' && from.kind === 'cli') return undefined;
    if (to.kind === 'client' && from.kind === 'cli') return undefined;
    if (to.kind === 'server' && toRel.startsWith('server/protocol/')) return undefined;
    return `${from.kind}/ may import ${from.kind === 'cli' ? 'cli/, client/' : 'client/'} and server/protocol/ only, not ${describePlace(to)}`;
  }
  if (to.kind !== 'server') return `a server module may not import ${describePlace(to)}`;
  if (from.kind === 'server' && to.rank < from.rank) return `${describePlace(from)} may not import ${describePlace(to)}, a layer above it`;
  return undefined;
}

interface FoundImport {
  specifier: string;
  line: number;
}

/** Every module specifier a file names: imports, re-exports, `import()`, `require()`, `typeof import()`. */
function importsOf(fileName: string, text: string): FoundImport[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: FoundImport[] = [];
  const add = (node: ts.Node | undefined): void => {
    if (node && ts.isStringLiteralLike(node)) found.push({ specifier: node.text, line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node.moduleReference.expression);
    else if (ts.isCallExpression(node) && (node.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(node.expression) && node.expression.text === 'require'))) add(node.arguments[0]);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The repository-relative file a relative specifier names (`./x.js` is `./x.ts`, `.` is `./index.ts`). */
function resolve(fromRel: string, specifier: string): string {
  const base = path.resolve(ROOT, path.dirname(fromRel), specifier);
  const candidates = [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, path.join(base, 'index.ts')];
  const hit = candidates.find((c) => fs.existsSync(c) && fs.statSync(c).isFile()) ?? base;
  return path.relative(ROOT, hit).split(path.sep).join('/');
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const item of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${item.name}`;
    if (item.isDirectory()) out.push(...sourceFiles(rel));
    else if (item.isFile() && item.name.endsWith('.ts') && !item.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

test('the import reader sees every form of import, type-only ones included', () => {
  const text = [
    "import a from './a';",
    "import type { B } from '../b';",
    "import { type C, d } from './c.js';",
    "import './side-effect';",
    "export { e } from './e';",
    "export type { F } from './f';",
    "export * from './g';",
    "import h = require('./h');",
    "const i = require('./i');",
    "const j = await import('./j');",
    "let k: typeof import('./k');",
    "let l: import('./l').L;",
    "import fs from 'node:fs';",
  ].join('\n');
  expect(importsOf('fixture.ts', text).map((i) => i.specifier)).toEqual(['./a', '../b', './c.js', './side-effect', './e', './f', './g', './h', './i', './j', './k', './l', 'node:fs']);
});

test('the layer rules refuse what goes up and allow what goes down', () => {
  expect(refusal('server/store/status-store.ts', 'server/api/app.ts')).toMatch(/layer above/);
  expect(refusal('server/protocol/wire.ts', 'server/errors.ts')).toMatch(/layer above/);
  expect(refusal('server/errors.ts', 'server/protocol/error-codes.ts')).toBeUndefined();
  expect(refusal('server/api/app.ts', 'server/store/entry.ts')).toBeUndefined();
  expect(refusal('server/sources/intake.ts', 'server/catalog/catalog.ts')).toBeUndefined(); // peers
  expect(refusal('server/catalog/catalog.ts', 'server/sources/index.ts')).toBeUndefined();
  expect(refusal('server/main.ts', 'server/server.ts')).toBeUndefined();
  expect(refusal('server/logger.ts', 'server/errors.ts')).toBeUndefined();
  expect(refusal('client/main.ts', 'server/protocol/wire.ts')).toBeUndefined();
  expect(refusal('client/main.ts', 'server/errors.ts')).toMatch(/client\/ may import/);
  expect(refusal('client/main.ts', 'cli/render.ts')).toMatch(/client\/ may import/);
  expect(refusal('cli/watch.ts', 'client/ws-client.ts')).toBeUndefined();
  expect(refusal('cli/main.ts', 'server/config.ts')).toMatch(/cli\/ may import/);
  expect(refusal('server/api/app.ts', 'client/format.ts')).toMatch(/server module may not import/);
  expect(refusal('server/new-thing.ts', 'server/errors.ts')).toMatch(/belongs to no layer/);
  expect(refusal('server/api/app.ts', 'server/fleet/fleet.ts')).toBeUndefined();
  expect(refusal('server/fleet/fleet.ts', 'server/downloader/downloader.ts')).toBeUndefined();
  expect(refusal('server/downloader/claims.ts', 'server/fleet/claims.ts')).toMatch(/layer above/);
  expect(refusal('server/fleet/view.ts', 'server/api/ws-hub.ts')).toMatch(/layer above/);
});

test('no module imports from a layer above its own (apart from the known list)', () => {
  const files = ['server', 'client', 'cli'].flatMap(sourceFiles);
  const upward: string[] = [];
  const messages: string[] = [];
  let relative = 0;
  for (const file of files) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    for (const { specifier, line } of importsOf(file, text)) {
      if (!specifier.startsWith('.')) continue;
      relative++;
      const target = resolve(file, specifier);
      const why = refusal(file, target);
      if (why === undefined) continue;
      const key = `${file} -> ${target}`;
      upward.push(key);
      if (!KNOWN_UPWARD_IMPORTS.includes(key)) messages.push(`${file}:${line} imports '${specifier}' (${target}): ${why}`);
    }
  }
  // The scan found the code: the tree has far more than this many relative imports.
  expect(files.length).toBeGreaterThan(40);
  expect(relative).toBeGreaterThan(100);

  const fixed = KNOWN_UPWARD_IMPORTS.filter((k) => !upward.includes(k));
  const problems = [
    ...messages.map((m) => `new upward import: ${m}`),
    ...fixed.map((k) => `no longer imported, remove it from KNOWN_UPWARD_IMPORTS: ${k}`),
  ];
  expect(problems).toEqual([]);
});
