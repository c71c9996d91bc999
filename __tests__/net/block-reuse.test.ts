import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { BLOCK } from '../../server/net/buffer-pool';
import { createAgent, request, type Agent } from '../../server/net/raw-http';

// A response head read with a block's worth of body behind it: the body waits in the block for its
// reader (the pump, attached once the caller has opened its file). Node asks for the next read's
// buffer right after that read, paused or not; the block must not be retired then, which copied
// all the waiting body into a new block (1 MiB per small file of a group). The body must still
// arrive whole when reading resumes (the next read lands in a scratch buffer, then the block).

/** Room left in the connection's block when the second answer arrives: more than a read's minimum (64 KiB). */
const ROOM = 100 * 1024;
const FIRST = Buffer.alloc(BLOCK - ROOM - 44, 1); // its head is 44 bytes: the block is filled to BLOCK - ROOM
const SECOND = crypto.randomBytes(300 * 1024);

/**
 * A keep-alive server in a worker thread: the first request gets FIRST, the second SECOND, written
 * in one go; `written[0]` turns 1 once that write was handed to the kernel (a loopback write lands
 * in the reader's socket as far as its window allows).
 */
function startServer(): Promise<{ port: number; written: Int32Array; worker: Worker }> {
  const written = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `
    const net = require('node:net');
    const { parentPort, workerData } = require('node:worker_threads');
    const answers = [workerData.first, workerData.second];
    const server = net.createServer((socket) => {
      let seen = '';
      let n = 0;
      socket.on('data', (d) => {
        seen += d.toString('latin1');
        while (seen.includes('\\r\\n\\r\\n')) {
          seen = seen.slice(seen.indexOf('\\r\\n\\r\\n') + 4);
          const body = Buffer.from(answers[n++]);
          socket.write(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\\r\\nContent-Length: ' + String(body.length).padStart(7, '0') + '\\r\\n\\r\\n', 'latin1'), body]));
          if (n === 2) { Atomics.store(workerData.written, 0, 1); Atomics.notify(workerData.written, 0); }
        }
      });
    });
    server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
    `,
    { eval: true, workerData: { first: FIRST, second: SECOND, written } },
  );
  return new Promise((resolve, reject) => {
    worker.once('message', (port: number) => resolve({ port, written, worker }));
    worker.once('error', reject);
  });
}

let agent: Agent;
let worker: Worker | undefined;
let dir: string;
beforeEach(async () => {
  agent = createAgent();
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'md-block-'));
});
afterEach(async () => {
  await agent.close();
  await worker?.terminate();
  await fs.rm(dir, { recursive: true, force: true });
});

async function pumpTo(file: string, res: Awaited<ReturnType<typeof request>>): Promise<Buffer> {
  const handle = await fs.open(file, 'w');
  try {
    await res.body.pump({ file: handle, position: 0 }).done;
  } finally {
    await handle.close();
  }
  return fs.readFile(file);
}

test('a body waiting behind its head is not copied into a new block, and arrives whole', async () => {
  const server = await startServer();
  worker = server.worker;
  const url = new URL(`http://127.0.0.1:${server.port}/file`);
  const signal = new AbortController().signal;

  const first = await request(url, {}, signal, { agent });
  expect((await pumpTo(path.join(dir, 'first'), first)).equals(FIRST)).toBe(true);

  // Counted from the second request on: blocks taken before its head reaches the caller.
  let taken = 0;
  const take = agent.pool.take.bind(agent.pool);
  agent.pool.take = () => {
    taken++;
    return take();
  };
  const second = request(url, {}, signal, { agent });
  // Our thread waits (no read) until the server has written the whole answer: the first read then
  // takes the head and the block's room of body, as on a busy server.
  setImmediate(() => expect(Atomics.wait(server.written, 0, 0, 10_000)).not.toBe('timed-out'));
  const res = await second;
  expect(taken).toBe(0);
  expect((await pumpTo(path.join(dir, 'second'), res)).equals(SECOND)).toBe(true);
});
