/**
 * Hostile input, over HTTP and the WebSocket: every request is refused with a 4xx and
 * `{error:{code,message}}` (a WebSocket `error` message, or close 1009 for an oversize frame), and
 * afterwards the server still answers /healthz, no entry changed (`seq` is the same), every file
 * under the temp folder is byte-for-byte what it was (the status file and the catalog included; no
 * file created anywhere), and the process fetched nothing.
 *
 * One server serves the whole table. Its models folder is three levels below the temp folder, so a
 * `..` that got through would create a file inside the walked tree rather than somewhere unseen;
 * absolute paths point into the tree for the same reason. Its downloads are routed to a closed
 * port, so even a refusal that regressed could not reach a real host.
 *
 * How these were checked to fail without their protection: the 405 row failed (a text/plain body)
 * until app.ts answered it with the error shape; the `[::ffff:169.254.169.254]` rows failed before
 * url-policy.ts used a BlockList; the path rows fail when `resolveDest` skips `checkSegment` (a
 * download is created: `seq` moves and the tree changes); the size rows fail with MAX_BODY_BYTES
 * and maxPayload raised to 1 MiB.
 */
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import WebSocket from 'ws';
import type { Entry, ServerMessage } from '../../server/protocol/wire';
import { connectWs, startTestServer, tempDir, type TestServer, type TestSocket } from '../helpers/harness';
import { rawRequest, snapshotTree, treeDiff, watchOutgoing, type OutgoingLog } from './helpers';

let root: string;
let cleanup: () => Promise<void>;
let srv: TestServer;
let sock: TestSocket;
let outgoing: OutgoingLog;
let catalogModel: { set: string; id: string; model: Record<string, unknown> };

const now = Date.now() / 1000;
const seedEntry = (over: Partial<Entry>): Entry => ({
  id: 'x', dest: 'loras/x.bin', folder: 'loras', filename: 'x.bin', url: 'http://127.0.0.1:9/x.bin', status: 'completed',
  progress: 100, downloaded: 4, file_size: 4, speed: 0, eta: null, start_time: now, timestamp: now, completion_time: now, attempts: 1, ...over,
});

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('md-hostile-'));
  const dir = path.join(root, 'a', 'b');
  await fs.mkdir(path.join(dir, 'models', 'loras'), { recursive: true });
  await fs.writeFile(path.join(dir, 'models', 'loras', 'done.bin'), 'done');
  const done = seedEntry({ id: 'done01', dest: 'loras/done.bin', filename: 'done.bin' });
  const paused = seedEntry({ id: 'paused01', dest: 'loras/paused.bin', filename: 'paused.bin', status: 'paused', progress: 0, downloaded: 0, file_size: null });
  delete paused.completion_time;
  await fs.writeFile(path.join(dir, 'status.json'), JSON.stringify({ [done.dest]: done, [paused.dest]: paused }, null, 2));
  srv = await startTestServer({}, { dir, downloader: { resolveSource: () => ({ url: new URL('http://127.0.0.1:9/never') }) } });
  await srv.store.flush();
  sock = await connectWs(srv.url);
  await sock.next((m) => m.type === 'snapshot');
  const catalog = (await srv.api('GET', '/api/catalog')).body as Record<string, { models: Record<string, Record<string, unknown>> }>;
  const [set, { models }] = Object.entries(catalog)[0]!;
  const [id, model] = Object.entries(models)[0]!;
  delete model.on_disk;
  catalogModel = { set, id, model };
  outgoing = watchOutgoing((host) => host !== `127.0.0.1:${srv.port}`);
});

afterAll(async () => {
  outgoing.stop();
  await sock?.close();
  await srv?.stop();
  await cleanup?.();
});

