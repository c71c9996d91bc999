/**
 * The HTTP client through the whole server. Behind a proxy: HTTP_PROXY / NO_PROXY from its environment reach the
 * downloads (a real tinyproxy between the server and the file's host), and the proxy's credentials
 * appear in no answer, entry or log line.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { settled, startTestServer, type TestServer } from '../helpers/harness';
import { startTinyproxy, type Tinyproxy } from '../helpers/tinyproxy';

let files: FileServer;
let proxy: Tinyproxy;
let srv: TestServer;
afterEach(async () => {
  await srv?.stop();
  await proxy?.stop();
  await files?.close();
});

test('a download goes through HTTP_PROXY; NO_PROXY bypasses it; the proxy password is shown nowhere', async () => {
  files = await startFileServer();
  const f = files.addFile('/via-proxy.bin', { size: 500_000 });
  proxy = await startTinyproxy({ connectPorts: [], auth: { user: 'bob', password: 'pr0xy-Secret' } });
  srv = await startTestServer({ HTTP_PROXY: proxy.url, NO_PROXY: '' });
  const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
  expect(res.status).toBe(202);
  expect((await settled(srv, res.body.download.id, 20_000)).status).toBe('completed');
  expect((await fs.readFile(path.join(srv.modelsDir, 'loras', 'via-proxy.bin'))).length).toBe(f.size);
  expect(proxy.log()).toContain('/via-proxy.bin');
  await srv.stop();

  // NO_PROXY names the host: straight to it, the proxy never asked.
  const g = files.addFile('/direct.bin', { size: 1000 });
  srv = await startTestServer({ HTTP_PROXY: proxy.url, NO_PROXY: '127.0.0.1' });
  const direct = await srv.api('POST', '/api/downloads', { url: g.url, folder: 'loras' });
  expect((await settled(srv, direct.body.download.id, 20_000)).status).toBe('completed');
  expect(proxy.log()).not.toContain('/direct.bin');
  const everything = JSON.stringify([srv.log.lines, srv.store.all(), (await srv.api('GET', '/status')).body]);
  expect(everything).not.toContain('pr0xy-Secret');
});

test('a resume answered by an honest 206 of a file that changed size upstream (no ETag, no date) starts over: never spliced', async () => {
  files = await startFileServer();
  const f = files.addFile('/changing.bin', { size: 4 * 1024 * 1024, throttle: 2 * 1024 * 1024, etag: false, lastModified: false });
  srv = await startTestServer({ CONNECTIONS: '1' });
  const id = (await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' })).body.download.id as string;
  const { waitFor } = await import('../helpers/harness');
  await waitFor(() => (srv.store.getById(id)?.downloaded ?? 0) > 1024 * 1024, 'a first MiB');
  await srv.api('POST', `/api/downloads/${id}/pause`);
  await waitFor(() => !srv.downloader.isLive('loras/changing.bin'), 'the pause');
  // Upstream, the file is replaced by a longer one: same name, no validator to tell.
  const next = files.setFileOptions('/changing.bin', { size: 5 * 1024 * 1024, throttle: 0, etag: false, lastModified: false });
  await srv.api('POST', `/api/downloads/${id}/resume`);
  const e = await settled(srv, id, 20_000);
  const data = await fs.readFile(path.join(srv.modelsDir, 'loras', 'changing.bin')).catch(() => undefined);
  if (e.status === 'completed') expect(data!.equals(next.data)).toBe(true);
  else expect(data).toBeUndefined();
});

test('a redirect to the server\'s own API is refused: /status is never saved into the models folder', async () => {
  files = await startFileServer();
  srv = await startTestServer();
  for (const target of [`${srv.url}/status`, `${srv.url.replace('127.0.0.1', 'localhost')}/api/catalog`]) {
    const name = target.endsWith('status') ? 'status.json' : 'catalog.json';
    files.route(`/to-${name}`, (_req, res) => {
      res.writeHead(302, { Location: target });
      res.end();
    });
    const res = await srv.api('POST', '/api/downloads', { url: `${files.url}/to-${name}`, folder: 'configs', filename: name });
    expect(res.status).toBe(202);
    const e = await settled(srv, res.body.download.id, 20_000);
    expect(e).toMatchObject({ status: 'error', error: { code: 'SELF_ADDRESS' } });
    await expect(fs.stat(path.join(srv.modelsDir, 'configs', name))).rejects.toMatchObject({ code: 'ENOENT' });
  }
});
