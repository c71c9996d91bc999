import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import type { Plan } from '../../cli/answers';
import { parseArgs, UsageError } from '../../cli/args';
import { createRenderer, line, totalLine } from '../../cli/render';
import { planTable, readWorkflowFile } from '../../cli/workflow';
import type { Entry } from '../../server/protocol/wire';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, tempDir, waitFor, type TestServer } from '../helpers/harness';
import { node, png } from '../workflows/fixtures';

const ROOT = path.resolve(__dirname, '..', '..');
const MAIN = path.join(ROOT, 'dist', 'cli', 'cli', 'main.js');

beforeAll(() => {
  // What `npm run cli` does first; into dist/cli/ only, so the server build under test is untouched.
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.cli.json'], { cwd: ROOT, stdio: 'inherit' });
}, 60_000);

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/** Runs the built CLI as a child; `onOutput` sees stdout as it grows. */
function cli(args: string[], env: Record<string, string> = {}, onOutput?: (out: string) => void): Promise<Run> {
  const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    onOutput?.(out);
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

let files: FileServer;
let srv: TestServer;
let hub: FakeHub | undefined;
beforeEach(async () => {
  files = await startFileServer();
});
afterEach(async () => {
  await srv?.stop();
  await files.close();
  await hub?.close();
  hub = undefined;
});

/** A port nothing listens on: one the system gave out and took back. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** A UI-format workflow whose loaders name these models, each with its link when it has a URL. */
function workflowOf(models: Array<{ name: string; folder: string; url?: string; loader?: string }>): object {
  return {
    nodes: models.map((m, i) =>
      node(i + 1, m.loader ?? 'LoraLoaderModelOnly', [m.name, 1], m.url ? { properties: { models: [{ name: m.name, url: m.url, directory: m.folder }] } } : {}),
    ),
    links: [],
  };
}

/** Writes `content` to a file in the server's temp folder (removed with it); returns its path. */
async function writeFile(name: string, content: string | Buffer): Promise<string> {
  const file = path.join(srv.dir, name);
  await fs.writeFile(file, content);
  return file;
}

test('watch draws bars until the downloads are done and exits 0', async () => {
  // The transfer hangs mid-file (no stall timeout) until the watcher has drawn it: no race with a fast download.
  srv = await startTestServer({ CONNECTIONS: '1' }, { downloader: { stallMs: 60_000 } });
  const f = files.addFile('/flux-lora.safetensors', { size: 600_000 });
  files.fault('/flux-lora.safetensors', { stallAfter: 200_000 });
  const { body } = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
  await files.waitForBytes('/flux-lora.safetensors', 200_000);
  await waitFor(() => srv.store.getById(body.download.id)?.status === 'downloading', 'the transfer');

  let released = false;
  const run = await cli(['watch', '--server', srv.url], {}, (out) => {
    if (!released && out.includes('loras/flux-lora.safetensors')) {
      released = true;
      files.releaseStalls();
    }
  });
  expect(run.err).toBe('');
  expect(run.code).toBe(0);
  expect(run.out).toMatch(/↓ loras\/flux-lora\.safetensors +\[#*-+\] +\d{1,2}% .* ETA /); // a bar on its way
  expect(run.out).toMatch(/✓ loras\/flux-lora\.safetensors +\[#{24}\] 100% +586 KB \/ 586 KB +completed/);
  expect(run.out).toContain('Done: 1 completed.');
  expect(srv.store.getById(body.download.id)?.status).toBe('completed');
});

test('watch exits 1 when a download it watched fails, and says why', async () => {
  srv = await startTestServer({ CONNECTIONS: '1' }, { downloader: { stallMs: 60_000 } });
  const f = files.addFile('/gone.safetensors', { size: 300_000 });
  files.fault('/gone.safetensors', { stallAfter: 1000 }, { status: 404 });
  const { body } = await srv.api('POST', '/api/downloads', { url: f.url, folder: 'loras' });
  await files.waitForBytes('/gone.safetensors', 1000);
  await waitFor(() => srv.store.getById(body.download.id)?.status === 'downloading', 'the transfer');
  let released = false;
  const run = await cli(['watch', '--server', srv.url], {}, (out) => {
    if (!released && out.includes('loras/gone.safetensors')) {
      released = true;
      files.releaseStalls();
    }
  });
  expect(run.code).toBe(1);
  expect(run.out).toContain('Done: 0 completed, 1 failed.');
  expect(run.out).toMatch(/✗ loras\/gone\.safetensors: .*404.* \(HTTP_404\)/);
});

test('add waits for its download: a bar that moves, speed and ETA, 100% at the end, exit 0', async () => {
  // The transfer hangs at a third until the CLI has drawn it on its way: no race with a fast download.
  srv = await startTestServer({}, { downloader: { stallMs: 60_000 } });
  const f = files.addFile('/upscaler-x4.pth', { size: 600_000 });
  files.fault('/upscaler-x4.pth', { stallAfter: 200_000 });
  let released = false;
  const run = await cli(['add', f.url, '--folder', 'upscale_models', '--sha256', f.sha256, '--server', srv.url], {}, (out) => {
    if (!released && /↓ upscale_models\/upscaler-x4\.pth .* [1-9]\d%/.test(out)) {
      released = true;
      files.releaseStalls();
    }
  });
  expect(run).toMatchObject({ code: 0, err: '' });
  expect(run.out).toMatch(/^Started: upscale_models\/upscaler-x4\.pth \(id \w+\)\.\n/);
  expect(run.out).toMatch(/↓ upscale_models\/upscaler-x4\.pth +\[#+-+\] +[1-9]\d% +\d+ KB \/ 586 KB +[\d.]+ [KM]B\/s +ETA /);
  expect(run.out).toMatch(/✓ upscale_models\/upscaler-x4\.pth +\[#{24}\] 100% +586 KB \/ 586 KB +completed\n/);
  expect(run.out).toMatch(/Done: 1 completed\.\n$/);
  // It returned when the download had ended, verified.
  expect(srv.store.get('upscale_models/upscaler-x4.pth')).toMatchObject({ status: 'completed', sha256: f.sha256 });
});

test('add of a URL that answers 404 exits 1 with the reason; a refused request too', async () => {
  srv = await startTestServer();
  const run = await cli(['add', `${files.url}/nowhere/model.safetensors`, '--folder', 'loras', '--server', srv.url]);
  expect(run.code).toBe(1);
  expect(run.out).toContain('Started: loras/model.safetensors');
  expect(run.out).toMatch(/✗ loras\/model\.safetensors .* error: .*404/);
  expect(run.out).toContain('Done: 0 completed, 1 failed.');
  const error = srv.store.get('loras/model.safetensors')!.error!;
  expect(error.code).toBe('HTTP_404');
  expect(run.out).toContain(`  ✗ loras/model.safetensors: ${error.message} (HTTP_404)\n`);

  const refused = await cli(['add', `${files.url}/x.bin`, '--folder', '../etc', '--server', srv.url]);
  expect(refused.code).toBe(1);
  expect(refused.err).toMatch(/^error: .*\(INVALID_PATH\)\n$/);
});

test('add --no-wait returns once the server took it; an existing file is already there (exit 0); status lists them', async () => {
  srv = await startTestServer({}, { downloader: { stallMs: 60_000 } });
  const f = files.addFile('/slow.safetensors', { size: 300_000 });
  files.fault('/slow.safetensors', { stallAfter: 1000 });
  const run = await cli(['add', f.url, '--folder', 'loras', '--no-wait', '--server', srv.url]);
  expect(run).toEqual({ code: 0, err: '', out: expect.stringMatching(/^Started: loras\/slow\.safetensors \(id \w+\)\.\nFollow it with: npm run cli -- watch\n$/) });
  // The transfer cannot have ended: its source holds it until released.
  expect(srv.store.get('loras/slow.safetensors')!.status).not.toBe('completed');
  files.releaseStalls();
  await waitFor(() => srv.store.get('loras/slow.safetensors')?.status === 'completed', 'the download');

  await fs.mkdir(path.join(srv.modelsDir, 'vae'), { recursive: true });
  await fs.writeFile(path.join(srv.modelsDir, 'vae', 'have.safetensors'), Buffer.alloc(2048));
  const requests = files.requests.length;
  const there = await cli(['add', `${files.url}/have.safetensors`, '--folder', 'vae', '--server', srv.url]);
  expect(there).toEqual({ code: 0, err: '', out: 'Already there: vae/have.safetensors (2.00 KB); give --filename to save it under another name.\n' });
  expect(files.requests.length).toBe(requests);

  const json = await cli(['status', '--json', '--server', srv.url]);
  expect(json.code).toBe(0);
  expect(JSON.parse(json.out)).toEqual({ downloads: [expect.objectContaining({ dest: 'loras/slow.safetensors', status: 'completed' })] });
  const text = await cli(['status', '--server', srv.url]);
  expect(text.out).toMatch(/^✓ loras\/slow\.safetensors .* 100% .*completed\n$/);
});

test('add of a file the server has elsewhere (same sha256) says where it is, and --link links it (exit 0, nothing fetched)', async () => {
  srv = await startTestServer();
  const f = files.addFile('/model.safetensors', { size: 3000 });
  expect((await cli(['add', f.url, '--folder', 'checkpoints', '--sha256', f.sha256, '--server', srv.url])).code).toBe(0);
  const requests = files.requests.length;
  const named = await cli(['add', f.url, '--folder', 'loras', '--sha256', f.sha256, '--server', srv.url]);
  expect(named).toEqual({ code: 0, err: '', out: 'Already there: the same file (sha256) is checkpoints/model.safetensors (2.93 KB); give --link to link it into loras too.\n' });
  const linked = await cli(['add', f.url, '--folder', 'loras', '--sha256', f.sha256, '--link', '--server', srv.url]);
  expect(linked).toEqual({ code: 0, err: '', out: 'Linked: loras/model.safetensors is now the same file as checkpoints/model.safetensors (2.93 KB); nothing downloaded.\n' });
  expect((await fs.stat(path.join(srv.modelsDir, 'loras', 'model.safetensors'))).nlink).toBe(2);
  expect(files.requests.length).toBe(requests);
});

test('API_TOKEN from the environment opens a protected server, over HTTP and the WebSocket', async () => {
  srv = await startTestServer({ API_TOKEN: 'sesame' });
  const without = await cli(['status', '--server', srv.url]);
  expect(without.code).toBe(2);
  expect(without.err).toContain('set API_TOKEN');
  const watchWithout = await cli(['watch', '--server', srv.url]);
  expect(watchWithout.code).toBe(2);
  expect(watchWithout.err).toContain('set API_TOKEN');

  expect(await cli(['status', '--server', srv.url], { API_TOKEN: 'sesame' })).toEqual({ code: 0, out: 'No downloads.\n', err: '' });
  expect(await cli(['watch', '--server', srv.url], { API_TOKEN: 'sesame' })).toEqual({ code: 0, out: 'No active downloads.\n', err: '' });
});

test('a server that is not there is said so, with exit code 2', async () => {
  const run = await cli(['watch', '--server', 'http://127.0.0.1:9']);
  expect(run.code).toBe(2);
  expect(run.err).toContain('Cannot reach http://127.0.0.1:9/');
});

test('a server that cannot be used exits 2 for every command: unreachable, or failing with a 5xx', async () => {
  const port = await closedPort();
  const server = `http://127.0.0.1:${port}`;
  srv = await startTestServer();
  const file = await writeFile('flow.json', JSON.stringify(workflowOf([{ name: 'a.safetensors', folder: 'loras' }])));
  for (const args of [['add', `${files.url}/a.safetensors`], ['workflow', file], ['workflow', file, '--dry-run'], ['status'], ['watch']]) {
    const run = await cli([...args, '--server', server]);
    expect({ args, code: run.code }).toEqual({ args, code: 2 });
    expect(run.err).toContain(`Cannot reach ${server}/`);
  }
  // A catalog that does not parse: the server answers 500 to a plan, which reads it.
  await fs.writeFile(srv.config.catalogFile, '{ not json');
  const failing = await cli(['workflow', file, '--dry-run', '--server', srv.url]);
  expect(failing.code).toBe(2);
  expect(failing.err).toMatch(/^error: .*\(CATALOG_INVALID, HTTP 500\)\n$/);
});

test('pause, resume, cancel and retry from the terminal: one download by dest or id, a whole group by its name or id', async () => {
  // The transfers hang mid-file (no stall timeout): each stays under way until the commands have run.
  srv = await startTestServer({ CONNECTIONS: '1' }, { downloader: { stallMs: 60_000 } });
  const one = files.addFile('/one.safetensors', { size: 300_000 });
  const a = files.addFile('/a.safetensors', { size: 300_000 });
  const b = files.addFile('/b.safetensors', { size: 300_000 });
  for (const f of ['/one.safetensors', '/a.safetensors', '/b.safetensors']) files.fault(f, { stallAfter: 100_000 });
  const single = (await srv.api('POST', '/api/downloads', { url: one.url, folder: 'loras' })).body.download as Entry;
  const flow = await srv.api('POST', '/api/workflows/download?name=style-flow.json', workflowOf([
    { name: 'a.safetensors', folder: 'loras', url: a.url },
    { name: 'b.safetensors', folder: 'loras', url: b.url },
  ]));
  expect(flow.status).toBe(202);
  const group = flow.body.group as { id: string; name: string };
  await waitFor(() => srv.store.getById(single.id)?.status === 'downloading', 'the single download under way');

  const paused = await cli(['pause', 'loras/one.safetensors', '--server', srv.url]);
  expect(paused).toMatchObject({ code: 0, err: '' });
  expect(paused.out).toBe('loras/one.safetensors: paused, now paused\n');
  expect(srv.store.getById(single.id)?.status).toBe('paused');
  // A command that does not fit: exit 1, with the server's reason.
  const again = await cli(['pause', single.id, '--server', srv.url]);
  expect(again.code).toBe(1);
  expect(again.err).toMatch(/^Cannot pause loras\/one\.safetensors: it is paused/);
  const resumed = await cli(['resume', single.id, '--server', srv.url]);
  expect(resumed.code).toBe(0);
  expect(srv.store.getById(single.id)?.status).not.toBe('paused');

  const pausedAll = await cli(['pause', group.name, '--server', srv.url]);
  expect(pausedAll).toMatchObject({ code: 0, err: '' });
  expect(pausedAll.out).toBe(`${group.name}: 2 of 2 files paused\n`);
  expect(['loras/a.safetensors', 'loras/b.safetensors'].map((d) => srv.store.get(d)?.status)).toEqual(['paused', 'paused']);
  const cancelled = await cli(['cancel', group.id, '--server', srv.url]);
  expect(cancelled.code).toBe(0);
  expect(['loras/a.safetensors', 'loras/b.safetensors'].map((d) => srv.store.get(d)?.status)).toEqual(['cancelled', 'cancelled']);
  // Nothing left to pause in it: exit 1, each file with why.
  const none = await cli(['pause', group.id, '--server', srv.url]);
  expect(none.code).toBe(1);
  expect(none.out).toContain('left loras/a.safetensors: it is cancelled');

  const unknown = await cli(['retry', 'loras/nothing.safetensors', '--server', srv.url]);
  expect(unknown.code).toBe(1);
  expect(unknown.err).toMatch(/No download or group `loras\/nothing\.safetensors`/);
  files.releaseStalls();
});

test('workflow --dry-run prints the plan as a table and starts nothing: exit 1 while a model has no source, 0 when all are installed', async () => {
  srv = await startTestServer();
  const lora = files.addFile('/loras/style.safetensors', { size: 50_000 });
  await fs.mkdir(path.join(srv.modelsDir, 'vae'), { recursive: true });
  await fs.writeFile(path.join(srv.modelsDir, 'vae', 'have.safetensors'), Buffer.alloc(1024));
  const file = await writeFile(
    'my-flow.json',
    JSON.stringify(
      workflowOf([
        { name: 'style.safetensors', folder: 'loras', url: lora.url },
        { name: 'have.safetensors', folder: 'vae', loader: 'VAELoader' },
        { name: 'nowhere.safetensors', folder: 'checkpoints', loader: 'CheckpointLoaderSimple' },
      ]),
    ),
  );
  const run = await cli(['workflow', file, '--dry-run', '--server', srv.url]);
  expect(run.err).toBe('');
  expect(run.code).toBe(1);
  const host = new URL(files.url).host;
  expect(run.out).toBe(
    [
      'Workflow my-flow: 3 models — 1 installed, 1 missing (48.8 KB to download), 1 without a source',
      '',
      '  MODEL                FOLDER       STATE         SIZE  SOURCE',
      `+ style.safetensors    loras        missing    48.8 KB  workflow · ${host}`,
      '✓ have.safetensors     vae          installed  1.00 KB  —',
      '✗ nowhere.safetensors  checkpoints  no_source        —  —',
      '    no known source: find the file, then `npm run cli -- add <url> --folder checkpoints`',
      '',
      'Dry run: nothing started. Without --dry-run, 1 would be downloaded.',
      '',
    ].join('\n'),
  );
  expect(srv.store.all()).toEqual([]);

  const ready = await writeFile('ready.json', JSON.stringify(workflowOf([{ name: 'have.safetensors', folder: 'vae', loader: 'VAELoader' }])));
  const installed = await cli(['workflow', ready, '--dry-run', '--server', srv.url]);
  expect(installed).toMatchObject({ code: 0, err: '' });
  expect(installed.out).toMatch(/^Workflow ready: 1 model — 1 installed\n/);
  expect(installed.out).toMatch(/\nEvery model is installed\.\n$/);

  const notWorkflow = await cli(['workflow', await writeFile('other.json', '{"a":1}'), '--server', srv.url]);
  expect(notWorkflow.code).toBe(1);
  expect(notWorkflow.err).toMatch(/^error: .*\(NOT_A_WORKFLOW\)\n$/);
  const noFile = await cli(['workflow', path.join(srv.dir, 'missing.json'), '--server', srv.url]);
  expect(noFile).toMatchObject({ code: 1, err: expect.stringContaining('no such file') });
});

test('workflow downloads the missing models as one group, with bars, and exits 0 once every model is installed', async () => {
  srv = await startTestServer();
  const unet = files.addFile('/org/unet.safetensors', { size: 300_000 });
  const lora = files.addFile('/loras/style.safetensors', { size: 50_000 });
  await fs.mkdir(path.join(srv.modelsDir, 'vae'), { recursive: true });
  await fs.writeFile(path.join(srv.modelsDir, 'vae', 'have.safetensors'), 'x');
  const file = await writeFile(
    'flux-flow.json',
    JSON.stringify(
      workflowOf([
        { name: 'unet.safetensors', folder: 'diffusion_models', url: unet.url, loader: 'UNETLoader' },
        { name: 'style.safetensors', folder: 'loras', url: lora.url },
        { name: 'have.safetensors', folder: 'vae', loader: 'VAELoader' },
      ]),
    ),
  );
  const run = await cli(['workflow', file, '--server', srv.url]);
  expect(run.err).toBe('');
  expect(run.code).toBe(0);
  expect(run.out).toMatch(/^Workflow flux-flow: 3 models — 1 installed, 2 missing \(342 KB to download\)\n/);
  expect(run.out).toMatch(/\nStarted 2 downloads as group flux-flow \(\w+\)\.\n/);
  expect(run.out).toMatch(/✓ diffusion_models\/unet\.safetensors +\[#{24}\] 100% +293 KB \/ 293 KB +completed\n/);
  expect(run.out).toMatch(/✓ loras\/style\.safetensors +\[#{24}\] 100% +48\.8 KB \/ 48\.8 KB +completed\n/);
  expect(run.out).toMatch(/\nEvery model is installed \(3 of 3\)\.\n$/);
  expect(await fs.readFile(path.join(srv.modelsDir, 'diffusion_models', 'unet.safetensors'))).toEqual(unet.data);

  // status shows the group each download belongs to.
  const status = await cli(['status', '--server', srv.url]);
  expect(status.out.split('\n').filter(Boolean).sort()).toEqual([
    expect.stringMatching(/^✓ flux-flow diffusion_models\/unet\.safetensors .* completed$/),
    expect.stringMatching(/^✓ flux-flow loras\/style\.safetensors .* completed$/),
  ]);

  // Run again: nothing to start, exit 0 at once.
  const again = await cli(['workflow', file, '--server', srv.url]);
  expect(again).toMatchObject({ code: 0, err: '' });
  expect(again.out).toMatch(/^Workflow flux-flow: 3 models — 3 installed\n/);
  expect(again.out).not.toContain('Started');
});

test('workflow exits 1 naming the model whose download failed, and the one without a source', async () => {
  srv = await startTestServer();
  const lora = files.addFile('/loras/style.safetensors', { size: 20_000 });
  const file = await writeFile(
    'broken.json',
    JSON.stringify(
      workflowOf([
        { name: 'style.safetensors', folder: 'loras', url: lora.url },
        { name: 'gone.safetensors', folder: 'loras', url: `${files.url}/loras/gone.safetensors` },
        { name: 'nowhere.safetensors', folder: 'checkpoints', loader: 'CheckpointLoaderSimple' },
      ]),
    ),
  );
  const run = await cli(['workflow', file, '--server', srv.url]);
  expect(run.code).toBe(1);
  expect(run.out).toContain('Started 2 downloads as group broken');
  const error = srv.store.get('loras/gone.safetensors')!.error!;
  expect(run.out).toMatch(
    new RegExp(`\\n1 of 3 models installed; missing:\\n  ✗ loras/gone\\.safetensors: ${error.message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(HTTP_404\\)\\n  ✗ checkpoints/nowhere\\.safetensors: no known source\\n$`),
  );
});

test('workflow reads a PNG saved by ComfyUI and downloads its models', async () => {
  srv = await startTestServer();
  const ckpt = files.addFile('/ckpt/dream.safetensors', { size: 40_000 });
  const flow = workflowOf([{ name: 'dream.safetensors', folder: 'checkpoints', url: ckpt.url, loader: 'CheckpointLoaderSimple' }]);
  const image = await writeFile('render.png', png([{ type: 'tEXt', keyword: 'prompt', text: '{}' }, { type: 'tEXt', keyword: 'workflow', text: JSON.stringify(flow) }]));
  const run = await cli(['workflow', image, '--server', srv.url]);
  expect(run.err).toBe('');
  expect(run.code).toBe(0);
  expect(run.out).toMatch(/^Workflow render: 1 model — 0 installed, 1 missing \(39\.1 KB to download\)\n/);
  expect(run.out).toMatch(/✓ checkpoints\/dream\.safetensors .* 100% .* completed\n/);
  expect(run.out).toMatch(/Every model is installed \(1 of 1\)\.\n$/);
  expect(await fs.readFile(path.join(srv.modelsDir, 'checkpoints', 'dream.safetensors'))).toEqual(ckpt.data);
});

test('add of a Hugging Face repository waits for every file of its group, one line each', async () => {
  hub = await startFakeHub();
  hub.hf.repo('org/parts');
  hub.hf.commit('org/parts', { 'unet/model.safetensors': Buffer.alloc(200_000, 1), 'vae/vae.safetensors': Buffer.alloc(60_000, 2), 'model_index.json': '{}' });
  srv = await startTestServer({ HF_ENDPOINT: hub.hf.url });
  const run = await cli(['add', `${hub.hf.url}/org/parts`, '--folder', 'diffusion_models', '--server', srv.url]);
  expect(run.err).toBe('');
  expect(run.code).toBe(0);
  expect(run.out).toMatch(/^Started 3 files of org\/parts \([\d.]+ KB\) as group \w+\.\n/);
  for (const dest of ['diffusion_models/parts/unet/model.safetensors', 'diffusion_models/parts/vae/vae.safetensors', 'diffusion_models/parts/model_index.json']) {
    expect(run.out).toMatch(new RegExp(`✓ ${dest.replace(/\./g, '\\.')} +\\[#{24}\\] 100% .* completed\\n`));
    expect(srv.store.get(dest)?.status).toBe('completed');
  }
  expect(run.out).toMatch(/Done: 3 completed\.\n$/);
});

describe('pieces', () => {
  const entry = (patch: Partial<Entry>): Entry => ({
    id: 'a', dest: 'loras/x.safetensors', folder: 'loras', filename: 'x.safetensors', url: 'http://h/x', status: 'downloading', progress: 50,
    downloaded: 512 * 1024 * 1024, file_size: 1024 * 1024 * 1024, speed: 10 * 1024 * 1024, eta: 51.2, start_time: 0, timestamp: 0, attempts: 1, ...patch,
  });

  test('a line has the bar, percent, bytes, speed and ETA; an error line has the message', () => {
    expect(line(entry({}))).toBe('↓ loras/x.safetensors                  [############------------]  50%  512 MB / 1.00 GB      10.0 MB/s  ETA 52 s');
    expect(line(entry({ status: 'error', error: { code: 'HTTP_401', message: 'Hugging Face answered 401' } }))).toContain('error: Hugging Face answered 401');
    expect(line(entry({}), { unicode: true, columns: 40 })).toHaveLength(40);
    expect(line(entry({ group: { id: 'g', name: 'org/parts' } }), { unicode: false, groupWidth: 12 })).toMatch(/^↓ org\/parts    loras\/x\.safetensors /);
    expect(line(entry({}), { unicode: false, groupWidth: 12 })).toMatch(/^↓ {14}loras\/x\.safetensors /);
  });

  test('a terminal gets its lines redrawn in place; a pipe gets a line per change', () => {
    let t = 0;
    const tty: string[] = [];
    const r = createRenderer({ isTTY: true, write: (s) => tty.push(s) }, { now: () => t });
    r.draw([entry({ progress: 10 })]);
    t += 50;
    r.draw([entry({ progress: 20 })]); // throttled
    t += 100;
    r.finish([entry({ status: 'completed', progress: 100 })]);
    expect(tty).toHaveLength(2);
    expect(tty[1]).toMatch(/^\x1b\[1A\r\x1b\[2K✓ /);

    const pipe: string[] = [];
    const p = createRenderer({ write: (s) => pipe.push(s) }, { now: () => t });
    p.draw([entry({ progress: 10, downloaded: 10 })]);
    p.draw([entry({ progress: 19, downloaded: 19 })]); // same status, same step of 10%
    p.draw([entry({ progress: 20, downloaded: 20 })]); // the next step
    p.draw([entry({ progress: 20, downloaded: 21 })]);
    t += 30_000;
    p.draw([entry({ progress: 20, downloaded: 22 })]); // bytes move, the percent does not, for 30 s
    p.draw([entry({ status: 'verifying', progress: 100, downloaded: 100 })]);
    p.finish([entry({ status: 'completed', progress: 100, downloaded: 100 })]);
    p.finish([entry({ status: 'completed', progress: 100, downloaded: 100 })]); // nothing new
    expect(pipe.map((s) => s.slice(0, 1) + s.match(/ +(\d+)%/)![1])).toEqual(['↓10', '↓20', '↓20', '≡100', '✓100']);
  });

  test('a terminal shows a total line over several downloads, and folds finished ones that do not fit', () => {
    const many = Array.from({ length: 12 }, (_, i) =>
      entry({ id: `d${i}`, dest: `loras/f${i}.safetensors`, ...(i < 8 ? { status: 'completed' as const, progress: 100, downloaded: 1024, file_size: 1024, speed: 0 } : { downloaded: 512, file_size: 1024, speed: 1024 }) }),
    );
    expect(totalLine(many, 'org/parts', { unicode: false })).toBe(
      'Σ org/parts                            [####################----]  83%  10.0 KB / 12.0 KB     4.00 KB/s  ETA 1 s  8/12 completed',
    );
    const out: string[] = [];
    createRenderer({ isTTY: true, rows: 8, write: (s) => out.push(s) }, { label: 'org/parts', now: () => 0 }).finish(many);
    const lines = out[0]!.split('\n').filter(Boolean).map((l) => l.replace('\r\x1b[2K', ''));
    expect(lines).toHaveLength(6); // within 8 rows: the total, 4 running, one line for the rest
    expect(lines[0]).toMatch(/^Σ org\/parts /);
    expect(lines.slice(1, 5).every((l) => l.startsWith('↓ loras/f'))).toBe(true);
    expect(lines[5]).toBe('  … 8 completed');
  });

  test('the plan table: a row per model, notes under it (found at, gated, error, what to do)', () => {
    const plan: Plan = {
      name: 'flow',
      missing_bytes: 6_000_000_000,
      models: [
        { name: 'SDXL/base.safetensors', folder: 'checkpoints', dest: 'checkpoints/SDXL/base.safetensors', state: 'installed', url: null, source: null, size: 6_938_000_000, found_at: 'comfyui:models/checkpoints/SDXL/base.safetensors', nodes: [] },
        { name: 'flux1-dev.safetensors', folder: 'diffusion_models', dest: 'diffusion_models/flux1-dev.safetensors', state: 'missing', url: 'https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors', source: 'catalog', size: 6_000_000_000, gated: 'Accept the licence and set HF_TOKEN', nodes: [] },
        { name: 'up.pth', folder: 'upscale_models', dest: 'upscale_models/up.pth', state: 'active', url: 'https://example.com/up.pth', source: 'workflow', download_id: 'abc', nodes: [] },
        { name: '../evil.pt', folder: 'loras', dest: 'loras/../evil.pt', state: 'no_source', url: null, source: null, error: { code: 'INVALID_PATH', message: 'No `..` in a path' }, nodes: [] },
      ],
    };
    expect(planTable(plan)).toBe(
      [
        'Workflow flow: 4 models — 1 installed, 1 being downloaded, 1 missing (5.59 GB to download), 1 without a source',
        '',
        '  MODEL                  FOLDER            STATE         SIZE  SOURCE',
        '✓ SDXL/base.safetensors  checkpoints       installed  6.46 GB  —',
        '    found at comfyui:models/checkpoints/SDXL/base.safetensors',
        '+ flux1-dev.safetensors  diffusion_models  missing    5.59 GB  catalog · huggingface.co',
        '    gated: Accept the licence and set HF_TOKEN',
        '↓ up.pth                 upscale_models    active           —  workflow · example.com',
        '    being downloaded (id abc)',
        '! ../evil.pt             loras             no_source        —  —',
        '    error: No `..` in a path (INVALID_PATH)',
        '    no known source: find the file, then `npm run cli -- add <url> --folder loras/..`',
        '',
      ].join('\n'),
    );
    expect(planTable({ models: [], missing_bytes: 0 })).toBe('Workflow: 0 models\n');
  });

  test('a workflow file is sent as it is: a PNG (by its bytes, whatever its name) as image/png, anything else as JSON', async () => {
    const { dir, cleanup } = await tempDir('md-cli-');
    try {
      const image = png([{ type: 'tEXt', keyword: 'workflow', text: '{}' }]);
      await fs.writeFile(path.join(dir, 'saved.json'), image);
      await fs.writeFile(path.join(dir, 'flow.json'), '{ "nodes": [] }');
      const sent = await readWorkflowFile(path.join(dir, 'saved.json'));
      expect(sent.type).toBe('image/png');
      expect(Buffer.from(sent.bytes).equals(image)).toBe(true);
      expect(await readWorkflowFile(path.join(dir, 'flow.json'))).toEqual({ type: 'application/json', bytes: new Uint8Array(Buffer.from('{ "nodes": [] }')) });
      await expect(readWorkflowFile(dir)).rejects.toThrow(/it is a folder/);
    } finally {
      await cleanup();
    }
  });

  test('arguments', () => {
    expect(parseArgs(['add', 'https://h/x.bin', '--folder', 'loras'], { PORT: '9000', API_TOKEN: 't' })).toEqual({
      command: 'add', url: 'https://h/x.bin', folder: 'loras', server: 'http://127.0.0.1:9000/', token: 't', json: false, noWait: false, dryRun: false,
    });
    expect(parseArgs(['status', '--json', '--server', 'https://box.example/md'], {})).toMatchObject({ server: 'https://box.example/md/', json: true });
    expect(() => parseArgs(['add'], {})).toThrow(UsageError);
    expect(() => parseArgs(['watch', '--nope'], {})).toThrow(UsageError);
    expect(() => parseArgs(['status', '--server', 'ftp://x'], {})).toThrow(UsageError);
    expect(parseArgs(['add', 'https://h/x.bin', '--no-wait'], {})).toMatchObject({ command: 'add', noWait: true, dryRun: false });
    expect(parseArgs(['workflow', 'flow.png', '--dry-run'], {})).toMatchObject({ command: 'workflow', file: 'flow.png', dryRun: true, noWait: false });
    expect(() => parseArgs(['workflow'], {})).toThrow(/exactly one file/);
    expect(() => parseArgs(['workflow', 'a.json', 'b.json'], {})).toThrow(UsageError);
    expect(() => parseArgs(['pause'], {})).toThrow(/takes one download/);
    expect(parseArgs(['retry', 'checkpoints/x.safetensors'], {})).toMatchObject({ command: 'retry', target: 'checkpoints/x.safetensors' });
    expect(() => parseArgs(['cancel', 'x', '--folder', 'loras'], {})).toThrow(/--folder is for/);
    expect(() => parseArgs(['status', '--dry-run'], {})).toThrow(/--dry-run is for `workflow`/);
    expect(() => parseArgs(['workflow', 'a.json', '--folder', 'loras'], {})).toThrow(/--folder is for `add`/);
    expect(() => parseArgs(['watch', '--no-wait'], {})).toThrow(/--no-wait is for `add`/);
    expect(parseArgs(['workflow', 'a.json', '--link'], {})).toMatchObject({ command: 'workflow', link: true });
    expect(() => parseArgs(['status', '--link'], {})).toThrow(/--link is for `add`, `workflow`/);
  });
});

test('status in fleet mode shows which server has each download', async () => {
  const fleetDir = await fs.mkdtemp(path.join(os.tmpdir(), 'md-cli-fleet-'));
  try {
    srv = await startTestServer({ FLEET_DIR: fleetDir, INSTANCE_NAME: 'pod-a' });
    const f = files.addFile('/fleet.safetensors', { size: 1000 });
    const add = await cli(['add', f.url, '--folder', 'loras', '--server', srv.url]);
    expect(add.code).toBe(0);
    const text = await cli(['status', '--server', srv.url]);
    expect(text.out).toMatch(/^✓ pod-a +loras\/fleet\.safetensors .*completed\n$/);
  } finally {
    await srv.stop();
    await fs.rm(fleetDir, { recursive: true, force: true });
  }
});
