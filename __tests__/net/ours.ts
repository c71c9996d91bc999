import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { request, type Agent } from '../../server/net/raw-http';

/** What a client made of an answer: the body it would have stored, or the error it ended in. */
export type Outcome = { ok: true; body: Buffer } | { ok: false; code: string; message: string };

export const describe = (o: Outcome): string => (o.ok ? `ok ${o.body.length} bytes ${JSON.stringify(o.body.toString('latin1').slice(0, 60))}` : `error ${o.code}: ${o.message}`);

/**
 * Fetches `url` with our client and reads the whole body: with `pump` into a temporary file (the
 * download path), otherwise as a stream (error pages, probes).
 */
export async function fetchOurs(url: URL, agent: Agent, how: 'pump' | 'stream' = 'pump', signal = new AbortController().signal): Promise<Outcome> {
  try {
    const res = await request(url, { 'Accept-Encoding': 'identity' }, signal, { agent });
    if (how === 'stream') {
      const chunks: Buffer[] = [];
      for await (const c of res.body) chunks.push(c as Buffer);
      return { ok: true, body: Buffer.concat(chunks) };
    }
    const file = path.join(os.tmpdir(), `md-ours-${process.pid}-${crypto.randomBytes(6).toString('hex')}`);
    const handle = await fs.open(file, 'w');
    try {
      await res.body.pump({ file: handle, position: 0 }).done;
      await handle.close();
      return { ok: true, body: await fs.readFile(file) };
    } finally {
      await handle.close().catch(() => undefined);
      await fs.rm(file, { force: true });
    }
  } catch (err) {
    const e = err as { code?: unknown; message?: string };
    return { ok: false, code: typeof e.code === 'string' ? e.code : 'ERROR', message: e.message ?? String(err) };
  }
}
