/**
 * The service's own files inside MODELS_DIR (STATUS_FILE and CATALOG_FILE under models/configs/,
 * as a pod that keeps everything on one volume would set them): no download, `overwrite` or not,
 * may be written over them, their lock or their temp files; the start-up log says they are there.
 *
 * Checked to fail before: a download of `configs/catalog.json` with overwrite replaced the catalog.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, tempDir, type TestServer } from '../helpers/harness';

let files: FileServer;
let srv: TestServer;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await srv?.stop();
  await files?.close();
  for (const c of cleanups.splice(0)) await c();
});

test.each([
  ['the catalog', 'catalog.json'],
  ['the status file', 'status.json'],
  ['the status file\'s lock', 'status.json.lock'],
  ['a temp name of the status file', 'status.json.123456'],
])('a download over %s is refused, with overwrite too', async (_what, name) => {
  const { dir, cleanup } = await tempDir('md-own-');
  cleanups.push(cleanup);
  const models = path.join(dir, 'models');
  await fs.mkdir(path.join(models, 'configs'), { recursive: true });
  files = await startFileServer();
  const f = files.addFile('/evil.bin', { size: 100 });
  srv = await startTestServer(
    { MODELS_DIR: models, STATUS_FILE: path.join(models, 'configs', 'status.json'), CATALOG_FILE: path.join(models, 'configs', 'catalog.json') },
    { dir },
  );
  expect(srv.log.lines.some((l) => /configs\/status\.json, configs\/catalog\.json inside MODELS_DIR/.test(l))).toBe(true);
  const catalogBefore = await fs.readFile(path.join(models, 'configs', 'catalog.json'));
  const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'configs', filename: name, overwrite: true });
  expect(res.status).toBe(400);
  expect(res.body.error.code).toBe('RESERVED_PATH');
  expect(res.body.error.message).not.toContain(dir);
  expect((await fs.readFile(path.join(models, 'configs', 'catalog.json'))).equals(catalogBefore)).toBe(true);
  expect(files.requests).toEqual([]);
});
