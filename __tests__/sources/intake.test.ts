import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ErrorMessage } from '../../server/protocol/wire';
import { nameFromDisposition } from '../../server/sources/intake';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { connectWs, startTestServer, waitFor, type TestServer } from '../helpers/harness';

let files: FileServer;
let srv: TestServer;
beforeEach(async () => {
  files = await startFileServer();
  srv = await startTestServer();
});
afterEach(async () => {
  await srv.stop();
  await files.close();
});

const gets = (p: string): number => files.requests.filter((r) => r.path === p).length;

test('a URL ending in a file name is taken as it is, without asking the server first', async () => {
  const f = files.addFile('/models/sdxl-lightning.safetensors', { size: 5000, contentDisposition: 'attachment; filename="other.bin"' });
  const res = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'checkpoints' });
  expect(res.body.download.dest).toBe('checkpoints/sdxl-lightning.safetensors');
  await waitFor(() => srv.store.getById(res.body.download.id)?.status === 'completed', 'completion');
  expect(gets('/models/sdxl-lightning.safetensors')).toBe(1);
});

test('a URL without a file name is named by Content-Disposition, then by the URL it redirects to, then by its own path', async () => {
  files.addFile('/dl', { size: 100, contentDisposition: "attachment; filename*=UTF-8''%E6%A8%A1%E5%9E%8B.safetensors" });
  files.addFile('/releases/upscaler-x4.pth', { size: 100 });
  files.fault('/latest', { redirectTo: `${files.url}/releases/upscaler-x4.pth` }, { redirectTo: `${files.url}/releases/upscaler-x4.pth` });
  files.addFile('/plain', { size: 100 });
  const named = async (p: string): Promise<string> => (await srv.api('POST', '/api/downloads', { url: files.url + p, folder: 'loras' })).body.download.dest;
  expect(await named('/dl')).toBe('loras/模型.safetensors');
  expect(await named('/latest')).toBe('loras/upscaler-x4.pth');
  expect(await named('/plain')).toBe('loras/plain');
  // The probe asked for one byte only.
  expect(files.requests.find((r) => r.path === '/dl')?.range).toBe('bytes=0-0');
});

test('a folder that is refused is refused before anything goes over the network', async () => {
  files.addFile('/dl', { size: 100, contentDisposition: 'attachment; filename="a.bin"' });
  const res = await srv.api('POST', '/api/downloads', { url: `${files.url}/dl`, folder: '../outside' });
  expect(res.status).toBe(400);
  expect(res.body.error.code).toBe('INVALID_PATH');
  expect(files.requests).toEqual([]);
});

test('a host that cannot be reached to ask the name answers 502 with why; over the WebSocket, an error reply', async () => {
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const res = await srv.api('POST', '/api/downloads', { url: `http://127.0.0.1:${port}/download`, folder: 'loras' });
  expect(res).toEqual({ status: 502, body: { error: { code: 'ECONNREFUSED', message: expect.stringContaining("for the file's name") } } });

  files.addFile('/gone', { size: 10 });
  files.fault('/gone', { status: 410 });
  const sock = await connectWs(srv.url);
  sock.ws.send(JSON.stringify({ type: 'start', request_id: 'x', url: `${files.url}/gone`, folder: 'loras' }));
  const reply = (await sock.next((m) => m.type === 'error')) as ErrorMessage;
  expect(reply).toEqual({ type: 'error', request_id: 'x', error: { code: 'HTTP_410', message: expect.stringContaining('410') } });
  expect(srv.store.all()).toEqual([]);
  await sock.close();
});

test.each([
  ['attachment; filename="model.safetensors"', 'model.safetensors'],
  ["attachment; filename=\"fallback.bin\"; filename*=UTF-8''%C3%A9t%C3%A9.safetensors", 'été.safetensors'],
  ['attachment; filename="../../evil.sh"', 'evil.sh'],
  ['attachment; filename="..\\\\..\\\\win.bat"', 'win.bat'],
  ['attachment; filename=plain name.ckpt', 'plain name.ckpt'],
  ['attachment; filename=".hidden"', 'hidden'],
  ['attachment; filename="CON"', undefined],
  ['inline', undefined],
  [undefined, undefined],
])('Content-Disposition %j names %j', (header, expected) => {
  expect(nameFromDisposition(header)).toBe(expected);
});
