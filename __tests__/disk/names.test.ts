/**
 * Names a user, a catalog or a source server gives: counted in bytes, free of invisible and
 * Windows-hostile characters, and never one of the downloader's own side-file names.
 */
import path from 'node:path';
import { MAX_NAME_BYTES, resolveDest, sanitizeFilename } from '../../server/disk/paths';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { settled, startTestServer, type TestServer } from '../helpers/harness';

const models = path.join('/tmp', 'md-names-models');
const refused = (filename: string): unknown => {
  try {
    resolveDest(models, 'loras', filename);
    return undefined;
  } catch (err) {
    return err;
  }
};

test.each([
  ['a name of 61 emoji (244 bytes, 122 UTF-16 units)', '\u{1F600}'.repeat(61) + '.bin'],
  ['a side-file name: the segment map', 'victim.bin.part.json'],
  ['a side-file name: the map\'s temp name', 'victim.bin.part.json.1f3a9c'],
  ['a side-file name: the bytes', 'victim.bin.part'],
  ['upper-case side-file name', 'VICTIM.BIN.PART.JSON'],
  ['a device name with a space before the extension', 'con .bin'],
  ['the console device', 'CONIN$'],
  ['a superscript COM port', 'COM\u00b9.bin'],
  ['<', 'a<b>.bin'],
  ['|', 'a|b.bin'],
  ['?', 'a?b.bin'],
  ['*', 'a*b.bin'],
  ['a trailing dot', 'model.bin.'],
  ['a trailing space', 'model.bin '],
  ['a right-to-left override', 'x\u202Esrotnefas.exe'],
  ['a zero-width space', 'mo\u200Bdel.bin'],
  ['U+0085 (next line)', 'a\u0085b.bin'],
  ['U+2028 (line separator)', 'a\u2028b.bin'],
])('refused as a filename: %s', (_what, name) => {
  expect(refused(name)).toMatchObject({ code: 'INVALID_PATH', status: 400 });
});

test('names that look close but are fine are accepted', () => {
  for (const ok of ['model.part1.safetensors', 'x.part.safetensors', 'a.json', 'console.bin', 'com10.bin', 'résumé-模型.safetensors', 'x'.repeat(MAX_NAME_BYTES)]) {
    expect(refused(ok)).toBeUndefined();
  }
  expect(refused('x'.repeat(MAX_NAME_BYTES + 1))).toMatchObject({ code: 'INVALID_PATH' });
});

test('a suggested name is cleaned: invisible characters stripped, controls replaced, side-file suffixes and trailing dots dropped, bytes counted', () => {
  expect(sanitizeFilename('x\u202Esrotnefas.exe')).toBe('xsrotnefas.exe');
  expect(sanitizeFilename('mo\u200Bdel\uFEFF.bin')).toBe('model.bin');
  expect(sanitizeFilename('a\u0085b\u2028c.bin')).toBe('a_b_c.bin');
  expect(sanitizeFilename('victim.bin.part.json')).toBe('victim.bin');
  expect(sanitizeFilename('victim.bin.part.json.77')).toBe('victim.bin');
  expect(sanitizeFilename('v.bin.part.part')).toBe('v.bin');
  expect(sanitizeFilename('model.bin. . ')).toBe('model.bin');
  expect(sanitizeFilename('a|b?.bin')).toBe('a_b_.bin');
  const long = sanitizeFilename('\u{1F600}'.repeat(100) + '.safetensors')!;
  expect(Buffer.byteLength(long)).toBeLessThanOrEqual(MAX_NAME_BYTES);
  expect(long.endsWith('\u{1F600}.safetensors')).toBe(true); // cut between characters, extension kept
  expect(sanitizeFilename('con .bin')).toBeUndefined();
});

describe('through the API', () => {
  let files: FileServer;
  let srv: TestServer;
  afterEach(async () => {
    await srv?.stop();
    await files?.close();
  });

  test('a Content-Disposition name with a bidi override or a side-file suffix is saved under a clean name', async () => {
    files = await startFileServer();
    srv = await startTestServer();
    const f = files.addFile('/dl', { size: 1000, headers: { 'Content-Disposition': "attachment; filename*=UTF-8''victim.bin.part.json" } });
    const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
    expect(res.status).toBe(202);
    expect(res.body.download.dest).toBe('loras/victim.bin');
    expect((await settled(srv, res.body.download.id)).status).toBe('completed');

    const g = files.addFile('/dl2', { size: 1000, headers: { 'Content-Disposition': "attachment; filename*=UTF-8''x%E2%80%AEsrotnefas.exe" } });
    const res2 = await srv.api('POST', '/api/downloads', { url: g.url, folder: 'loras' });
    expect(res2.body.download.dest).toBe('loras/xsrotnefas.exe');
  });

  test('a name too long in bytes is a 400 that names no server path', async () => {
    files = await startFileServer();
    srv = await startTestServer();
    const f = files.addFile('/e.bin', { size: 1000 });
    const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras', filename: '\u{1F600}'.repeat(61) + '.bin' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('INVALID_PATH');
    expect(JSON.stringify(res.body)).not.toContain(srv.modelsDir);
  });
});
