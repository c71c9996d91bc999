/**
 * The page's fleet logic (client/fleet.ts): reading `GET /api/fleet` (as a real fleet server
 * answers it), when to ask again, the texts of a silent instance's rows and of commands handed
 * over, and FleetWatch's spacing of its requests (fake timers: the timing is what is tested).
 */
import path from 'node:path';
import { actionHint, elsewhereText, FleetWatch, forwardedNote, needsRefresh, parseFleet, silenceText, staleNote, type FleetInfo, type FleetState } from '../../client/fleet';
import type { FleetDescription } from '../../server/protocol/wire';
import { formatClock } from '../../client/format';
import { testEntry } from '../helpers/entries';
import { startTestServer, tempDir } from '../helpers/harness';

/** 14:30:00 local time on some day, in epoch ms. */
const AT = new Date(2025, 5, 1, 14, 30, 0).getTime();

const info = (instances: Array<Partial<FleetDescription['instances'][number]> & { name: string }>, self = 'pod-b', receivedAt = AT): FleetInfo =>
  parseFleet(
    {
      instance: self,
      stale_seconds: 30,
      instances: instances.map((i) => ({ self: i.name === self, live: true, stopped: false, silent_seconds: 0, downloads: 1, active: 1, ...i })),
    },
    receivedAt,
  )!;

test('the answer of a real fleet server is read as it is', async () => {
  const { dir, cleanup } = await tempDir('md-fleet-unit-');
  const env = (name: string) => ({
    MODELS_DIR: path.join(dir, 'models'),
    FLEET_DIR: path.join(dir, 'fleet'),
    INSTANCE_NAME: name,
    STATUS_FILE: path.join(dir, `status-${name}.json`),
    CATALOG_FILE: path.join(dir, 'catalog.json'),
  });
  const a = await startTestServer(env('pod-a'), { dir, fleet: { pollMs: 100 } });
  const b = await startTestServer(env('pod-b'), { dir, fleet: { pollMs: 100 } });
  try {
    const body = (await b.api('GET', '/api/fleet')).body as FleetDescription;
    const parsed = parseFleet(body, AT)!;
    expect(parsed).toMatchObject({ instance: 'pod-b', stale_seconds: 30, receivedAt: AT });
    expect(parsed.instances.map((i) => [i.name, i.self, i.live, i.stopped])).toEqual([
      ['pod-b', true, true, false],
      ['pod-a', false, true, false],
    ]);
    expect(parsed.byName.get('pod-a')).toEqual(body.instances[1]);
  } finally {
    await b.stop({ keepDir: true });
    await a.stop({ keepDir: true });
    await cleanup();
  }
});

test('what is not an answer of /api/fleet is refused; an instance that is not one is left out', () => {
  for (const body of [null, 'x', [], {}, { instance: '', stale_seconds: 30, instances: [] }, { instance: 'a', stale_seconds: -1, instances: [] }, { instance: 'a', stale_seconds: 30 }]) {
    expect(parseFleet(body, AT)).toBeUndefined();
  }
  const parsed = parseFleet({ instance: 'a', stale_seconds: 30, instances: [{ name: 'a', self: true, live: true, silent_seconds: 0, downloads: 0, active: 0 }, { name: 'b' }, 7] }, AT)!;
  expect(parsed.instances.map((i) => i.name)).toEqual(['a']);
});

test('asks again when the entries name an instance the answer does not list, or one whose liveness changed', () => {
  const on: FleetState = { mode: 'on', info: info([{ name: 'pod-b' }, { name: 'pod-a' }]) };
  expect(needsRefresh(on, [testEntry('1', { instance: 'pod-a' }), testEntry('2', { instance: 'pod-b' }), testEntry('3'), undefined])).toBe(false);
  expect(needsRefresh(on, [testEntry('1', { instance: 'pod-c' })])).toBe(true); // a new server
  expect(needsRefresh(on, [testEntry('1', { instance: 'pod-a', instance_stale: true })])).toBe(true); // gone silent
  const silent: FleetState = { mode: 'on', info: info([{ name: 'pod-b' }, { name: 'pod-a', live: false }]) };
  expect(needsRefresh(silent, [testEntry('1', { instance: 'pod-a', instance_stale: true })])).toBe(false);
  expect(needsRefresh(silent, [testEntry('1', { instance: 'pod-a' })])).toBe(true); // back
  // A lone server's entries never ask; a server restarted into fleet mode does.
  expect(needsRefresh({ mode: 'off' }, [testEntry('1')])).toBe(false);
  expect(needsRefresh({ mode: 'off' }, [testEntry('1', { instance: 'pod-a' })])).toBe(true);
  expect(needsRefresh({ mode: 'unknown' }, [testEntry('1', { instance: 'pod-a' })])).toBe(false);
});

