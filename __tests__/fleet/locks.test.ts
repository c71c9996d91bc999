/**
 * Fleet mode's parts on their own: the configuration, the volume clock, the locks (proper-lockfile
 * through our file system: stale takeover, a lock taken from its holder, the lease, the volume's
 * clock), and the guard under the pump's writes.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../../server/config';
import { ChunkWriter } from '../../server/disk/chunk-writer';
import { guardFile } from '../../server/disk/guarded-file';
import { VolumeClock } from '../../server/fleet/clock';
import { LockSpace, lockStamp, lockTimings, readBackIsOurs, type LockTimings } from '../../server/fleet/locks';
import { tempDir, waitFor } from '../helpers/harness';

let dir: string;
let cleanup: () => Promise<void>;
const spaces: LockSpace[] = [];
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('md-locks-'));
});
afterEach(async () => {
  for (const s of spaces.splice(0)) await s.releaseAll();
  await cleanup();
});

const TIMINGS: LockTimings = { staleMs: 2000, updateMs: 1000, marginMs: 500, confirmMs: 20 };
function space(offsetMs = 0, timings: LockTimings = TIMINGS): LockSpace {
  const clock = new VolumeClock();
  clock.offsetMs = offsetMs;
  const s = new LockSpace(clock, timings);
  spaces.push(s);
  return s;
}
/** Makes a lock look `ageMs` old on the volume (as a server that stopped refreshing it would leave it). */
const age = async (file: string, ageMs: number): Promise<void> => {
  const t = new Date(Date.now() - ageMs);
  await fs.utimes(`${file}.lock`, t, t);
};
/** Blocks this process's event loop, as SIGSTOP would stop it. */
const freeze = (ms: number): void => {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // busy: no timer, no I/O callback runs
  }
};

describe('configuration', () => {
  test('fleet mode only with FLEET_DIR; INSTANCE_NAME and FLEET_STALE_SECONDS read only then', () => {
    expect(loadConfig({ INSTANCE_NAME: 'no good!', FLEET_STALE_SECONDS: 'x' }, '/srv').fleet).toBeUndefined();
    const c = loadConfig({ FLEET_DIR: '/shared/fleet', INSTANCE_NAME: 'pod-1.a_b' }, '/srv');
    expect(c.fleet).toEqual({ dir: '/shared/fleet', instance: 'pod-1.a_b', staleSeconds: 30 });
    expect(Object.isFrozen(c.fleet)).toBe(true);
    expect(loadConfig({ FLEET_DIR: 'fleet', FLEET_STALE_SECONDS: '2.5' }, '/srv').fleet).toMatchObject({ dir: '/srv/fleet', staleSeconds: 2.5 });
    expect(loadConfig({ FLEET_DIR: '/f' }).fleet!.instance.length).toBeGreaterThan(0); // the host name
  });

  test.each([
    [{ INSTANCE_NAME: 'a/b' }, /INSTANCE_NAME to be 1–64 of/],
    [{ INSTANCE_NAME: '..' }, /INSTANCE_NAME/],
    [{ INSTANCE_NAME: 'x'.repeat(65) }, /INSTANCE_NAME/],
    [{ FLEET_STALE_SECONDS: '1' }, /FLEET_STALE_SECONDS to be a number ≥ 2/],
    [{ FLEET_STALE_SECONDS: 'soon' }, /FLEET_STALE_SECONDS to be a number > 0/],
    [{ FLEET_DIR: '/srv/models/.fleet' }, /FLEET_DIR to be a folder outside MODELS_DIR/],
    [{ FLEET_DIR: '/srv' }, /FLEET_DIR to be a folder outside MODELS_DIR/],
  ])('refuses %j', (env, message) => {
    expect(() => loadConfig({ FLEET_DIR: '/shared/fleet', MODELS_DIR: '/srv/models', ...env })).toThrow(message);
  });

  test('timings from FLEET_STALE_SECONDS: touched every few seconds, the lease ending early', () => {
    expect(lockTimings(30)).toEqual({ staleMs: 30_000, updateMs: 5000, marginMs: 5000 });
    expect(lockTimings(3)).toEqual({ staleMs: 3000, updateMs: 1000, marginMs: 500 });
  });
});

test('the volume clock keeps the tightest sample', () => {
  const clock = new VolumeClock();
  clock.sample(10_000 + 5_000, 10_000, 10_400); // ±200 ms: offset 4800
  expect(clock.offsetMs).toBe(4800);
  clock.sample(20_000 + 5_000, 19_990, 20_010); // ±10 ms: offset 5000
  expect(clock.offsetMs).toBe(5000);
  clock.sample(30_000 + 9_000, 29_000, 31_000); // loose: ignored
  expect(clock.offsetMs).toBe(5000);
});

