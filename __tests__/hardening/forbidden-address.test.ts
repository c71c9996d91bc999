/**
 * Link-local and cloud-metadata addresses (169.254.0.0/16, fe80::/10) are never fetched: not when
 * a user gives one, not when a redirect leads there, not when DNS answers with one.
 *
 * How these were checked to fail without their protection: removing the `checkAddressLiteral` call
 * per hop in http-client.ts makes the redirect test fail (the tripwire sees a request to
 * 169.254.169.254 and the download ends in TRIPWIRE, not FORBIDDEN_ADDRESS); making `guardedLookup`
 * pass every answer makes the DNS tests fail; the IPv4-mapped cases failed before url-policy.ts
 * used a BlockList (`[::ffff:169.254.169.254]` became `[::ffff:a9fe:a9fe]` and passed).
 *
 * DNS answers are injected by spying on `dns.lookup` (which guardedLookup calls) for two made-up
 * names; /etc/hosts is not touched. Names that are not ours go to the real resolver.
 */
import dns from 'node:dns';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { guardedLookup, isForbiddenAddress, parseSourceUrl } from '../../server/net/url-policy';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { settled, startTestServer, type TestServer } from '../helpers/harness';
import { watchOutgoing, type OutgoingLog } from './helpers';

const METADATA = /^(169\.254\.|\[?fe80:|\[?::ffff:(a9fe|169\.254))/i;

describe('the address policy', () => {
  test.each([
    ['169.254.169.254', true],
    ['169.254.0.1', true],
    ['fe80::1', true],
    ['FE80::abcd', true],
    ['febf:ffff::1', true],
    ['::ffff:169.254.169.254', true],
    ['::ffff:a9fe:a9fe', true], // the same, as the URL parser spells it
    ['64:ff9b::a9fe:a9fe', true], // NAT64 of 169.254.169.254
    ['fd00:ec2::254', true],
    ['100.100.100.200', true], // Alibaba Cloud's metadata endpoint
    ['fd20:ce::254', true], // Google Cloud's IPv6 metadata endpoint
    ['::a9fe:a9fe', true], // IPv4-compatible spelling of 169.254.169.254
    ['::169.254.169.254', true],
    ['64:ff9b:1:a9fe:a9:fea9:fe00:0', true], // local-use NAT64 (RFC 8215), /48 layout
    ['64:ff9b:1::a9fe:a9fe', true], // local-use NAT64, /96 layout
    ['64:ff9b:1::a00:1', false], // local-use NAT64 of 10.0.0.1
    ['100.100.100.201', false],
    ['127.0.0.1', false],
    ['::1', false],
    ['10.0.0.1', false],
    ['169.255.0.1', false],
    ['fec0::1', false],
    ['::ffff:127.0.0.1', false],
    ['example.com', false],
  ])('isForbiddenAddress(%j) is %j', (address, forbidden) => {
    expect(isForbiddenAddress(address)).toBe(forbidden);
  });

  test.each([
    'http://169.254.169.254/latest/meta-data',
    'http://2852039166/latest/meta-data', // 169.254.169.254 as one number
    'http://169.254.169.254./x',
    'http://[fe80::1]/x',
    'http://[::ffff:169.254.169.254]/x',
    'http://[::ffff:a9fe:a9fe]/x',
    'http://[0:0:0:0:0:ffff:169.254.169.254]/x',
    'http://[64:ff9b::169.254.169.254]/x',
  ])('parseSourceUrl refuses %s', (url) => {
    expect(() => parseSourceUrl(url)).toThrow(expect.objectContaining({ code: 'FORBIDDEN_ADDRESS', status: 400 }));
  });
});

describe('guardedLookup', () => {
  const lookup = promisify(guardedLookup) as unknown as (host: string, options: dns.LookupOptions) => Promise<unknown>;
  afterEach(() => jest.restoreAllMocks());

  /** Makes dns.lookup answer `addresses` for `name`; every other name goes to the real resolver. */
  function fakeDns(answers: Record<string, dns.LookupAddress[]>): jest.SpyInstance {
    const real = dns.lookup.bind(dns);
    return jest.spyOn(dns, 'lookup').mockImplementation(((hostname: string, options: unknown, callback: unknown) => {
      const cb = (typeof options === 'function' ? options : callback) as (err: Error | null, addresses: dns.LookupAddress[]) => void;
      const answer = answers[hostname];
      if (!answer) return (real as (...a: unknown[]) => void)(hostname, options, callback);
      process.nextTick(() => cb(null, answer));
    }) as typeof dns.lookup);
  }

  test('passes a name that resolves to loopback, in both calling styles', async () => {
    // The limit of this check: only the real resolver's answer for localhost; forbidden answers
    // are injected below.
    const one = await new Promise<[string, number]>((resolve, reject) =>
      guardedLookup('localhost', {}, (err, address, family) => (err ? reject(err) : resolve([address as string, family as number]))),
    );
    expect(['127.0.0.1', '::1']).toContain(one[0]);
    const all = (await lookup('localhost', { all: true })) as dns.LookupAddress[];
    expect(all.length).toBeGreaterThan(0);
    expect(all.every((a) => ['127.0.0.1', '::1'].includes(a.address))).toBe(true);
  });

  test.each([
    [[{ address: '169.254.169.254', family: 4 }]],
    [[{ address: 'fe80::1', family: 6 }]],
    [[{ address: '::ffff:169.254.169.254', family: 6 }]],
    [[{ address: '::ffff:a9fe:a9fe', family: 6 }]],
    // One bad answer among good ones is enough: the socket may pick any of them.
    [[{ address: '127.0.0.1', family: 4 }, { address: '169.254.169.254', family: 4 }]],
  ])('refuses a name that resolves to %j', async (answer) => {
    const spy = fakeDns({ 'metadata.test': answer });
    await expect(lookup('metadata.test', {})).rejects.toMatchObject({ code: 'FORBIDDEN_ADDRESS' });
    await expect(lookup('metadata.test', { all: true })).rejects.toMatchObject({ code: 'FORBIDDEN_ADDRESS' });
    expect(spy).toHaveBeenCalledWith('metadata.test', expect.anything(), expect.any(Function));
  });
});

describe('downloads', () => {
  let files: FileServer;
  let srv: TestServer;
  let outgoing: OutgoingLog;
  beforeEach(async () => {
    files = await startFileServer();
    srv = await startTestServer();
    outgoing = watchOutgoing((host) => METADATA.test(host));
  });
  afterEach(async () => {
    outgoing.stop();
    jest.restoreAllMocks();
    await srv.stop();
    await files.close();
  });

  const start = async (url: string): Promise<string> => {
    const res = await srv.api('POST', '/api/downloads', { url, folder: 'loras', filename: 'm.safetensors' });
    expect(res.status).toBe(202);
    return res.body.download.id as string;
  };
  const nothingThere = (): void => {
    expect(outgoing.requests.filter((r) => METADATA.test(r))).toEqual([]);
    // The test's own calls to the API aside, every connection went to the file server.
    expect(outgoing.connections.filter((c) => c !== `127.0.0.1:${files.port}` && c !== `127.0.0.1:${srv.port}`)).toEqual([]);
  };

  test.each([
    'http://169.254.169.254/latest/meta-data',
    'http://[fe80::1]/latest/meta-data',
  ])('a redirect to %s ends in FORBIDDEN_ADDRESS; nothing is fetched there', async (target) => {
    files.addFile('/m.safetensors', { size: 10_000 });
    files.fault('/m.safetensors', { redirectTo: target });
    const done = await settled(srv, await start(`${files.url}/m.safetensors`));
    expect(done).toMatchObject({ status: 'error', error: { code: 'FORBIDDEN_ADDRESS', message: expect.stringContaining('never fetches') } });
    expect(files.requests.filter((r) => r.path === '/m.safetensors')).toHaveLength(1);
    nothingThere();
    await expect(fs.access(path.join(srv.modelsDir, 'loras', 'm.safetensors'))).rejects.toThrow();
  });

  test('a name that DNS resolves to a metadata address is never connected to, directly or by redirect', async () => {
    const real = dns.lookup.bind(dns);
    const spy = jest.spyOn(dns, 'lookup').mockImplementation(((hostname: string, options: unknown, callback: unknown) => {
      const cb = (typeof options === 'function' ? options : callback) as (err: Error | null, addresses: dns.LookupAddress[]) => void;
      if (hostname === 'metadata.test') return process.nextTick(() => cb(null, [{ address: '169.254.169.254', family: 4 }]));
      if (hostname === 'good.test') return process.nextTick(() => cb(null, [{ address: '127.0.0.1', family: 4 }]));
      return (real as (...a: unknown[]) => void)(hostname, options, callback);
    }) as typeof dns.lookup);
    const f = files.addFile('/m.safetensors', { size: 10_000 });

    const direct = await settled(srv, await start(`http://metadata.test:${files.port}/m.safetensors`));
    expect(direct).toMatchObject({ status: 'error', error: { code: 'FORBIDDEN_ADDRESS', message: expect.stringContaining('169.254.169.254') } });
    await srv.api('POST', '/clear_completed');

    files.fault('/m.safetensors', { redirectTo: `http://metadata.test:${files.port}/m.safetensors` });
    const redirected = await settled(srv, await start(`${files.url}/m.safetensors`));
    expect(redirected).toMatchObject({ status: 'error', error: { code: 'FORBIDDEN_ADDRESS' } });
    await srv.api('POST', '/clear_completed');
    expect(spy).toHaveBeenCalledWith('metadata.test', expect.anything(), expect.any(Function));
    // Only the file server's own requests reached it: the one that redirected.
    expect(files.requests).toHaveLength(1);

    // The control: a name that resolves to an allowed address goes through the same guard.
    const ok = await settled(srv, await start(`http://good.test:${files.port}/m.safetensors`));
    expect(ok.status).toBe('completed');
    expect(spy).toHaveBeenCalledWith('good.test', expect.anything(), expect.any(Function));
    expect((await fs.readFile(path.join(srv.modelsDir, 'loras', 'm.safetensors'))).equals(f.data)).toBe(true);
    nothingThere();
  });
});
