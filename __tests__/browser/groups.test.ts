/** A group header's numbers (client/groups.ts): pure functions, no browser needed. */
import { countsText, groupCommandMessage, groupStatus, groupTotals, membersByGroup } from '../../client/groups';
import type { Entry } from '../../server/protocol/wire';
import { testEntry } from '../helpers/entries';

const MB = 1024 * 1024;
const group = { id: 'g1', name: 'my-flow' };
const entry = (id: string, patch: Partial<Entry> = {}): Entry => testEntry(id, { file_size: 10 * MB, start_time: 100, timestamp: 100, group, ...patch });

test('sums: bytes of the known sizes, speed of the transfers, time from what is still to come', () => {
  const t = groupTotals([
    entry('a', { status: 'completed', downloaded: 10 * MB, completion_time: 130, start_time: 90 }),
    entry('b', { downloaded: 4 * MB, speed: 2 * MB }),
    entry('c', { downloaded: 1 * MB, speed: 1 * MB, file_size: 4 * MB }),
    entry('d', { status: 'paused', downloaded: 2 * MB }), // not arriving: out of `left`
    entry('e', { status: 'queued', file_size: null }),
    entry('f', { status: 'cancelled', downloaded: 3 * MB }), // nobody waits for it
    entry('g', { status: 'error', downloaded: 5 * MB, file_size: null, timestamp: 150 }),
  ]);
  expect(t).toMatchObject({ count: 7, completed: 1, failed: 1, cancelled: 1, paused: 1, unfinished: 4, speed: 3 * MB, unknownSizes: 1 });
  expect(t.total).toBe(34 * MB);
  expect(t.done).toBe(17 * MB);
  expect(t.left).toBe(6 * MB + 3 * MB);
  expect(t.eta).toBe(3);
  expect(t.status).toBe('downloading');
  expect(t.startTime).toBe(90);
  expect(t.endTime).toBe(150);
  expect(countsText(t)).toBe('1 of 7 done · 1 failed · 1 cancelled · 1 paused');
});

test("a completed member counts as its whole size; nothing flowing means no time", () => {
  const t = groupTotals([entry('a', { status: 'completed', downloaded: 3 * MB, file_size: null }), entry('b', { status: 'queued' })]);
  expect([t.done, t.total, t.eta, t.status]).toEqual([3 * MB, 13 * MB, null, 'queued']);
  expect(countsText(t)).toBe('1 of 2 done');
});

test("the group's status: the liveliest state while one is unfinished, then how it ended", () => {
  const s = (...statuses: Entry['status'][]) => groupStatus(statuses.map((status) => ({ status })));
  expect(s('completed', 'starting', 'paused')).toBe('downloading');
  expect(s('verifying', 'queued')).toBe('verifying');
  expect(s('paused', 'queued', 'completed')).toBe('queued');
  expect(s('paused', 'error')).toBe('paused');
  expect(s('completed', 'error', 'cancelled')).toBe('error');
  expect(s('completed', 'cancelled')).toBe('completed');
  expect(s('cancelled')).toBe('cancelled');
});

test('members by group; entries without one are left out', () => {
  const other = { id: 'g2', name: 'org/repo' };
  const byGroup = membersByGroup([entry('a'), entry('b', { group: other }), entry('c', { group: undefined }), entry('d')]);
  expect([...byGroup.entries()].map(([id, list]) => [id, list.map((e) => e.id)])).toEqual([
    ['g1', ['a', 'd']],
    ['g2', ['b']],
  ]);
});

test('a group command\'s message: nothing when all it fits changed; the refused ones with why; nothing to do', () => {
  const a = entry('a', { dest: 'loras/a.safetensors', status: 'paused' });
  expect(groupCommandMessage('pause', { group, downloads: [a], left: [{ id: 'b', dest: 'loras/b.safetensors', status: 'completed' }] })).toBeUndefined();
  const refused = (n: number) => ({ id: `r${n}`, dest: `loras/r${n}.safetensors`, status: 'downloading' as const, error: { code: 'INSTANCE_STALE', message: `pod-${n} is silent` } });
  expect(groupCommandMessage('pause', { group, downloads: [a], left: [refused(1)] })).toBe('1 paused; 1 could not be paused: r1.safetensors: pod-1 is silent');
  expect(groupCommandMessage('cancel', { group, downloads: [], left: [1, 2, 3, 4].map(refused) })).toBe(
    '4 could not be cancelled: r1.safetensors: pod-1 is silent · r2.safetensors: pod-2 is silent · r3.safetensors: pod-3 is silent · and 1 more',
  );
  expect(groupCommandMessage('retry', { group, downloads: [], left: [] })).toBe('Nothing left to retry in this group.');
});