/** What every row checks around its request: nothing changed, nothing fetched, still serving. */
async function unchangedAround(request: () => Promise<void>): Promise<void> {
  const before = await snapshotTree(root);
  const seq = srv.store.seq;
  const requestsBefore = outgoing.requests.length;
  await request();
  expect((await rawRequest(srv.url, { path: '/healthz' })).json).toEqual({ ok: true });
  expect(srv.store.seq).toBe(seq);
  await srv.store.flush();
  expect(treeDiff(before, await snapshotTree(root))).toEqual([]);
  const own = `127.0.0.1:${srv.port}`;
  expect(outgoing.requests.slice(requestsBefore).filter((r) => !r.startsWith(`${own} `))).toEqual([]);
}

const json = (value: unknown): string => JSON.stringify(value);
const add = (body: Record<string, unknown>): string => json({ url: 'http://127.0.0.1:9/model.safetensors', folder: 'loras', ...body });
const ok = 'http://127.0.0.1:9/model.safetensors';
const deep = `{"url":${'['.repeat(20_000)}${']'.repeat(20_000)},"folder":"loras"}`;

interface HttpRow {
  method?: string;
  path?: string;
  body?: string | Buffer | Buffer[];
  headers?: Record<string, string>;
  status: number;
  code: string | RegExp;
}

