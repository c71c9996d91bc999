/** A workflow plan's rows on the page (client/plan.ts): which entry a row follows and what it shows. */
import { entryOf, fetchRequest, fold, parsePlan, toDownload, viewOf, type PlannedModel } from '../../client/plan';
import type { Entry } from '../../server/protocol/wire';

const model = (name: string, patch: Partial<PlannedModel> = {}): PlannedModel => ({
  name,
  folder: 'loras',
  dest: `loras/${name}`,
  state: 'missing',
  url: `https://example.test/${name}`,
  source: 'workflow',
  nodes: [{ id: 3, type: 'LoraLoader' }],
  ...patch,
});
const entry = (id: string, dest: string, patch: Partial<Entry> = {}): Entry => ({
  id,
  dest,
  folder: 'loras',
  filename: dest.slice(dest.lastIndexOf('/') + 1),
  url: 'https://example.test/x',
  status: 'downloading',
  progress: 40,
  downloaded: 400,
  file_size: 1000,
  speed: 100,
  eta: 6,
  start_time: 1,
  timestamp: 1,
  attempts: 1,
  ...patch,
});
const maps = (...entries: Entry[]) => [new Map(entries.map((e) => [e.id, e])), new Map(entries.map((e) => [e.dest, e]))] as const;

test('parsePlan keeps the models a row can show and refuses what is not a plan', () => {
  const plan = parsePlan({ name: 'flow', models: [model('a.safetensors'), { name: 'broken' }, model('b.safetensors', { state: 'bogus' as never })], missing_bytes: 5 });
  expect(plan.name).toBe('flow');
  expect(plan.models.map((m) => m.name)).toEqual(['a.safetensors']);
  expect(plan.missing_bytes).toBe(5);
  expect(() => parsePlan({ error: { code: 'X', message: 'no' } })).toThrow('not a workflow plan');
  expect(parsePlan({ models: [] })).toEqual({ models: [], missing_bytes: 0 });
});

test('a row follows its download_id, else an unfinished download of its dest, never an old finished one', () => {
  const m = model('a.safetensors');
  const running = entry('e1', m.dest);
  expect(entryOf(m, ...maps(running))).toBe(running);
  const old = entry('e0', m.dest, { status: 'error' });
  expect(entryOf(m, ...maps(old))).toBeUndefined();
  expect(entryOf({ ...m, download_id: 'e0' }, ...maps(old))).toBe(old);
});

test('what a row shows for each state of its entry', () => {
  const m = model('a.safetensors', { download_id: 'e1', state: 'active' });
  expect(viewOf(m, entry('e1', m.dest), true).state).toBe('active');
  expect(viewOf(m, entry('e1', m.dest, { status: 'paused' }), true).state).toBe('active');
  expect(viewOf(m, entry('e1', m.dest, { status: 'completed' }), true).state).toBe('installed');
  expect(viewOf(m, entry('e1', m.dest, { status: 'error' }), true).state).toBe('failed');
  expect(viewOf(m, entry('e1', m.dest, { status: 'cancelled' }), true)).toMatchObject({ state: 'missing', cancelled: true });
  expect(viewOf({ ...m, url: null }, entry('e1', m.dest, { status: 'cancelled' }), true).state).toBe('no_source');
  // Active by the plan but unknown to the server (cleared since): missing; before the snapshot, as planned.
  expect(viewOf(m, undefined, true).state).toBe('missing');
  expect(viewOf(m, undefined, false).state).toBe('active');
  expect(viewOf(model('b', { state: 'installed' }), undefined, true).state).toBe('installed');
});

test('fold keeps the plan right: linked, installed once completed, missing again after a failure', () => {
  const m = model('a.safetensors', { found_at: 'x' });
  expect(fold(m, { state: 'missing' })).toBe(m); // nothing new: the same object
  const active = fold(m, { state: 'active', entry: entry('e1', m.dest) });
  expect(active).toMatchObject({ state: 'active', download_id: 'e1' });
  const done = fold(active, { state: 'installed', entry: entry('e1', m.dest, { status: 'completed', file_size: 1234 }) });
  expect(done).toMatchObject({ state: 'installed', size: 1234, download_id: 'e1' });
  expect(done.found_at).toBeUndefined();
  expect(fold(active, { state: 'failed', entry: entry('e1', m.dest, { status: 'error' }) }).state).toBe('missing');
});

test('"Download N missing" counts what the server would start, with the bytes it knows', () => {
  const models = [
    model('a', { size: 100 }),
    model('b'),
    model('c', { size: 50, error: { code: 'INVALID_PATH', message: 'no' } }),
    model('d', { size: 7 }),
    model('e', { url: null, state: 'no_source' }),
  ];
  const views = [{ state: 'missing' }, { state: 'missing' }, { state: 'missing' }, { state: 'active' }, { state: 'no_source' }] as const;
  expect(toDownload(models, [...views])).toEqual({ count: 2, bytes: 100, unknown: 1 });
});

test('a pasted URL goes to the model folder, subfolders of its name included', () => {
  expect(fetchRequest({ folder: 'loras', name: 'SDXL/detail.safetensors' }, 'https://x/y')).toEqual({ url: 'https://x/y', folder: 'loras/SDXL', filename: 'detail.safetensors' });
  expect(fetchRequest({ folder: 'upscale_models', name: '4x.pth' }, 'https://x/y')).toEqual({ url: 'https://x/y', folder: 'upscale_models', filename: '4x.pth' });
});