test('a silent instance\'s rows say since when (its silence as the server measured it), and what becomes of them', () => {
  const now = Date.now();
  const fleet = info([{ name: 'pod-b' }, { name: 'pod-a', live: false, silent_seconds: 90 }, { name: 'pod-c', live: false, stopped: true, silent_seconds: 30 }], 'pod-b', now);
  const since = (epochMs: number): string => formatClock(epochMs / 1000);
  expect(silenceText('pod-a', fleet)).toBe(`silent since ${since(now - 90_000)}`);
  expect(silenceText('pod-c', fleet)).toBe(`stopped at ${since(now - 30_000)}`);
  expect(silenceText('pod-z', fleet)).toBe('silent');

  const paused = testEntry('1', { instance: 'pod-a', instance_stale: true, status: 'paused' });
  expect(staleNote(paused, fleet)).toBe(
    `Instance pod-a silent since ${since(now - 90_000)}; this row is what it last published. Another server takes this download over after 30 s of silence and goes on from its .part.`,
  );
  expect(staleNote({ ...paused, status: 'completed' }, fleet)).toBe(`Instance pod-a silent since ${since(now - 90_000)}; this row is what it last published.`);
  expect(staleNote(paused, undefined)).toBe(
    'Instance pod-a silent; this row is what it last published. Another server takes this download over once it has been silent for FLEET_STALE_SECONDS and goes on from its .part.',
  );
  expect(staleNote({ ...paused, instance_stale: undefined }, fleet)).toBeUndefined();
  expect(staleNote(testEntry('2'), fleet)).toBeUndefined();
});

test('the buttons of another instance\'s row say where the command goes; this server\'s own and a lone server\'s say nothing', () => {
  const fleet = info([{ name: 'pod-b' }, { name: 'pod-a' }]);
  const theirs = testEntry('1', { instance: 'pod-a' });
  expect(actionHint('pause', theirs, fleet)).toBe('Pause: handed to instance pod-a, which has this download; the row changes when it has done it');
  expect(actionHint('resume', { ...theirs, status: 'paused', instance_stale: true }, fleet)).toBe(
    'Resume: refused while instance pod-a is silent, until it is back, or another server has taken the download over (after 30 s of silence)',
  );
  expect(actionHint('retry', { ...theirs, status: 'error', instance_stale: true }, fleet)).toBe('Retry: refused while instance pod-a is silent, until it is back');
  expect(actionHint('pause', testEntry('2', { instance: 'pod-b' }), fleet)).toBeUndefined();
  expect(actionHint('pause', testEntry('3'), fleet)).toBeUndefined();
  expect(actionHint('pause', theirs, undefined)).toBeUndefined(); // which one is ours is not known yet
  expect(forwardedNote('cancel', 'pod-a')).toBe('Cancel handed to instance pod-a, which has this download; the row changes when pod-a has done it.');
});

test('a new download another instance has: its refusal named as such; every other refusal left alone', () => {
  const holder = { download: testEntry('1', { instance: 'pod-a', status: 'downloading' }) };
  expect(elsewhereText('ACTIVE_ELSEWHERE', 'loras/1.safetensors is downloading on instance pod-a', holder)).toBe(
    'loras/1.safetensors is downloading on instance pod-a. Its row in the list shows its progress, marked pod-a.',
  );
  const unnamed = 'loras/1.safetensors is being downloaded by another server of the fleet (it holds the destination\'s lock and has not listed it yet); try again in a moment';
  expect(elsewhereText('ACTIVE_ELSEWHERE', unnamed, { error: {} })).toBe(`${unnamed}.`);
  expect(elsewhereText('ALREADY_ACTIVE', 'x', holder)).toBeUndefined();
});