// prettier-ignore
const httpRows: Array<[string, HttpRow]> = [
  // Bodies that are not a JSON object, or too big
  ['a body that is not JSON', { body: '{nope', status: 400, code: 'INVALID_JSON' }],
  ['a JSON array', { body: '[1,2]', status: 400, code: 'INVALID_BODY' }],
  ['a JSON string', { body: '"http://127.0.0.1:9/a.bin"', status: 400, code: 'INVALID_BODY' }],
  ['JSON null', { body: 'null', status: 400, code: 'INVALID_BODY' }],
  ['a JSON number', { body: '42', status: 400, code: 'INVALID_BODY' }],
  ['an XML body', { body: '<url>x</url>', headers: { 'Content-Type': 'application/xml' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' }],
  ['a multipart body', { body: '--b\r\n\r\nx\r\n--b--', headers: { 'Content-Type': 'multipart/form-data; boundary=b' }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' }],
  ['a body over 64 KiB', { body: add({ pad: 'x'.repeat(70_000) }), status: 413, code: 'BODY_TOO_LARGE' }],
  ['a chunked body over 64 KiB (no Content-Length)', { body: [Buffer.from('{"pad":"'), Buffer.alloc(40_000, 'x'), Buffer.alloc(40_000, 'x'), Buffer.from('"}')], headers: { 'Transfer-Encoding': 'chunked' }, status: 413, code: 'BODY_TOO_LARGE' }],
  ['a Content-Length of 1 MB (body never sent)', { body: '{}', headers: { 'Content-Length': '1000000' }, status: 413, code: 'BODY_TOO_LARGE' }],
  ['JSON nested 20,000 deep', { body: deep, status: 400, code: /^INVALID_(URL|JSON)$/ }],
  ['a body that is not UTF-8', { body: Buffer.from([0x7b, 0x22, 0x75, 0x72, 0x6c, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), status: 400, code: 'INVALID_URL' }],
  ['fields smuggled in __proto__', { body: `{"url":"${ok}","__proto__":{"folder":"loras","filename":"p.bin"}}`, status: 400, code: 'INVALID_FOLDER' }],
  ['a form body with a file: URL', { body: 'url=file%3A%2F%2F%2Fetc%2Fpasswd&folder=loras', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, status: 400, code: 'UNSUPPORTED_URL' }],
  // Missing fields and wrong types
  ['no url', { body: json({ folder: 'loras' }), status: 400, code: 'INVALID_URL' }],
  ['a number as url', { body: add({ url: 42 }), status: 400, code: 'INVALID_URL' }],
  ['an object as url', { body: add({ url: { href: ok } }), status: 400, code: 'INVALID_URL' }],
  ['an empty url', { body: add({ url: '' }), status: 400, code: 'INVALID_URL' }],
  ['a url that is not a URL', { body: add({ url: 'not a url' }), status: 400, code: 'INVALID_URL' }],
  ['no folder', { body: json({ url: ok }), status: 400, code: 'INVALID_FOLDER' }],
  ['a number as folder', { body: add({ folder: 7 }), status: 400, code: 'INVALID_FOLDER' }],
  ['an array as folder', { body: add({ folder: ['loras'] }), status: 400, code: 'INVALID_FOLDER' }],
  ['a number as filename', { body: add({ filename: 7 }), status: 400, code: 'INVALID_FILENAME' }],
  ['a sha256 that is not hex', { body: add({ sha256: 'z'.repeat(64) }), status: 400, code: 'INVALID_SHA256' }],
  ['a sha256 of 63 digits', { body: add({ sha256: 'a'.repeat(63) }), status: 400, code: 'INVALID_SHA256' }],
  ['a number as sha256', { body: add({ sha256: 12 }), status: 400, code: 'INVALID_SHA256' }],
  ['a string as overwrite', { body: add({ overwrite: 'yes' }), status: 400, code: 'INVALID_BODY' }],
  // URLs
  ['a URL over 8 KiB', { body: add({ url: `http://127.0.0.1:9/${'a'.repeat(8200)}.bin` }), status: 400, code: 'URL_TOO_LONG' }],
  ['a file: URL', { body: add({ url: 'file:///etc/passwd', filename: 'passwd.bin' }), status: 400, code: 'UNSUPPORTED_URL' }],
  ['an ftp: URL', { body: add({ url: 'ftp://127.0.0.1:9/a.bin' }), status: 400, code: 'UNSUPPORTED_URL' }],
  ['a data: URL', { body: add({ url: 'data:application/octet-stream;base64,aGVsbG8=', filename: 'd.bin' }), status: 400, code: 'UNSUPPORTED_URL' }],
  ['a javascript: URL', { body: add({ url: 'javascript:alert(1)', filename: 'j.bin' }), status: 400, code: 'UNSUPPORTED_URL' }],
  ['a URL with a user and password', { body: add({ url: 'http://user:pass@127.0.0.1:9/a.bin' }), status: 400, code: 'URL_CREDENTIALS' }],
  ['a URL with a user name', { body: add({ url: 'http://token@127.0.0.1:9/a.bin' }), status: 400, code: 'URL_CREDENTIALS' }],
  ['the metadata address', { body: add({ url: 'http://169.254.169.254/latest/meta-data', filename: 'm.bin' }), status: 400, code: 'FORBIDDEN_ADDRESS' }],
  ['a link-local IPv6 address', { body: add({ url: 'http://[fe80::1]/a.bin' }), status: 400, code: 'FORBIDDEN_ADDRESS' }],
  ['the metadata address as IPv4-mapped IPv6', { body: add({ url: 'http://[::ffff:169.254.169.254]/a.bin' }), status: 400, code: 'FORBIDDEN_ADDRESS' }],
  ['the metadata address as one number', { body: add({ url: 'http://2852039166/a.bin' }), status: 400, code: 'FORBIDDEN_ADDRESS' }],
  // Destinations that would leave MODELS_DIR or are not a plain file name
  ['folder ..', { body: add({ folder: '..' }), status: 400, code: 'INVALID_PATH' }],
  ['folder loras/../../..', { body: add({ folder: 'loras/../../..', filename: 'escape.bin' }), status: 400, code: 'INVALID_PATH' }],
  ['an absolute folder', { body: add({ folder: '/tmp', filename: 'escape.bin' }), status: 400, code: 'INVALID_PATH' }],
  ['an absolute filename', { body: add({ filename: '/etc/passwd' }), status: 400, code: 'INVALID_PATH' }],
  ['a filename with ..', { body: add({ filename: '../../../escape.bin' }), status: 400, code: 'INVALID_PATH' }],
  ['a filename ..', { body: add({ filename: '..' }), status: 400, code: 'INVALID_PATH' }],
  ['a filename .', { body: add({ filename: '.' }), status: 400, code: 'INVALID_PATH' }],
  ['a NUL in the filename', { body: add({ filename: 'a\u0000.bin' }), status: 400, code: 'INVALID_PATH' }],
  ['a NUL in the folder', { body: add({ folder: 'loras\u0000x' }), status: 400, code: 'INVALID_PATH' }],
  ['backslashes in the filename', { body: add({ filename: '..\\..\\..\\escape.bin' }), status: 400, code: 'INVALID_PATH' }],
  ['backslashes in the folder', { body: add({ folder: 'loras\\..\\..' }), status: 400, code: 'INVALID_PATH' }],
  ['a newline in the filename', { body: add({ filename: 'a\nb.bin' }), status: 400, code: 'INVALID_PATH' }],
  ['an escape sequence in the filename', { body: add({ filename: '\u001b[31mred.bin' }), status: 400, code: 'INVALID_PATH' }],
  ['DEL in the filename', { body: add({ filename: 'a\u007f.bin' }), status: 400, code: 'INVALID_PATH' }],
  ['the reserved name CON', { body: add({ filename: 'CON' }), status: 400, code: 'INVALID_PATH' }],
  ['the reserved name nul.safetensors', { body: add({ filename: 'nul.safetensors' }), status: 400, code: 'INVALID_PATH' }],
  ['the reserved name COM1 as folder', { body: add({ folder: 'loras/COM1' }), status: 400, code: 'INVALID_PATH' }],
  ['a hidden filename', { body: add({ filename: '.bashrc' }), status: 400, code: 'INVALID_PATH' }],
  ['a filename ending in .part', { body: add({ filename: 'done.bin.part' }), status: 400, code: 'INVALID_PATH' }],
  ['a drive letter', { body: add({ folder: 'C:\\Windows' }), status: 400, code: 'INVALID_PATH' }],
  ['a filename of 300 characters', { body: add({ filename: `${'a'.repeat(300)}.bin` }), status: 400, code: 'INVALID_PATH' }],
  ['an empty folder', { body: add({ folder: '' }), status: 400, code: 'INVALID_FOLDER' }],
  ['an unknown top folder', { body: add({ folder: 'etc' }), status: 400, code: 'UNKNOWN_FOLDER' }],
  ['an empty folder part', { body: add({ folder: 'loras//flux' }), status: 400, code: 'INVALID_PATH' }],
  // Unknown ids, and commands that do not fit the state
  ['an unknown id', { method: 'GET', path: '/api/downloads/nope', status: 404, code: 'NOT_FOUND' }],
  ['pause of an unknown id', { path: '/api/downloads/nope/pause', status: 404, code: 'NOT_FOUND' }],
  ['retry of an unknown id', { path: '/api/downloads/nope/retry', status: 404, code: 'NOT_FOUND' }],
  ['delete of an unknown id', { method: 'DELETE', path: '/api/downloads/nope', status: 404, code: 'NOT_FOUND' }],
  ['an id with encoded slashes', { method: 'GET', path: '/api/downloads/..%2F..%2Fstatus', status: 404, code: 'NOT_FOUND' }],
  ['pause of a completed download', { path: '/api/downloads/done01/pause', status: 409, code: 'INVALID_STATE' }],
  ['resume of a completed download', { path: '/api/downloads/done01/resume', status: 409, code: 'INVALID_STATE' }],
  ['cancel of a completed download', { path: '/api/downloads/done01/cancel', status: 409, code: 'INVALID_STATE' }],
  ['retry of a completed download', { path: '/api/downloads/done01/retry', status: 409, code: 'INVALID_STATE' }],
  ['pause of a paused download', { path: '/api/downloads/paused01/pause', status: 409, code: 'INVALID_STATE' }],
  ['retry of a paused download', { path: '/api/downloads/paused01/retry', status: 409, code: 'INVALID_STATE' }],
  ['delete of a paused download', { method: 'DELETE', path: '/api/downloads/paused01', status: 409, code: 'ACTIVE' }],
  ['a second download to a paused destination', { body: add({ filename: 'paused.bin' }), status: 409, code: 'ALREADY_ACTIVE' }],
  // Routes and methods
  ['a method the route does not have', { method: 'PUT', body: add({}), status: 405, code: 'METHOD_NOT_ALLOWED' }],
  ['a method no route has', { method: 'PROPFIND', status: 501, code: 'NOT_IMPLEMENTED' }],
  ['an unknown API route', { path: '/api/nothing', status: 404, code: 'NOT_FOUND' }],
  ['a static path leaving the page folder', { method: 'GET', path: '/../../../../etc/passwd', status: 403, code: 'HTTP_403' }],
  ['an encoded static path leaving the page folder', { method: 'GET', path: '/%2e%2e/%2e%2e/package.json', status: 403, code: 'HTTP_403' }],
  ['a NUL in a static path', { method: 'GET', path: '/index.html%00.js', status: 400, code: 'HTTP_400' }],
  // The catalog: paths leaving MODELS_DIR, URLs that are not plain http(s)
  ['a catalog model whose path has ..', { path: '/api/catalog/hostile/models', body: json({ name: 'x', url: ok, path: '../../../escape.safetensors' }), status: 400, code: 'INVALID_PATH' }],
  ['a catalog model whose path climbs out of a folder', { path: '/api/catalog/hostile/models', body: json({ name: 'x', url: ok, path: 'loras/../../../../escape.bin' }), status: 400, code: 'INVALID_PATH' }],
  ['a catalog model with an absolute path', { path: '/api/catalog/hostile/models', body: json({ name: 'x', url: ok, path: '/etc/cron.d/x' }), status: 400, code: /^INVALID_(PATH|FOLDER)$/ }],
  ['a catalog model with a backslash path', { path: '/api/catalog/hostile/models', body: json({ name: 'x', url: ok, path: 'loras/..\\..\\x.bin' }), status: 400, code: 'INVALID_PATH' }],
  ['a catalog model with a file: URL', { path: '/api/catalog/hostile/models', body: json({ name: 'x', url: 'file:///etc/passwd', path: 'loras/x.bin' }), status: 400, code: 'UNSUPPORTED_URL' }],
  ['a catalog model with a token in its URL', { path: '/api/catalog/hostile/models', body: json({ name: 'x', url: `${ok}?token=abc`, path: 'loras/x.bin' }), status: 400, code: 'URL_CREDENTIALS' }],
  ['a catalog model with a metadata URL', { path: '/api/catalog/hostile/models', body: json({ name: 'x', url: 'http://169.254.169.254/x.bin', path: 'loras/x.bin' }), status: 400, code: 'FORBIDDEN_ADDRESS' }],
  ['a catalog set id with encoded slashes', { path: '/api/catalog/..%2F..%2Fx/models', body: json({ name: 'x', url: ok, path: 'loras/x.bin' }), status: 400, code: 'INVALID_ID' }],
  ['a catalog set id __proto__', { path: '/api/catalog/__proto__/models', body: json({ name: 'x', url: ok, path: 'loras/x.bin' }), status: 400, code: 'INVALID_ID' }],
  ['an edit of a catalog model to a path outside', { method: 'PUT', path: 'CATALOG_MODEL', body: 'CATALOG_ESCAPE', status: 400, code: 'INVALID_PATH' }],
  ['a delete of an unknown catalog model', { method: 'DELETE', path: '/api/catalog/nope/models/nope', status: 404, code: /NOT_FOUND/ }],
  ['a catalog download of a set id with ..', { path: '/download', body: json({ model_set: '../../x', model_id: 'a' }), status: 400, code: 'INVALID_ID' }],
  ['a catalog download of an unknown model', { path: '/download', body: json({ model_set: 'nope', model_id: 'nope' }), status: 404, code: /NOT_FOUND/ }],
  ['the seed form route with a path outside', { path: '/add_model', body: 'model_set=hostile&model_id=x&name=x&url=http%3A%2F%2F127.0.0.1%3A9%2Fx.bin&path=..%2F..%2Fx.bin', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, status: 400, code: 'INVALID_PATH' }],
];

describe('HTTP', () => {
  test.each(httpRows)('%s', async (_name, row) => {
    let { path: urlPath = '/api/downloads', body } = row;
    if (urlPath === 'CATALOG_MODEL') urlPath = `/api/catalog/${catalogModel.set}/models/${catalogModel.id}`;
    if (body === 'CATALOG_ESCAPE') body = json({ ...catalogModel.model, path: '../../../escape.safetensors' });
    await unchangedAround(async () => {
      const res = await rawRequest(srv.url, {
        method: row.method ?? 'POST',
        path: urlPath,
        headers: { ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...row.headers },
        ...(body !== undefined ? { body } : {}),
      });
      expect(res.status).toBe(row.status);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.json).toMatchObject({ error: { code: row.code, message: expect.stringMatching(/\S/) } });
      expect(Object.keys(res.json).filter((k) => k !== 'error' && k !== 'download')).toEqual([]);
      if (res.status === 405) expect(res.headers.allow).toMatch(/POST/);
    });
    // Nothing leaked into Object.prototype from a smuggled __proto__.
    expect(({} as Record<string, unknown>).folder).toBeUndefined();
  });
});

interface WsRow {
  send: string | Buffer;
  /** The request_id the answer must carry (null: none could be read). */
  requestId: string | null;
  code: string;
}

const cmd = (type: string, requestId: string, rest: Record<string, unknown> = {}): string => json({ type, request_id: requestId, ...rest });
const start = (requestId: string, rest: Record<string, unknown>): string => cmd('start', requestId, { url: ok, folder: 'loras', ...rest });

// prettier-ignore
const wsRows: Array<[string, WsRow]> = [
  ['a message that is not JSON', { send: 'hello', requestId: null, code: 'INVALID_JSON' }],
  ['a binary frame', { send: Buffer.from([0, 1, 2, 0xff]), requestId: null, code: 'INVALID_MESSAGE' }],
  ['a JSON array', { send: '[{"type":"clear_completed"}]', requestId: null, code: 'INVALID_MESSAGE' }],
  ['JSON null', { send: 'null', requestId: null, code: 'INVALID_MESSAGE' }],
  ['a JSON number', { send: '42', requestId: null, code: 'INVALID_MESSAGE' }],
  ['an unknown message type', { send: cmd('explode', 'w1'), requestId: 'w1', code: 'UNKNOWN_COMMAND' }],
  ['a message without a type', { send: json({ request_id: 'w2', id: 'done01' }), requestId: 'w2', code: 'UNKNOWN_COMMAND' }],
  ['type __proto__', { send: cmd('__proto__', 'w3'), requestId: 'w3', code: 'UNKNOWN_COMMAND' }],
  ['type constructor', { send: cmd('constructor', 'w4'), requestId: 'w4', code: 'UNKNOWN_COMMAND' }],
  ['a request_id of 1000 characters', { send: cmd('explode', 'r'.repeat(1000)), requestId: null, code: 'UNKNOWN_COMMAND' }],
  ['start with a file: URL', { send: start('w5', { url: 'file:///etc/passwd', filename: 'p.bin' }), requestId: 'w5', code: 'UNSUPPORTED_URL' }],
  ['start with the metadata address', { send: start('w6', { url: 'http://169.254.169.254/latest/meta-data', filename: 'm.bin' }), requestId: 'w6', code: 'FORBIDDEN_ADDRESS' }],
  ['start with the metadata address as IPv4-mapped IPv6', { send: start('w7', { url: 'http://[::ffff:169.254.169.254]/m.bin' }), requestId: 'w7', code: 'FORBIDDEN_ADDRESS' }],
  ['start with credentials in the URL', { send: start('w8', { url: 'http://u:p@127.0.0.1:9/a.bin' }), requestId: 'w8', code: 'URL_CREDENTIALS' }],
  ['start with a URL over 8 KiB', { send: start('w9', { url: `http://127.0.0.1:9/${'a'.repeat(8200)}.bin` }), requestId: 'w9', code: 'URL_TOO_LONG' }],
  ['start without a URL', { send: cmd('start', 'w10', { folder: 'loras' }), requestId: 'w10', code: 'INVALID_URL' }],
  ['start into folder ..', { send: start('w11', { folder: '../..', filename: 'escape.bin' }), requestId: 'w11', code: 'INVALID_PATH' }],
  ['start with a NUL in the filename', { send: start('w12', { filename: 'a\u0000b.bin' }), requestId: 'w12', code: 'INVALID_PATH' }],
  ['start with a backslash in the filename', { send: start('w13', { filename: '..\\escape.bin' }), requestId: 'w13', code: 'INVALID_PATH' }],
  ['start with fields smuggled in __proto__', { send: `{"type":"start","request_id":"w14","url":"${ok}","__proto__":{"folder":"loras"}}`, requestId: 'w14', code: 'INVALID_FOLDER' }],
  ['start to a paused destination', { send: start('w15', { filename: 'paused.bin' }), requestId: 'w15', code: 'ALREADY_ACTIVE' }],
  ['pause of an unknown id', { send: cmd('pause', 'w16', { id: 'nope' }), requestId: 'w16', code: 'NOT_FOUND' }],
  ['pause with an object as id', { send: cmd('pause', 'w17', { id: { $ne: null } }), requestId: 'w17', code: 'NOT_FOUND' }],
  ['cancel without an id', { send: cmd('cancel', 'w18'), requestId: 'w18', code: 'NOT_FOUND' }],
  ['pause of a completed download', { send: cmd('pause', 'w19', { id: 'done01' }), requestId: 'w19', code: 'INVALID_STATE' }],
  ['resume of a completed download', { send: cmd('resume', 'w20', { id: 'done01' }), requestId: 'w20', code: 'INVALID_STATE' }],
  ['cancel of a completed download', { send: cmd('cancel', 'w21', { id: 'done01' }), requestId: 'w21', code: 'INVALID_STATE' }],
  ['retry of a paused download', { send: cmd('retry', 'w22', { id: 'paused01' }), requestId: 'w22', code: 'INVALID_STATE' }],
];

describe('WebSocket', () => {
  test.each(wsRows)('%s', async (_name, row) => {
    await unchangedAround(async () => {
      const from = sock.messages.length;
      sock.ws.send(row.send, { binary: Buffer.isBuffer(row.send) });
      const reply = await sock.next((m) => sock.messages.indexOf(m) >= from && (m.type === 'error' || m.type === 'ack'));
      expect(reply).toEqual({ type: 'error', request_id: row.requestId, error: { code: row.code, message: expect.stringMatching(/\S/) } });
      // The command was answered with an error and nothing else: no update, no snapshot.
      expect(sock.messages.slice(from)).toEqual([reply]);
    });
    expect(sock.ws.readyState).toBe(WebSocket.OPEN);
  });

  const closes = async (send: (ws: WebSocket) => void): Promise<void> => {
    await unchangedAround(async () => {
      const big = await connectWs(srv.url);
      const closed = once(big.ws, 'close') as Promise<[number, Buffer]>;
      send(big.ws);
      const [code] = await closed;
      expect(code).toBe(1009); // message too big
      expect(big.messages.filter((m: ServerMessage) => m.type !== 'snapshot')).toEqual([]);
    });
    await waitForClients(1); // only the table's own connection is left
  };
  const waitForClients = async (n: number): Promise<void> => {
    for (let i = 0; i < 200 && srv.hub.stats().length !== n; i++) await new Promise((r) => setTimeout(r, 10));
    expect(srv.hub.stats()).toHaveLength(n);
  };

  test('a message over 64 KiB closes that connection with 1009', async () => {
    await closes((ws) => ws.send(start('big', { pad: 'x'.repeat(70 * 1024) })));
  });

  test('a message over 64 KiB sent in fragments closes that connection with 1009', async () => {
    await closes((ws) => {
      ws.send(Buffer.alloc(40 * 1024, 'x'), { fin: false, binary: false });
      ws.send(Buffer.alloc(40 * 1024, 'x'), { fin: true, binary: false });
    });
  });

  test('a binary frame over 64 KiB closes that connection with 1009', async () => {
    await closes((ws) => ws.send(Buffer.alloc(65 * 1024 + 1), { binary: true }));
  });
});

test('the table has at least 40 rows', () => {
  expect(httpRows.length + wsRows.length + 3).toBeGreaterThanOrEqual(40);
});
