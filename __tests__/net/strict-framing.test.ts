import { createAgent, type Agent } from '../../server/net/raw-http';
import { rawServer, type RawServer } from '../helpers/raw-server';
import { describe as show, fetchOurs, type Outcome } from './ours';

// The answers a differential fuzz against llhttp found our client turning into a completed
// download with wrong bytes, and the other leniencies of the issue: each must end in BAD_RESPONSE
// (or, where noted, in exactly the bytes meant), never in other bytes.

let agent: Agent;
const servers: RawServer[] = [];
beforeEach(() => {
  agent = createAgent();
});
afterEach(async () => {
  await agent.close();
  for (const s of servers.splice(0)) s.close();
});

/** Serves `wire` (latin1) to every request, then closes the connection unless `keep`. */
async function serve(wire: string | Buffer, keep = false): Promise<RawServer> {
  const srv = await rawServer((socket) => {
    socket.write(typeof wire === 'string' ? Buffer.from(wire, 'latin1') : wire);
    if (!keep) socket.end();
  });
  servers.push(srv);
  return srv;
}

async function outcomes(wire: string | Buffer, keep = false): Promise<Outcome[]> {
  const srv = await serve(wire, keep);
  return [await fetchOurs(srv.url, agent, 'pump'), await fetchOurs(srv.url, agent, 'stream')];
}

/** Both ways of reading end in BAD_RESPONSE. */
async function refused(wire: string | Buffer, keep = false): Promise<void> {
  for (const o of await outcomes(wire, keep)) {
    if (o.ok) throw new Error(`accepted: ${show(o)}\nfor ${JSON.stringify(wire.toString())}`);
    expect(o.code).toBe('BAD_RESPONSE');
  }
}

const CHUNKED_HELLO = '5\r\nhello\r\n0\r\n\r\n';

test('1. two Transfer-Encoding fields, the second empty, are refused', async () => {
  await refused(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n${CHUNKED_HELLO}`);
  await refused(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n${CHUNKED_HELLO}`);
});

test.each(['\x00', '\x01', '\x7f'])('2. Transfer-Encoding: chunked followed by %j is refused', async (c) => {
  await refused(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked${c}\r\n\r\n${CHUNKED_HELLO}`);
});

test.each([
  ['after a bare LF', `HTTP/1.1 200 OK\r\nX-A: b\nTransfer-Encoding: chunked\r\n\r\n${CHUNKED_HELLO}`],
  ['after a bare LF status line', `HTTP/1.1 200 OK\nTransfer-Encoding: chunked\r\n\r\n${CHUNKED_HELLO}`],
  ['after a bare CR', `HTTP/1.1 200 OK\r\nX-A: b\rTransfer-Encoding: chunked\r\n\r\n${CHUNKED_HELLO}`],
  ['folded', `HTTP/1.1 200 OK\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n${CHUNKED_HELLO}`],
  ['folded with a tab', `HTTP/1.1 200 OK\r\nX-A: b\r\n\tTransfer-Encoding: chunked\r\n\r\n${CHUNKED_HELLO}`],
])('3. the Transfer-Encoding line %s is refused', async (_name, wire) => {
  await refused(wire);
});

test('4. an unknown transfer coding with a list Content-Length is refused', async () => {
  await refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunk\r\nContent-Length: 5, 6\r\n\r\nhello!');
  await refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunk\r\n\r\nhello');
});

test('5. a chunk size one larger than its data is refused (the CR never lands in the file)', async () => {
  await refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello\r\n0\r\n\r\n');
  await refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhello\r\n0\r\n\r\n');
});

test('6. a zero-size chunk followed by more chunks or by lines that are no fields is refused', async () => {
  await refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n5\r\nworld\r\n0\r\n\r\n');
  await refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nnot a field\r\n\r\n');
  await refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: a\r\n folded\r\n\r\n');
});

test('6b. valid trailers are read and dropped; the body is whole', async () => {
  for (const o of await outcomes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c="d e"\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n')) {
    expect(show(o)).toBe(show({ ok: true, body: Buffer.from('hello') }));
  }
});

test('7. a content coding on an answer to Accept-Encoding: identity is refused; so is gzip as a transfer coding', async () => {
  const gz = Buffer.from('1f8b0800000000000003cb48cdc9c90700863ba61005000000', 'hex');
  await refused(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: ${gz.length}\r\n\r\n`), gz]));
  await refused(Buffer.concat([Buffer.from(`HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-${gz.length - 1}/${gz.length}\r\nContent-Encoding: br\r\nContent-Length: ${gz.length}\r\n\r\n`), gz]));
  await refused(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${gz.length.toString(16)}\r\n`), gz, Buffer.from('\r\n0\r\n\r\n')]));
  // identity is no coding.
  for (const o of await outcomes('HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello')) expect(show(o)).toBe(show({ ok: true, body: Buffer.from('hello') }));
});

test('a head that ends in bare LFs is refused at once, not after a stall', async () => {
  const srv = await serve('HTTP/1.1 200 OK\nContent-Length: 5\n\nhello', true); // the server keeps the connection open
  // A deadline: before the fix this waited for the stall timer (30 s).
  const o = await fetchOurs(srv.url, agent, 'pump', AbortSignal.timeout(2000));
  expect(show(o)).toMatch(/^error BAD_RESPONSE: .*bare LF/);
});

test('Transfer-Encoding: identity with a Content-Length is refused, not read until the close', async () => {
  await refused('HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello', true);
});

test('Transfer-Encoding with Content-Length is refused, however reasonable', async () => {
  await refused(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n${CHUNKED_HELLO}`);
});

