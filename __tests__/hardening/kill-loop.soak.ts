/**
 * The kill loop: three concurrent downloads of tens of MB, throttled, and the built server
 * (dist/server/main.js) SIGKILLed at 20 moments — random ones, and ones aimed at the interesting
 * windows: while a status file write is under way (its temp file just appeared), while a download
 * is verifying, right after one completed. Restarted each time. Checked:
 * - after every kill the status file parses and still holds the three downloads;
 * - at every kill, and at the end, a file at a `dest` has exactly the right bytes (else none);
 * - every resume asked for the bytes after those already on disk: one connection, `Range: bytes=N-`
 *   with N at least the `.part`'s size at the kill; several connections, no range that starts in
 *   a part the saved segment map says is done. A request from zero is allowed only when there was
 *   nothing on disk to resume;
 * - at the end every file is complete with the right sha256, and no `.part`, `.part.json` or
 *   temp file is left anywhere.
 * Run once with CONNECTIONS=1 and once with CONNECTIONS=4. SOAK_SEED=<n> replays a run's moments.
 *
 * How this was checked to fail without its protection: with transfer.ts asking for the whole
 * file on every attempt (offset forced to 0), the range check failed at every resume; with
 * partPath() returning the final path (bytes written in place, no `.part`), the content check
 * failed at the first kill.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Entry, ServerMessage } from '../../server/protocol/wire';
import { spawnServer, type ChildServer } from '../helpers/child-server';
import { startFileServer, type FileServer, type RequestRecord } from '../helpers/file-server';
import { tempDir, waitFor } from '../helpers/harness';
import WebSocket from 'ws';
import { isFinished } from '../../server/protocol/status';

const KILLS = 20;
const SEED = Number(process.env.SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: a small seeded generator, so a failing run can be replayed with SOAK_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Moment = 'random' | 'status-write' | 'verifying' | 'completed';

interface Segment {
  start: number;
  end: number;
  done: number;
}
/** What was on disk for one file right after a kill. */
interface DiskState {
  partSize: number;
  segments?: Segment[];
  destExists: boolean;
}
interface Kill {
  at: number;
  moment: Moment;
  /** Whether the aimed-at moment happened (else the kill fell back to its random deadline). */
  hit: boolean;
  disk: Record<string, DiskState>;
  progress: string;
}

const exists = (p: string): Promise<boolean> => fsp.access(p).then(() => true, () => false);
const sha256 = async (p: string): Promise<string> => {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(p)) hash.update(chunk as Buffer);
  return hash.digest('hex');
};
const rangeStart = (r: RequestRecord): number | undefined => {
  const m = /^bytes=(\d+)-/.exec(r.range ?? '');
  return m ? Number(m[1]) : undefined;
};

