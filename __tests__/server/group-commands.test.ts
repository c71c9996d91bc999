/**
 * `POST /api/groups/:id/{pause,resume,cancel,retry}`: one request for every download of a group
 * (a workflow's models here), each through the same command as its own button.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry, GroupCommandAnswer, WorkflowDownloadAnswer } from '../../server/protocol/wire';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { settled, startTestServer, waitFor, type TestServer } from '../helpers/harness';
import { node } from '../workflows/fixtures';

let files: FileServer;
let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
  await files?.close();
});

const link = (name: string, url: string) => ({ properties: { models: [{ name, url, directory: 'loras' }] } });
const sha256 = async (file: string): Promise<string> => crypto.createHash('sha256').update(await fs.readFile(file)).digest('hex');

/** A workflow of three LoRAs started as one group on a server that runs one download at a time. */
async function threeLoras(size: number, throttle?: number): Promise<{ group: string; downloads: Entry[]; sha: Record<string, string> }> {
  files = await startFileServer();
  const sha: Record<string, string> = {};
  const nodes = ['a', 'b', 'c'].map((n, i) => {
    const f = files.addFile(`/${n}.safetensors`, { size, ...(throttle ? { throttle } : {}) });
    sha[`loras/${n}.safetensors`] = f.sha256;
    return node(i + 1, 'LoraLoaderModelOnly', [`${n}.safetensors`, 1], link(`${n}.safetensors`, f.url));
  });
  srv = await startTestServer({ MAX_CONCURRENT: '1' });
  const res = await srv.api('POST', '/api/workflows/download?name=three', { nodes, links: [] });
  expect(res.status).toBe(202);
  const body = res.body as WorkflowDownloadAnswer;
  expect(body.downloads).toHaveLength(3);
  return { group: body.group.id, downloads: body.downloads, sha };
}

test('pause stops every download of the group and none starts meanwhile; resume finishes them all exact', async () => {
  const { group, downloads, sha } = await threeLoras(2_000_000, 400_000);
  await waitFor(() => downloads.some((d) => srv!.store.get(d.dest)!.downloaded > 0), 'the first download to move');

  const paused = await srv!.api('POST', `/api/groups/${group}/pause`);
  expect(paused.status).toBe(200);
  const answer = paused.body as GroupCommandAnswer;
  expect(answer.group.name).toBe('three');
  expect(answer.downloads.map((d) => d.status)).toEqual(['paused', 'paused', 'paused']);
  expect(answer.left).toEqual([]);
  await srv!.store.flush();
  // Pausing the one under way let no queued one of the group start: only one file was fetched (the plan asked each for its size).
  const asked = new Set(files.requests.filter((r) => r.range !== 'bytes=0-0').map((r) => r.path));
  expect(asked.size).toBe(1);
  for (const d of downloads) expect(srv!.store.get(d.dest)!.status).toBe('paused');

  for (const n of ['a', 'b', 'c']) files.setFileOptions(`/${n}.safetensors`, { throttle: 0 });
  const resumed = await srv!.api('POST', `/api/groups/${group}/resume`);
  expect((resumed.body as GroupCommandAnswer).downloads.map((d) => d.status)).toEqual(['queued', 'queued', 'queued']);
  for (const d of downloads) expect((await settled(srv!, d.id, 20_000)).status).toBe('completed');
  for (const d of downloads) expect(await sha256(path.join(srv!.modelsDir, d.dest))).toBe(sha[d.dest]);
});

test('cancel leaves the completed ones and says so; retry starts the cancelled ones again', async () => {
  const { group, downloads } = await threeLoras(300_000, 300_000);
  const first = await settled(srv!, downloads[0]!.id, 10_000);
  expect(first.status).toBe('completed');

  const cancelled = (await srv!.api('POST', `/api/groups/${group}/cancel`)).body as GroupCommandAnswer;
  expect(cancelled.downloads.map((d) => [d.dest, d.status]).sort()).toEqual([
    ['loras/b.safetensors', 'cancelled'],
    ['loras/c.safetensors', 'cancelled'],
  ]);
  expect(cancelled.left).toEqual([{ id: first.id, dest: first.dest, status: 'completed' }]);

  for (const n of ['b', 'c']) files.setFileOptions(`/${n}.safetensors`, { throttle: 0 });
  const retried = (await srv!.api('POST', `/api/groups/${group}/retry`)).body as GroupCommandAnswer;
  expect(retried.downloads).toHaveLength(2);
  for (const d of downloads) expect((await settled(srv!, d.id, 20_000)).status).toBe('completed');
});

test('an unknown group is a 404 and changes nothing', async () => {
  files = await startFileServer();
  srv = await startTestServer();
  const res = await srv.api('POST', '/api/groups/nope/cancel');
  expect(res.status).toBe(404);
  expect(res.body.error.code).toBe('NOT_FOUND');
});