test.each(['+5', '5 5', '0x5', '-1', '5, 6', '', '5.0', '1234567890123456'])('Content-Length %j is refused', async (cl) => {
  await refused(`HTTP/1.1 200 OK\r\nContent-Length: ${cl}\r\n\r\nhello`);
});

test('identical Content-Length values, repeated or listed, count once', async () => {
  for (const wire of ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello', 'HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello']) {
    for (const o of await outcomes(wire)) expect(show(o)).toBe(show({ ok: true, body: Buffer.from('hello') }));
  }
});

test('a 101 in answer to a GET is an error, not an interim answer to skip', async () => {
  await refused('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
});

test('100, 102, 103 and an unknown 1xx before the answer are skipped', async () => {
  const wire = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 199 Whatever\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello';
  for (const o of await outcomes(wire)) expect(show(o)).toBe(show({ ok: true, body: Buffer.from('hello') }));
});

test('field names like __proto__ and constructor are plain fields of a map with no prototype', async () => {
  const srv = await serve('HTTP/1.1 200 OK\r\n__proto__: x\r\nconstructor: y\r\ntoString: z\r\nContent-Length: 0\r\n\r\n');
  const { request } = await import('../../server/net/raw-http');
  const res = await request(srv.url, {}, new AbortController().signal, { agent });
  res.body.destroy();
  expect(Object.getPrototypeOf(res.headers)).toBeNull();
  expect(res.headers['__proto__']).toBe('x');
  expect(res.headers.constructor).toBe('y');
  expect(res.headers.tostring).toBe('z');
  expect(res.headers.etag).toBeUndefined();
});

test.each(['Location', 'Content-Range', 'ETag', 'Content-Type', 'Last-Modified'])('%s repeated with another value is refused; with the same value it counts once', async (name) => {
  await refused(`HTTP/1.1 200 OK\r\n${name}: a\r\n${name}: b\r\nContent-Length: 5\r\n\r\nhello`);
  const srv = await serve(`HTTP/1.1 200 OK\r\n${name}: a\r\n${name}: a\r\nContent-Length: 5\r\n\r\nhello`);
  const { request } = await import('../../server/net/raw-http');
  const res = await request(srv.url, {}, new AbortController().signal, { agent });
  res.body.destroy();
  expect(res.headers[name.toLowerCase()]).toBe('a');
});

test('the 64 KiB head limit holds after the end of the head is seen too', async () => {
  const big = 'x'.repeat(70 * 1024);
  await refused(`HTTP/1.1 200 OK\r\nX-Big: ${big}\r\nContent-Length: 5\r\n\r\nhello`);
  // the same head in one write, and followed by its blank line at once
  await refused(Buffer.from(`HTTP/1.1 200 OK\r\nX-Big: ${'y'.repeat(65 * 1024)}\r\n\r\n`));
});

test('more than 100 header fields are refused', async () => {
  const fields = Array.from({ length: 101 }, (_, i) => `X-F${i}: ${i}\r\n`).join('');
  await refused(`HTTP/1.1 200 OK\r\n${fields}Content-Length: 5\r\n\r\nhello`);
  const ok = Array.from({ length: 99 }, (_, i) => `X-F${i}: ${i}\r\n`).join('');
  for (const o of await outcomes(`HTTP/1.1 200 OK\r\n${ok}Content-Length: 5\r\n\r\nhello`)) expect(show(o)).toBe(show({ ok: true, body: Buffer.from('hello') }));
});

test.each([
  ['a space before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello'],
  ['an empty name', 'HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 5\r\n\r\nhello'],
  ['a NUL in a value', 'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello'],
  ['a status of two digits', 'HTTP/1.1 20 OK\r\nContent-Length: 5\r\n\r\nhello'],
  ['HTTP/2 in the status line', 'HTTP/2 200 OK\r\nContent-Length: 5\r\n\r\nhello'],
  ['a control character in the reason', 'HTTP/1.1 200 O\x01K\r\nContent-Length: 5\r\n\r\nhello'],
  ['a chunk size with a space inside', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 5\r\nhello\r\n0\r\n\r\n'],
  ['a chunk extension with a bad name', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n0\r\n\r\n'],
  ['a chunk size line ended by a bare LF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n'],
  ['chunk data followed by a bare LF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n'],
  ['a negative chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n'],
  ['a huge chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000\r\nhello\r\n0\r\n\r\n'],
])('%s is refused', async (_name, wire) => {
  await refused(wire);
});

test('bytes after the last chunk: the body is whole, the connection is not reused', async () => {
  const srv = await serve(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${CHUNKED_HELLO}HTTP/1.1 200 OK\r\n`, true);
  expect(show(await fetchOurs(srv.url, agent))).toBe(show({ ok: true, body: Buffer.from('hello') }));
  expect(show(await fetchOurs(srv.url, agent))).toBe(show({ ok: true, body: Buffer.from('hello') }));
  expect(srv.connections()).toBe(2);
});

test('a tab around chunked (llhttp reads no chunked coding there, RFC 9110 does) is refused', async () => {
  await refused(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n${CHUNKED_HELLO}`);
  await refused(`HTTP/1.0 200 OK\r\nTransfer-Encoding:\tchunked\r\n\r\n${CHUNKED_HELLO}`);
});
