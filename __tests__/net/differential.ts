import http from 'node:http';
import net from 'node:net';
import { createAgent } from '../../server/net/raw-http';
import { describe as show, fetchOurs, type Outcome } from './ours';
import { generateCases, type Case } from './response-gen';

/**
 * The differential run: each generated response served by a raw TCP server, fetched by our client
 * and by node:http (llhttp, its default strict parser), and judged. Our client fails the run when
 * it accepts an answer and yields other bytes than llhttp does for it, or accepts one llhttp
 * refuses with other bytes than the ones the answer was made to carry, or refuses a valid one.
 */
export interface DifferentialResult {
  failures: string[];
  stats: { cases: number; valid: number; bothAccept: number; bothRefuse: number; onlyOursRefuses: number; onlyOursAccepts: number };
}

/** The server: `/c/<i>` answers case i, in its writes, then closes (at once or a little later). */
async function caseServer(cases: Case[]): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = '';
    socket.on('data', (d) => {
      buffered += d.toString('latin1');
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      const m = /^GET \/c\/(\d+) /.exec(buffered);
      buffered = buffered.slice(end + 4);
      const c = m ? cases[Number(m[1])] : undefined;
      if (!c) return void socket.destroy();
      let at = 0;
      let w = 0;
      const next = (): void => {
        if (socket.destroyed) return;
        if (w >= c.writes.length) {
          if (c.close) socket.end();
          else setTimeout(() => socket.end(), 25).unref();
          return;
        }
        const size = c.writes[w++]!;
        socket.write(c.wire.subarray(at, at + size), () => setImmediate(next));
        at += size;
      };
      next();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/**
 * node:http's reading of the answer at `path`: llhttp's default strict parser, with a head limit
 * past ours (its default is 16 KiB), so that it judges the framing of every head we may accept.
 */
export function fetchNode(port: number, path: string): Promise<Outcome> {
  return new Promise((resolve) => {
    let res: http.IncomingMessage | undefined;
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (o: Outcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(o);
    };
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers: { 'Accept-Encoding': 'identity' }, maxHeaderSize: 128 * 1024 }, (r) => {
      res = r;
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => finish(r.complete ? { ok: true, body: Buffer.concat(chunks) } : { ok: false, code: 'INCOMPLETE', message: 'ended incomplete' }));
      r.on('error', (err: NodeJS.ErrnoException) => finish(r.complete ? { ok: true, body: Buffer.concat(chunks) } : { ok: false, code: err.code ?? 'ERROR', message: err.message }));
      r.on('close', () => finish(r.complete ? { ok: true, body: Buffer.concat(chunks) } : { ok: false, code: 'ABORTED', message: 'closed incomplete' }));
    });
    // A parse error after a complete message (bytes after it) still leaves that message read.
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!res?.complete) return finish({ ok: false, code: err.code ?? 'ERROR', message: err.message });
      // Bytes of the message may still wait in the response's buffer: read() emits them as 'data'.
      while (res.read() !== null);
      finish({ ok: true, body: Buffer.concat(chunks) });
    });
    req.on('upgrade', (_r, socket: net.Socket) => {
      socket.destroy();
      finish({ ok: false, code: 'UPGRADE', message: '101 taken as an upgrade' });
    });
    const timer = setTimeout(() => finish({ ok: false, code: 'TIMEOUT', message: 'no outcome in 15 s' }), 15_000);
  });
}

async function judge(c: Case, i: number, port: number, failures: string[], stats: DifferentialResult['stats']): Promise<void> {
  const path = `/c/${i}`;
  const agent = createAgent();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(Object.assign(new Error('no outcome in 15 s'), { code: 'TIMEOUT' })), 15_000);
  let ours: Outcome;
  let theirs: Outcome;
  try {
    [ours, theirs] = await Promise.all([fetchOurs(new URL(`http://127.0.0.1:${port}${path}`), agent, i % 2 ? 'pump' : 'stream', controller.signal), fetchNode(port, path)]);
  } finally {
    clearTimeout(timer);
    await agent.close();
  }
  const report = (why: string): void =>
    void failures.push(`case ${i} (${c.label}): ${why}\n  ours:  ${show(ours)}\n  node:  ${show(theirs)}\n  wire:  ${JSON.stringify(c.wire.toString('latin1').slice(0, 300))}`);
  if (c.valid) stats.valid++;
  if (ours.ok && theirs.ok) {
    stats.bothAccept++;
    if (!ours.body.equals(theirs.body)) report('both accepted, with different bytes');
  } else if (ours.ok) {
    stats.onlyOursAccepts++;
    if (!ours.body.equals(c.intended)) report('ours accepted what llhttp refuses, with other bytes than the ones meant');
  } else if (theirs.ok) stats.onlyOursRefuses++;
  else stats.bothRefuse++;
  if (c.valid && !(ours.ok && ours.body.equals(c.intended))) report('ours did not read a valid answer as meant');
  if (!ours.ok && ours.code === 'TIMEOUT') report('ours reached no outcome');
}

/** Runs `count` cases of `seed`, `concurrency` at a time. */
export async function runDifferential(seed: number, count: number, concurrency = 8, only?: number[]): Promise<DifferentialResult> {
  const cases = generateCases(seed, count);
  const order = only ?? cases.map((_, i) => i);
  const server = await caseServer(cases);
  const failures: string[] = [];
  const stats = { cases: count, valid: 0, bothAccept: 0, bothRefuse: 0, onlyOursRefuses: 0, onlyOursAccepts: 0 };
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < order.length) {
          const i = order[next++]!;
          await judge(cases[i]!, i, server.port, failures, stats);
        }
      }),
    );
  } finally {
    await server.close();
  }
  return { failures, stats };
}