describe('locks', () => {
  test('one holder; a second is refused while the lock is fresh, and gets it once it is released', async () => {
    const file = path.join(dir, 'd');
    const a = space();
    const b = space();
    const held = await a.acquire(file);
    expect(held?.valid()).toBe(true);
    expect(await b.acquire(file)).toBeUndefined();
    expect(await b.fresh(file)).toBe(true);
    await held!.release();
    await expect(fs.access(`${file}.lock`)).rejects.toThrow();
    expect(await b.acquire(file)).toBeDefined();
  });

  test('a held lock is kept fresh: never stale while its holder runs', async () => {
    const file = path.join(dir, 'd');
    const held = await space().acquire(file);
    const before = (await fs.stat(`${file}.lock`)).mtimeMs;
    await waitFor(async () => (await fs.stat(`${file}.lock`)).mtimeMs > before, 'the lock to be touched', 3000, 50);
    expect(await space().acquire(file)).toBeUndefined();
    expect(held!.valid()).toBe(true);
  });

  test('a stale lock is taken over; its old holder finds out (compromised) and removes nothing of the new one\'s', async () => {
    const file = path.join(dir, 'd');
    const a = space();
    const held = await a.acquire(file);
    const lost: string[] = [];
    held!.onLost((why) => lost.push(why));
    await age(file, 5000); // as if a had stopped refreshing it
    const b = space();
    const taken = await b.acquire(file);
    expect(taken).toBeDefined();
    await waitFor(() => lost.length > 0, 'a to notice', 4000, 20);
    expect(lost[0]).toMatch(/taken over/);
    expect(held!.valid()).toBe(false);
    await held!.release();
    expect(taken!.valid()).toBe(true);
    await fs.access(`${file}.lock`); // still there: b's
    expect(await space().acquire(file)).toBeUndefined();
  });

  test('a lease that ran out (the process was stopped) is lost at the first look, before any write', async () => {
    const file = path.join(dir, 'd');
    const held = await space().acquire(file);
    const lost: string[] = [];
    held!.onLost((why) => lost.push(why));
    freeze(TIMINGS.staleMs - TIMINGS.marginMs + 100);
    expect(held!.valid()).toBe(false); // synchronous: nothing else ran in between
    expect(lost).toEqual([expect.stringMatching(/not refreshed in time/)]);
    // Nobody took it: its own lock goes with it, and it can be taken again.
    await waitFor(async () => !(await fs.access(`${file}.lock`).then(() => true, () => false)), 'the lapsed lock to be removed', 2000, 20);
    expect(await space().acquire(file)).toBeDefined();
  });

  test('ages are judged on the volume\'s clock, not this host\'s', async () => {
    // The volume's clock runs 8 s ahead of this host's: a lock touched 3 s ago (volume time) has
    // an mtime 5 s in this host's future. Judged by the local clock it would look fresh for 10 s.
    const file = path.join(dir, 'd');
    const ahead = space(8000);
    const held = await ahead.acquire(file);
    const stamp = (await fs.stat(`${file}.lock`)).mtimeMs;
    expect(Math.abs(stamp - (Date.now() + 8000))).toBeLessThan(1000); // stamped in volume time
    await held!.release();
    await fs.mkdir(`${file}.lock`);
    const t = new Date(Date.now() + 8000 - 3000);
    await fs.utimes(`${file}.lock`, t, t);
    expect(await space(8000).fresh(file)).toBe(false);
    expect(await space(8000).acquire(file)).toBeDefined();
    // And a lock touched 1 s ago (volume time) is fresh, though 7 s in this host's future.
    const other = path.join(dir, 'e');
    await fs.mkdir(`${other}.lock`);
    const u = new Date(Date.now() + 8000 - 1000);
    await fs.utimes(`${other}.lock`, u, u);
    expect(await space(8000).acquire(other)).toBeUndefined();
  });

  test('a stamp read back is ours only when it is the one we wrote, at the precision the volume keeps', () => {
    const now = 1_796_086_430_666;
    for (let i = 0; i < 200; i++) {
      const ours = lockStamp(now);
      const theirs = lockStamp(now);
      expect(Math.floor(ours * 1000)).toBe(now); // the same millisecond, a fraction of it added
      expect(Number.isInteger(ours * 1000)).toBe(false);
      // A fine volume (ns, µs): ours read back is ours; another taker's stamp in the same
      // millisecond is not (it was taken for ours within 1 ms before: two holders of one lock).
      expect(readBackIsOurs(ours, ours * 1000)).toBe(true);
      expect(readBackIsOurs(ours, Math.floor(ours * 1e6) / 1000)).toBe(true); // cut to the µs
      if (Math.round(theirs * 1e5) !== Math.round(ours * 1e5)) expect(readBackIsOurs(ours, theirs * 1000)).toBe(false);
      // A coarse volume keeps the whole millisecond, or second: ours (another's looks the same there).
      expect(readBackIsOurs(ours, now)).toBe(true);
      expect(readBackIsOurs(ours, Math.floor(now / 1000) * 1000)).toBe(true);
      // Anything else is not.
      expect(readBackIsOurs(ours, now + 1)).toBe(false);
      expect(readBackIsOurs(ours, now - 1000)).toBe(false);
    }
  });

  test('two takers of one stale lock: exactly one gets it', async () => {
    const file = path.join(dir, 'd');
    await fs.mkdir(`${file}.lock`);
    await age(file, 10_000);
    const got = await Promise.all(Array.from({ length: 5 }, () => space().acquire(file)));
    expect(got.filter(Boolean)).toHaveLength(1);
  });
});

test('a guarded file refuses a write the guard refuses, before it is issued', async () => {
  const file = path.join(dir, 'f');
  await fs.writeFile(file, Buffer.alloc(8));
  let allowed = true;
  const handle = guardFile(await fs.open(file, 'r+'), () => {
    if (!allowed) throw new Error('lost');
  });
  try {
    const writer = new ChunkWriter(handle, 0);
    writer.push(Buffer.from('abcd'));
    await writer.flush();
    allowed = false;
    writer.push(Buffer.from('efgh'));
    await expect(writer.flush()).rejects.toThrow('lost');
    await expect(handle.truncate(0)).rejects.toThrow('lost');
    expect(typeof handle.fd).toBe('number');
    await handle.datasync(); // not a write: passes
  } finally {
    await handle.close();
  }
  expect((await fs.readFile(file)).toString('latin1')).toBe('abcd\0\0\0\0');
});