describe.each([
  { connections: 1, throttle: 1_000_000 },
  { connections: 4, throttle: 240_000 },
])('kill -9 at 20 moments with CONNECTIONS=$connections', ({ connections, throttle }) => {
  let files: FileServer;
  let dir: string;
  let cleanup: () => Promise<void>;
  let child: ChildServer | undefined;
  let socket: WebSocket | undefined;
  const everyChild: ChildServer[] = [];

  beforeAll(async () => {
    files = await startFileServer();
    ({ dir, cleanup } = await tempDir('md-soak-'));
  });
  afterAll(async () => {
    socket?.terminate();
    for (const c of everyChild) await c.kill('SIGKILL');
    await files.close();
    await cleanup();
  });

  test('every file ends complete and correct, every resume by Range, nothing left behind', async () => {
    const random = prng(SEED + connections);
    console.log(`kill loop, CONNECTIONS=${connections}: SOAK_SEED=${SEED}`);
    const modelsDir = path.join(dir, 'models');
    const statusFile = path.join(dir, 'status.json');
    const env = { CONNECTIONS: String(connections), MAX_CONCURRENT: '3', MODELS_DIR: modelsDir, STATUS_FILE: statusFile, CATALOG_FILE: path.join(dir, 'catalog.json') };
    const specs = [
      { name: 'alpha.safetensors', folder: 'checkpoints', size: 20_000_000 },
      { name: 'beta.safetensors', folder: 'loras', size: 28_000_000 },
      { name: 'gamma.safetensors', folder: 'vae', size: 36_000_000 },
    ].map((s) => ({ ...s, dest: `${s.folder}/${s.name}`, abs: path.join(modelsDir, s.folder, s.name), info: files.addFile(`/${s.name}`, { size: s.size, throttle }) }));

    /** Every file at a dest has the right bytes; returns what is on disk per file. */
    const checkDisk = async (when: string): Promise<Record<string, DiskState>> => {
      const disk: Record<string, DiskState> = {};
      for (const s of specs) {
        const destExists = await exists(s.abs);
        if (destExists) {
          expect({ when, dest: s.dest, size: (await fsp.stat(s.abs)).size }).toEqual({ when, dest: s.dest, size: s.size });
          expect({ when, dest: s.dest, sha256: await sha256(s.abs) }).toEqual({ when, dest: s.dest, sha256: s.info.sha256 });
        }
        const partSize = await fsp.stat(`${s.abs}.part`).then((st) => st.size, () => 0);
        let segments: Segment[] | undefined;
        try {
          segments = (JSON.parse(await fsp.readFile(`${s.abs}.part.json`, 'utf8')) as { segments?: Segment[] }).segments;
        } catch {
          segments = undefined;
        }
        disk[s.dest] = { partSize, destExists, ...(segments ? { segments } : {}) };
      }
      return disk;
    };

    const start = async (): Promise<{ child: ChildServer; events: Set<string>; ws: WebSocket }> => {
      const c = await spawnServer(env, 15_000);
      everyChild.push(c);
      // Watch the downloads go by, to aim kills at verifying and completed.
      const events = new Set<string>();
      const ws = new WebSocket(c.url.replace(/^http/, 'ws') + '/ws');
      ws.on('error', () => undefined);
      socket = ws;
      ws.on('message', (data) => {
        const m = JSON.parse(data.toString()) as ServerMessage;
        if (m.type === 'update') events.add(`${m.download.status}:${m.download.dest}`);
      });
      return { child: c, events, ws };
    };

    const kills: Kill[] = [];
    /** Each server's output, for the story of a failure. */
    const outputs: string[] = [];
    let life = await start();
    child = life.child;
    for (const s of specs) {
      const res = await fetch(`${child.url}/api/downloads`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ url: s.info.url, folder: s.folder, sha256: s.info.sha256 }),
      });
      expect(res.status).toBe(202);
    }

    // The moments, shuffled by the seed; aimed ones later on, when downloads near their end.
    const aimed: Moment[] = ['verifying', 'verifying', 'verifying', 'completed', 'completed', 'completed', 'status-write', 'status-write', 'status-write', 'status-write'];
    const plan: Moment[] = [...Array<Moment>(KILLS - aimed.length).fill('random')];
    for (const m of aimed) plan.splice(Math.floor(KILLS / 3 + random() * (plan.length - KILLS / 3 + 1)), 0, m);

    for (const [i, moment] of plan.entries()) {
      if (i > 0) {
        life = await start();
        child = life.child;
      }
      const deadline = (moment === 'random' ? 150 + random() * 2200 : 2500 + random() * 3500);
      const seen = new Set(life.events);
      let hit = false;
      await new Promise<void>((resolve) => {
        let watcher: fs.FSWatcher | undefined;
        let fired = false;
        const fire = (aimedHit: boolean): void => {
          if (fired) return;
          fired = true;
          hit = aimedHit;
          clearTimeout(timer);
          clearInterval(poll);
          watcher?.close();
          life.child.proc.kill('SIGKILL');
          resolve();
        };
        const timer = setTimeout(() => fire(false), deadline);
        let poll: NodeJS.Timeout | undefined;
        if (moment === 'status-write') {
          // write-file-atomic writes `status.json.<n>` and renames it over the file: kill while it exists.
          watcher = fs.watch(dir, (_event, name) => {
            if (name && /^status\.json\.\d+$/.test(String(name))) fire(true);
          });
        } else if (moment === 'verifying' || moment === 'completed') {
          poll = setInterval(() => {
            for (const e of life.events) if (!seen.has(e) && e.startsWith(`${moment}:`)) return fire(true);
          }, 1);
        }
      });
      await life.child.exited;
      life.ws.terminate();
      outputs.push(life.child.output());
      const at = Date.now();

      // The status file parses and still has all three downloads.
      const saved = JSON.parse(await fsp.readFile(statusFile, 'utf8')) as Record<string, Entry>;
      expect(Object.keys(saved).sort()).toEqual(specs.map((s) => s.dest).sort());
      const disk = await checkDisk(`after kill ${i + 1} (${moment})`);
      const progress = specs.map((s) => `${s.name.split('.')[0]} ${saved[s.dest]!.status} ${saved[s.dest]!.progress}%`).join(', ');
      kills.push({ at, moment, hit, disk, progress });
      if (Object.values(saved).every((e) => e.status === 'completed')) break;
    }

    console.log(
      `CONNECTIONS=${connections}: ${kills.length} kills\n` +
        kills.map((k, i) => `  ${i + 1}. ${k.moment}${k.moment === 'random' ? '' : k.hit ? ' (hit)' : ' (missed: random)'}: ${k.progress}`).join('\n'),
    );
    // The last start: everything completes.
    life = await start();
    child = life.child;
    let last: Record<string, Entry> = {};
    const final = await waitFor(async () => {
      last = (await (await fetch(`${child!.url}/status`)).json()) as Record<string, Entry>;
      const entries = Object.values(last);
      return entries.length === 3 && entries.every((e) => isFinished(e.status)) ? last : undefined;
    }, 'every download to finish', 120_000, 200).catch((err: Error) => {
      throw new Error(`${err.message}\nstatus: ${JSON.stringify(last, null, 1)}\nserver output:\n${child!.output()}`);
    });
    life.ws.terminate();
    expect(await child.kill('SIGTERM')).toBe(0);
    outputs.push(child.output());
    child = undefined;

    expect(kills.length).toBeGreaterThanOrEqual(KILLS - 2); // the downloads outlived (nearly) every kill

    // Complete and correct.
    const failed = Object.values(final).filter((e) => e.status !== 'completed');
    if (failed.length > 0) {
      const story = outputs.map((o, n) => `--- server ${n + 1}\n${o}`).join('\n');
      throw new Error(`not completed: ${JSON.stringify(failed, null, 1)}\n${story}`);
    }
    for (const s of specs) {
      expect(final[s.dest]).toMatchObject({ status: 'completed', sha256: s.info.sha256, downloaded: s.size, file_size: s.size });
      expect(await sha256(s.abs)).toBe(s.info.sha256);
    }

    // Nothing left behind: only the three files under models/, only our files beside the status file.
    const left = (await fsp.readdir(modelsDir, { recursive: true })).map(String).filter((n) => !fs.statSync(path.join(modelsDir, n)).isDirectory());
    expect(left.sort()).toEqual(specs.map((s) => s.dest).sort());
    expect((await fsp.readdir(dir)).sort()).toEqual(['catalog.json', 'models', 'status.json']);

    // Every resume by Range, from where the bytes on disk ended.
    const violations: string[] = [];
    /** Requests for a file that was already complete on disk at the kill before them (see below). */
    const refetches: string[] = [];
    for (const s of specs) {
      const requests = files.requests.filter((r) => r.path === `/${s.name}`);
      requests.forEach((r, n) => {
        const kill = [...kills].reverse().find((k) => k.at <= r.startedAt);
        const start = rangeStart(r);
        const what = `${s.name} request ${n + 1} (${r.range ?? 'no Range'})`;
        if (connections > 1 && start === undefined) violations.push(`${what}: no Range from a server that serves ranges`);
        if (!kill) return; // the first life: nothing to resume yet
        const before = kill.disk[s.dest]!;
        const k = kills.indexOf(kill) + 1;
        if (before.segments) {
          const inDone = before.segments.find((g) => start !== undefined && start >= g.start && start < g.start + g.done);
          if (start === undefined) violations.push(`${what}: no Range although a segment map was on disk at kill ${k}`);
          else if (inDone) violations.push(`${what}: starts in ${inDone.start}-${inDone.start + inDone.done - 1}, which the segment map said was on disk at kill ${k}`);
        } else if (before.partSize > 0 && connections === 1) {
          if (start === undefined || start < before.partSize) violations.push(`${what}: ${before.partSize} bytes were in the .part at kill ${k}`);
        } else if (before.destExists) {
          refetches.push(`${what}: the file was complete on disk at kill ${k}`);
        }
      });
    }
    // A download killed after the rename of its finished .part and before the status file said
    // `completed` is finished from disk (verify.ts, alreadyFinished), also when the kill came
    // before its .part.json was removed (a map with no .part is not trusted). Never a wrong file.
    // Printed here; SOAK_STRICT=1 makes any refetch fail the run.
    if (refetches.length > 0) console.log(`CONNECTIONS=${connections}: complete files fetched again:\n  ${refetches.join('\n  ')}`);
    if (process.env.SOAK_STRICT === '1') expect(refetches).toEqual([]);
    expect(violations).toEqual([]);
  });
});