describe('FleetWatch', () => {
  beforeEach(() => jest.useFakeTimers({ now: AT }));
  afterEach(() => jest.useRealTimers());

  const answer = { instance: 'pod-b', stale_seconds: 30, instances: [{ name: 'pod-b', self: true, live: true, stopped: false, silent_seconds: 0, downloads: 0, active: 0 }] };
  const notFound = Object.assign(new Error('No route'), { status: 404 });

  function watch(reply: () => Promise<unknown>, visible = () => true) {
    const calls: number[] = [];
    const states: FleetState[] = [];
    const w = new FleetWatch({ load: () => (calls.push(Date.now() - AT), reply()), onChange: (s) => states.push(s), visible, periodMs: 10_000, minGapMs: 1000 });
    return { w, calls, states };
  }

  test('one request at a time, at most one a second however often asked, then every period', async () => {
    const { w, calls, states } = watch(async () => answer);
    w.refresh();
    w.refresh(); // under way: one more after it
    w.refresh();
    await jest.advanceTimersByTimeAsync(0);
    expect(calls).toEqual([0]);
    expect(states.at(-1)).toMatchObject({ mode: 'on', info: { instance: 'pod-b' } });
    await jest.advanceTimersByTimeAsync(999);
    expect(calls).toEqual([0]);
    await jest.advanceTimersByTimeAsync(1);
    expect(calls).toEqual([0, 1000]);
    for (let i = 0; i < 5; i++) w.refresh(); // within the gap: one, delayed
    await jest.advanceTimersByTimeAsync(1000);
    expect(calls).toEqual([0, 1000, 2000]);
    await jest.advanceTimersByTimeAsync(25_000);
    expect(calls).toEqual([0, 1000, 2000, 12_000, 22_000]);
    w.close();
    await jest.advanceTimersByTimeAsync(30_000);
    expect(calls).toHaveLength(5);
  });

  test('a 404 is fleet mode off: said once, and not asked again until the page has a reason', async () => {
    const { w, calls, states } = watch(async () => Promise.reject(notFound));
    w.refresh();
    await jest.advanceTimersByTimeAsync(60_000);
    expect(calls).toEqual([0]);
    expect(states).toEqual([{ mode: 'off' }]);
    w.refresh();
    await jest.advanceTimersByTimeAsync(0);
    expect(calls).toEqual([0, 60_000]);
    w.close();
  });

  test('a failure keeps what is shown and tries again a period later; a 401 waits for the token', async () => {
    let reply: () => Promise<unknown> = async () => answer;
    const { w, calls, states } = watch(() => reply());
    w.refresh();
    await jest.advanceTimersByTimeAsync(0);
    reply = async () => Promise.reject(Object.assign(new Error('down'), { status: 0 }));
    await jest.advanceTimersByTimeAsync(10_000);
    expect(calls).toEqual([0, 10_000]);
    expect(states).toHaveLength(1); // still the first answer
    reply = async () => ({ not: 'an answer' });
    await jest.advanceTimersByTimeAsync(10_000);
    expect(states).toHaveLength(1);
    reply = async () => Promise.reject(Object.assign(new Error('token'), { status: 401 }));
    await jest.advanceTimersByTimeAsync(10_000);
    await jest.advanceTimersByTimeAsync(60_000);
    expect(calls).toEqual([0, 10_000, 20_000, 30_000]);
    w.close();
  });

  test('a hidden tab is not refreshed periodically', async () => {
    let visible = true;
    const { w, calls } = watch(async () => answer, () => visible);
    w.refresh();
    await jest.advanceTimersByTimeAsync(0);
    visible = false;
    await jest.advanceTimersByTimeAsync(60_000);
    expect(calls).toEqual([0]);
    visible = true;
    w.refresh(); // the page, when the tab is shown again
    await jest.advanceTimersByTimeAsync(0);
    expect(calls).toEqual([0, 60_000]);
    w.close();
  });
});
