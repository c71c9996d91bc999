/**
 * The sha256 of a `.part` written in ranges, computed while it is being written, so that when the
 * last byte lands only the tail is left to hash (a segmented 30 GB download otherwise spent ~25 s
 * in `verifying`, reading the whole file again).
 *
 * How. A worker thread (node:worker_threads) follows the contiguous prefix of the file: the
 * downloader tells it, through shared memory, how many bytes from offset 0 are written — counted
 * `done` in their segment, i.e. the kernel accepted their write — and the worker reads exactly
 * those back with positional reads (from the page cache, as a rule) into one node:crypto Hash.
 * It never reads a byte beyond that count, and the bytes below it are never written again in the
 * attempt (a range only grows past its `done`), so the digest it gives for the size is the
 * sha256 of the file's bytes as they are in the file, not as they came over the network.
 *
 * Nothing is persisted. After a restart (or a pause, or a new .part) the prefix already on disk is
 * hashed again from offset 0 by the worker, while the transfer goes on: it reads at ~1.3 GB/s
 * here, faster than any download, so it catches up long before the end. A resumable state was
 * weighed and left: node:crypto's Hash can be copied but not serialized; hash-wasm 4.13
 * (createSHA256 with save()/load(), 116 bytes of state) hashes 170–185 MB/s here and
 * @noble/hashes 2.4 about 100 MB/s with no public way to save its state — against 1.2–1.6 GB/s
 * for node:crypto (OpenSSL with the CPU's SHA extensions), 2-core AMD EPYC, Node 20. With a
 * 7–15× slower hash the worker could not keep up with a fast download, and a saved state would
 * have to be proved to describe bytes that are on disk after a power cut. Re-hashing costs a
 * read of the prefix once per resume; its result needs no trust in anything saved.
 *
 * Why a worker: hashing in the main thread would take ~0.8 s of its time per GB, in slices that
 * delay every socket read. The worker's reads are its own synchronous preads (not the libuv pool
 * the downloads write through). Shared memory (a SharedArrayBuffer with Atomics.wait/notify)
 * carries the prefix to the worker with no message per write; the digest comes back as a message.
 *
 * Failure is never a verdict: a worker that throws, exits or cannot read makes `digest()` answer
 * undefined, and the caller hashes the whole file in one pass as before.
 */
import type { FileHandle } from 'node:fs/promises';
import fs from 'node:fs/promises';
import { Worker } from 'node:worker_threads';

/** Bytes read and hashed at a time: 1 MiB reads of the page cache run at ~1.3 GB/s here, 256 KiB at ~0.8. */
const CHUNK = 1024 * 1024;

// Slots of the shared memory (BigInt64): the worker sleeps on SEQ, bumped at every change.
const SEQ = 0;
const TARGET = 1; // bytes from 0 the worker may read (written)
const HASHED = 2; // bytes from 0 it has hashed
const FINAL = 3; // the file's size once the transfer is over (-1 before): the worker answers the digest there
const STOP = 4; // 1: leave now

/**
 * The worker's code, as text: run with `eval: true` so it works the same from dist/ (the built
 * server) and from the .ts sources (the tests run them through ts-jest, which has no .js to point
 * a Worker at).
 */
const WORKER = `
'use strict';
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const crypto = require('node:crypto');
const { fd, shared, chunk, failAt } = workerData;
const v = new BigInt64Array(shared);
const hash = crypto.createHash('sha256');
const buf = Buffer.allocUnsafe(chunk);
let hashed = 0;
for (;;) {
  const seq = Atomics.load(v, ${SEQ});
  if (Atomics.load(v, ${STOP}) !== 0n) break;
  const target = Number(Atomics.load(v, ${TARGET}));
  if (hashed < target) {
    const want = Math.min(chunk, target - hashed);
    let got = 0;
    while (got < want) {
      const n = fs.readSync(fd, buf, got, want - got, hashed + got);
      if (n === 0) throw new Error('the file ends at ' + (hashed + got) + ', before the ' + target + ' bytes said to be written');
      got += n;
    }
    if (failAt !== undefined && hashed + want > failAt.at) {
      if (failAt.how === 'exit') process.exit(3);
      throw new Error('injected failure');
    }
    hash.update(buf.subarray(0, want));
    hashed += want;
    Atomics.store(v, ${HASHED}, BigInt(hashed));
    continue;
  }
  const final = Atomics.load(v, ${FINAL});
  if (final >= 0n && BigInt(hashed) === final) {
    parentPort.postMessage({ digest: hash.digest('hex'), hashed });
    break;
  }
  Atomics.wait(v, ${SEQ}, seq, 1000);
}
`;

/** For tests: make the next workers fail once they would hash past `at` bytes (throw, or exit the thread). */
export const prefixHashFaults: { failAt?: { at: number; how: 'throw' | 'exit' } } = {};

/** One worker hashing one open `.part` (by its inode) from offset 0. */
class Session {
  failure: Error | undefined;
  private closing = false;
  /** `hashed` when the last byte was counted written (see PrefixHash.tailBytes). */
  hashedAtEnd: number | undefined;
  private readonly result: Promise<string | undefined>;
  private readonly exited: Promise<void>;

  constructor(
    readonly handle: FileHandle,
    readonly dev: number,
    readonly ino: number,
    /** The worker's view of the same memory (see the slots above). */
    private readonly shared: BigInt64Array,
    private readonly worker: Worker,
    onFailure: (err: Error) => void,
  ) {
    const failed = (err: Error): void => {
      if (this.failure || this.closing) return;
      this.failure = err;
      onFailure(err);
    };
    this.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    let answered = false;
    this.result = new Promise((resolve) => {
      worker.once('message', (m: { digest: string }) => {
        answered = true;
        resolve(m.digest);
      });
      worker.on('error', (err) => {
        failed(err);
        resolve(undefined);
      });
      worker.once('exit', (code) => {
        if (!answered) failed(new Error(`the hashing thread exited (${code}) before its digest`));
        resolve(undefined); // no-op when the digest came first
      });
    });
  }

  get target(): number {
    return Number(Atomics.load(this.shared, TARGET));
  }

  get hashed(): number {
    return Number(Atomics.load(this.shared, HASHED));
  }

  advance(upTo: number): void {
    if (upTo <= this.target) return;
    Atomics.store(this.shared, TARGET, BigInt(upTo));
    this.wake();
  }

  digest(size: number): Promise<string | undefined> {
    Atomics.store(this.shared, FINAL, BigInt(size));
    this.wake();
    return this.result;
  }

  /** Stops the worker and only then closes the descriptor it reads (a closed number could be reused by another file). */
  async close(): Promise<void> {
    this.closing = true;
    Atomics.store(this.shared, STOP, 1n);
    this.wake();
    let timer: NodeJS.Timeout | undefined;
    const gone = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(r, 2000, false)))]);
    clearTimeout(timer);
    if (!gone) {
      // Stuck in a read of a disk that does not answer: terminate() ends it once the read returns.
      await this.worker.terminate().catch(() => undefined);
      await this.exited;
    }
    await this.handle.close().catch(() => undefined);
  }

  private wake(): void {
    Atomics.add(this.shared, SEQ, 1n);
    Atomics.notify(this.shared, SEQ);
  }
}

/**
 * The in-flight sha256 of one download's `.part` across the attempts of one run. `follow` at the
 * start of each attempt (it starts over when the file or its written prefix is not the one it was
 * hashing), `advance` as the written prefix grows, `digest` once every byte is written.
 */
export class PrefixHash {
  private session: Session | undefined;
  private opening: Promise<void> = Promise.resolve();

  constructor(private readonly log?: (message: string) => void) {}

  /**
   * An attempt begins on `part`, open as `file`, whose first `prefix` bytes are written. Keeps the
   * hash so far when it is of this very file (same inode) and covers no more than `prefix` (a map
   * saved before the last counts were synced says less than was hashed: those bytes are fetched,
   * and written, again); else starts over from offset 0. Never throws: without a hash the caller
   * falls back to a full pass.
   */
  async follow(part: string, file: FileHandle, prefix: number): Promise<void> {
    const opening = this.opening.then(async () => {
      const st = await file.stat();
      const s = this.session;
      if (s && (s.failure || s.dev !== st.dev || s.ino !== st.ino || s.target > prefix || s.hashedAtEnd !== undefined)) await this.reset();
      if (!this.session) this.session = await this.start(part, st.dev, st.ino);
      this.session?.advance(prefix);
    });
    this.opening = opening.catch(() => undefined);
    await this.opening;
  }

  /** The first `upTo` bytes are written (counted done): the worker may read them. */
  advance(upTo: number): void {
    this.session?.advance(upTo);
  }

  /** The transfer is over: every one of `size` bytes is written. Records how much was left to hash. */
  ended(size: number): void {
    const s = this.session;
    if (!s) return;
    // Read before the worker is told: woken, it may hash the tail before this thread reads on.
    s.hashedAtEnd ??= s.hashed;
    s.advance(size);
  }

  /** Whether `digest(size)` can answer: a live worker following this file, told that all `size` bytes are written. */
  covers(size: number): boolean {
    const s = this.session;
    return s !== undefined && !s.failure && s.target === size && s.hashedAtEnd !== undefined;
  }

  /** Bytes hashed so far (for the verifying bar). */
  get hashed(): number {
    return this.session?.hashed ?? 0;
  }

  /** Bytes that were left to hash when the last byte was written; undefined before that. */
  get tailBytes(): number | undefined {
    const s = this.session;
    return s?.hashedAtEnd === undefined ? undefined : s.target - s.hashedAtEnd;
  }

  /**
   * sha256 (hex) of the file's first `size` bytes, every one of them written (see `covers`);
   * undefined when the worker failed or does not cover them. Rejects when `signal` aborts.
   */
  async digest(size: number, signal?: AbortSignal): Promise<string | undefined> {
    await this.opening;
    const s = this.session;
    if (!s || !this.covers(size)) return undefined;
    const aborted = new Promise<never>((_, reject) => {
      if (signal?.aborted) reject(signal.reason);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    aborted.catch(() => undefined);
    return Promise.race([s.digest(size), aborted]);
  }

  /** Forgets the hash (its bytes may be written again): the next `follow` starts over. */
  async reset(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    await s?.close();
  }

  /** Stops the worker; call once the run is over. */
  async close(): Promise<void> {
    await this.opening;
    await this.reset();
  }

  private async start(part: string, dev: number, ino: number): Promise<Session | undefined> {
    let handle: FileHandle | undefined;
    try {
      handle = await fs.open(part, 'r');
      const st = await handle.stat();
      if (st.dev !== dev || st.ino !== ino) throw new Error('the file was replaced as it was opened');
      const shared = new BigInt64Array(new SharedArrayBuffer(8 * 5));
      Atomics.store(shared, FINAL, -1n); // before the worker runs: 0 would be a size it could answer at once
      const worker = new Worker(WORKER, {
        eval: true,
        workerData: { fd: handle.fd, shared: shared.buffer, chunk: CHUNK, failAt: prefixHashFaults.failAt },
        // A small heap: it holds one Hash and one 1 MiB buffer (outside the heap).
        resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
        stdout: false,
        stderr: false,
      });
      worker.unref(); // never what keeps the process alive
      return new Session(handle, dev, ino, shared, worker, (err) => this.log?.(`the sha256 computed while downloading failed (${err.message}); the whole file will be hashed after the transfer`));
    } catch (err) {
      await handle?.close().catch(() => undefined);
      this.log?.(`the sha256 cannot be computed while downloading (${(err as Error).message}); the whole file will be hashed after the transfer`);
      return undefined;
    }
  }
}
