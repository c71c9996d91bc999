/// <reference lib="dom" />
/**
 * The Workflow section and groups in a real browser (Debian's Chromium via playwright-core),
 * against the real server and the scriptable file server, throttled so that bars move: a workflow
 * dropped on the page → its plan → "Download N missing" → live rows and a group with its own bar
 * in the list, through a reload → everything installed. PNG workflows, files that are none, a
 * model without a source fetched from a pasted URL, a Hugging Face repository from the add form.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { startFakeHub } from '../helpers/fake-hub';
import type { TestServer } from '../helpers/harness';
import { node, png } from '../workflows/fixtures';
import { browserSuite, groupBlock, planRow, planStates, row, shownRows, waitGroupBarAbove } from './browser';

const MB = 1024 * 1024;
const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts');
/** One connection per download, so the throttle is the download's speed. */
const ENV = { CONNECTIONS: '1' };

const { cleanups, files, server, context, open: openPage } = browserSuite(ENV);

/** A page at the dashboard, live. Page errors and dialogs fail the test. */
const open = (ctx: BrowserContext, url: string): Promise<Page> => openPage(ctx, url, { live: true, dialogs: false });

/** A file for the model on disk, as if installed before. */
async function install(s: TestServer, rel: string, bytes = 1000): Promise<void> {
  const file = path.join(s.modelsDir, ...rel.split('/'));
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, Buffer.alloc(bytes, 7));
}

/** The frontend's model link on a loader node. */
const link = (name: string, url: string, directory: string) => ({ properties: { models: [{ name, url, directory }] } });

const dropJson = (page: Page, name: string, workflow: unknown) =>
  page.setInputFiles('#wf-file', { name, mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(workflow)) });

/** Waits until a plan row's bar has a value above `above` (of 1000); returns it. */
async function waitPlanBarAbove(page: Page, dest: string, above: number, timeout = 10_000): Promise<number> {
  const handle = await page.waitForFunction(
    ([selector, min]) => {
      const bar = document.querySelector<HTMLProgressElement>(selector);
      return bar && !bar.hidden && bar.hasAttribute('value') && bar.value > min ? bar.value : false;
    },
    [`${planRow(dest)}[data-state="active"] progress`, above] as const,
    { timeout },
  );
  return (await handle.jsonValue()) as number;
}

const text = async (page: Page, selector: string): Promise<string> => ((await page.textContent(selector)) ?? '').trim();

test('a dropped workflow: its plan, "Download N missing", live rows and a group bar through a reload, then all installed', async () => {
  const f = await files();
  f.addFile('/flux-mini.safetensors', { size: 10 * MB, throttle: 2 * MB });
  f.addFile('/detail.safetensors', { size: 4 * MB, throttle: 1 * MB });
  f.addFile('/vae.safetensors', { size: 2 * MB, throttle: 1 * MB });
  const s = await server();
  await install(s, 'checkpoints/base.safetensors');
  const workflow = {
    nodes: [
      node(1, 'CheckpointLoaderSimple', ['base.safetensors']),
      node(2, 'UNETLoader', ['flux-mini.safetensors', 'default'], link('flux-mini.safetensors', `${f.url}/flux-mini.safetensors`, 'diffusion_models')),
      node(3, 'LoraLoader', ['SDXL\\detail.safetensors', 0.8, 1], link('detail.safetensors', `${f.url}/detail.safetensors`, 'loras')),
      node(4, 'VAELoader', ['vae.safetensors'], link('vae.safetensors', `${f.url}/vae.safetensors`, 'vae')),
      node(5, 'UpscaleModelLoader', ['4x-UltraSharp.pth']),
    ],
    links: [],
  };
  const flux = 'diffusion_models/flux-mini.safetensors';
  const lora = 'loras/SDXL/detail.safetensors';
  const vae = 'vae/vae.safetensors';
  const page = await open(await context(), `${s.url}/`);
  expect(await page.isHidden('#wf-plan')).toBe(true);

  const planned = page.waitForRequest((r) => r.url().includes('/api/workflows/plan'));
  await dropJson(page, 'flux-flow.json', workflow);
  const request = await planned;
  expect(request.headers()['content-type']).toBe('application/json');
  expect(new URL(request.url()).searchParams.get('name')).toBe('flux-flow.json');
  await page.waitForSelector('#workflow[data-view="plan"] #wf-rows tr');
  expect(await text(page, '#wf-name')).toBe('flux-flow');
  expect(await planStates(page)).toEqual([
    'checkpoints/base.safetensors:installed',
    `${flux}:missing`,
    `${lora}:missing`,
    `${vae}:missing`,
    'upscale_models/4x-UltraSharp.pth:no_source',
  ]);
  expect(await text(page, `${planRow('checkpoints/base.safetensors')} .wf-detail`)).toBe('in checkpoints/base.safetensors');
  expect(await text(page, `${planRow(flux)} .wf-size`)).toBe('10.0 MB'); // probed through the server
  expect(await text(page, `${planRow(flux)} .wf-detail`)).toBe(`from the link in the workflow · ${new URL(f.url).host}`);
  expect(await text(page, `${planRow(lora)} .wf-model-name`)).toBe('SDXL/detail.safetensors');
  expect(await text(page, `${planRow(lora)} .wf-nodes`)).toBe('LoraLoader #3');
  expect(await page.isVisible(`${planRow('upscale_models/4x-UltraSharp.pth')} input[type="url"]`)).toBe(true);
  expect(await page.isVisible(`${planRow(flux)} input[type="url"]`)).toBe(false);
  expect(await text(page, '#wf-counts')).toBe('5 models · 1 installed · 3 missing · 1 without a source');
  expect(await text(page, '#wf-download')).toBe('Download 3 missing (16.0 MB)');

  const started = page.waitForResponse((r) => r.url().includes('/api/workflows/download'));
  await page.click('#wf-download');
  expect((await started).status()).toBe(202);
  await page.waitForSelector('#wf-msg[data-tone="ok"]');
  expect(await text(page, '#wf-msg')).toBe('Started 3 downloads as the group “flux-flow”.');
  // The rows go live, their bars driven by the WebSocket.
  const first = await waitPlanBarAbove(page, flux, 0);
  await waitPlanBarAbove(page, flux, first);
  expect(await text(page, `${planRow(flux)} .badge`)).toBe('Downloading');
  expect(await text(page, `${planRow(flux)} .wf-detail`)).toMatch(/^\d+% · [\d.]+ [KM]B\/s · \d+ s left$/);
  expect(await page.isHidden('#wf-download')).toBe(true);

  // The group in the list: one header with its own bar over its three rows.
  await page.waitForSelector(groupBlock('flux-flow', 'active'));
  expect(await page.$$eval(`${groupBlock('flux-flow')} li.row`, (rows) => rows.map((r) => (r as HTMLElement).dataset.dest).sort())).toEqual([flux, lora, vae].sort());
  const groupFirst = await waitGroupBarAbove(page, 'flux-flow', 0);
  const groupMoved = await waitGroupBarAbove(page, 'flux-flow', groupFirst);
  expect(await text(page, `${groupBlock('flux-flow')} > .group-head .where`)).toMatch(/^\d of 3 done$/);
  expect(await text(page, `${groupBlock('flux-flow')} > .group-head .bytes`)).toMatch(/ \/ 16\.0 MB$/);
  expect(await text(page, `${groupBlock('flux-flow')} > .group-head .speed`)).toMatch(/\/s$/);

  // A reload mid-download: the group and its bar are back at once, and the plan table with them.
  await page.reload();
  const restored = await waitGroupBarAbove(page, 'flux-flow', 0, 1000);
  expect(restored).toBeGreaterThanOrEqual(groupMoved);
  expect(restored).toBeLessThan(1000);
  await waitGroupBarAbove(page, 'flux-flow', restored);
  await page.waitForSelector(`${planRow(flux)}[data-state="active"]`, { timeout: 1000 });
  await waitPlanBarAbove(page, flux, 0, 1000);

  // All end completed: the plan says installed, the group moves to the finished list.
  await page.waitForFunction(
    () => [...document.querySelectorAll<HTMLElement>('#wf-rows tr')].filter((r) => r.dataset.state === 'installed').length === 4,
    undefined,
    { timeout: 20_000 },
  );
  expect(await planStates(page)).toEqual([
    'checkpoints/base.safetensors:installed',
    `${flux}:installed`,
    `${lora}:installed`,
    `${vae}:installed`,
    'upscale_models/4x-UltraSharp.pth:no_source',
  ]);
  expect(await text(page, `${planRow(lora)} .wf-detail`)).toBe(`in ${lora}`);
  await page.waitForSelector(`${groupBlock('flux-flow', 'finished')}[data-status="completed"]`);
  expect(await text(page, `${groupBlock('flux-flow')} > .group-head .where`)).toBe('3 of 3 done');
  expect(await text(page, `${groupBlock('flux-flow')} > .group-head .detail`)).toMatch(/^16\.0 MB · finished at /);
  expect(await text(page, '#wf-counts')).toBe('5 models · 4 installed · 1 without a source');
  expect(await page.isHidden('#wf-download')).toBe(true);
  expect((await fs.stat(path.join(s.modelsDir, 'loras', 'SDXL', 'detail.safetensors'))).size).toBe(4 * MB);

  // What the server says agrees with the table: a new plan of the same workflow.
  const again = await s.api('POST', '/api/workflows/plan', workflow);
  expect((again.body.models as Array<{ state: string }>).map((m) => m.state)).toEqual(['installed', 'installed', 'installed', 'installed', 'no_source']);
});

test('a PNG saved by ComfyUI is planned from its bytes; a PNG without a workflow, or any other file, says why', async () => {
  const f = await files();
  f.addFile('/vae.safetensors', { size: 1 * MB });
  const s = await server();
  await install(s, 'checkpoints/base.safetensors');
  const workflow = { nodes: [node(1, 'CheckpointLoaderSimple', ['base.safetensors']), node(2, 'VAELoader', ['vae.safetensors'], link('vae.safetensors', `${f.url}/vae.safetensors`, 'vae'))], links: [] };
  const page = await open(await context(), `${s.url}/`);

  const planned = page.waitForRequest((r) => r.url().includes('/api/workflows/plan'));
  await page.setInputFiles('#wf-file', { name: 'render_00042_.png', mimeType: 'image/png', buffer: png([{ type: 'tEXt', keyword: 'workflow', text: JSON.stringify(workflow) }]) });
  expect((await planned).headers()['content-type']).toBe('image/png');
  await page.waitForSelector('#wf-rows tr');
  expect(await text(page, '#wf-name')).toBe('render_00042_');
  expect(await planStates(page)).toEqual(['checkpoints/base.safetensors:installed', 'vae/vae.safetensors:missing']);
  expect(await text(page, '#wf-download')).toBe('Download 1 missing (1.00 MB)');

  // A PNG without a workflow: the server's reason beside the section, the table left as it was.
  await page.setInputFiles('#wf-file', { name: 'holiday.png', mimeType: 'image/png', buffer: png([]) });
  await page.waitForSelector('#wf-msg[data-tone="error"]');
  expect(await page.isVisible('#wf-msg')).toBe(true);
  expect(await text(page, '#wf-msg')).toMatch(/^holiday\.png: This PNG carries no ComfyUI workflow \(no `workflow` or `prompt` text chunk\)\./);
  expect(await text(page, '#wf-name')).toBe('render_00042_');
  await fs.mkdir(ARTIFACTS, { recursive: true });
  await (await page.$('#workflow'))!.screenshot({ path: path.join(ARTIFACTS, 'workflow-error.png') });

  // Neither JSON nor PNG: said without asking the server.
  const asked: string[] = [];
  page.on('request', (r) => {
    if (r.url().includes('/api/workflows/')) asked.push(r.url());
  });
  await page.setInputFiles('#wf-file', { name: 'cat.jpg', mimeType: 'image/jpeg', buffer: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 74, 70, 73, 70]) });
  await page.waitForSelector('#wf-msg:has-text("cat.jpg")');
  expect(await text(page, '#wf-msg')).toBe('cat.jpg is neither a workflow .json nor a PNG saved by ComfyUI.');
  expect(asked).toEqual([]);

  // Pasted JSON: bad JSON is refused with the parser's words, good JSON (API format) is planned.
  await page.click('#wf-paste-toggle');
  expect(await page.getAttribute('#wf-paste-toggle', 'aria-expanded')).toBe('true');
  await page.fill('#wf-text', '{"nodes": [');
  await page.click('#wf-read');
  await page.waitForSelector('#wf-msg:has-text("Pasted workflow:")');
  expect(await text(page, '#wf-msg')).toMatch(/^Pasted workflow: The body is neither a PNG nor valid JSON: /);
  await page.fill('#wf-text', JSON.stringify({ '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'base.safetensors' } } }));
  await page.click('#wf-read');
  await page.waitForSelector('#wf-name:text-is("Pasted workflow")');
  expect(await planStates(page)).toEqual(['checkpoints/base.safetensors:installed']);
  expect(await text(page, '#wf-counts')).toBe('1 model · 1 installed — everything it needs is here.');
  expect(await page.isHidden('#wf-msg')).toBe(true);
  expect(await page.isHidden('#wf-paste')).toBe(true);

  await page.click('#wf-close');
  expect(await page.getAttribute('#workflow', 'data-view')).toBe('empty');
  expect(await page.isHidden('#wf-plan')).toBe(true);
});

test('a model without a source: a pasted URL, Get, and it downloads into its own folder', async () => {
  const f = await files();
  f.addFile('/up/4x-UltraSharp.pth', { size: 3 * MB, throttle: 1 * MB });
  const s = await server();
  const dest = 'upscale_models/upscale/4x-UltraSharp.pth';
  const page = await open(await context(), `${s.url}/`);
  await dropJson(page, 'upscale.json', { nodes: [node(7, 'UpscaleModelLoader', ['upscale\\4x-UltraSharp.pth'])], links: [] });
  await page.waitForSelector(`${planRow(dest)}[data-state="no_source"]`);
  expect(await page.isHidden('#wf-download')).toBe(true);
  const field = `${planRow(dest)} input[type="url"]`;
  const get = `${planRow(dest)} button:text-is("Get")`;

  await page.click(get);
  await page.waitForSelector(`${planRow(dest)} .note[data-tone="error"]`);
  expect(await text(page, `${planRow(dest)} .note`)).toBe('Paste the URL of the model file first.');

  await page.fill(field, 'ftp://example.com/4x.pth');
  await page.click(get);
  await page.waitForSelector(`${planRow(dest)} .note:has-text("ftp")`);
  expect(await text(page, `${planRow(dest)} .note`)).toBe('Only http and https URLs can be downloaded, got ftp');
  expect(await page.getAttribute(field, 'aria-invalid')).toBe('true');
  expect(await page.inputValue(field)).toBe('ftp://example.com/4x.pth'); // kept, to be corrected

  const posted = page.waitForRequest((r) => r.url().endsWith('/api/downloads') && r.method() === 'POST');
  await page.fill(field, `${f.url}/up/4x-UltraSharp.pth`);
  await page.press(field, 'Enter');
  expect((await posted).postDataJSON()).toEqual({ url: `${f.url}/up/4x-UltraSharp.pth`, folder: 'upscale_models/upscale', filename: '4x-UltraSharp.pth' });
  const first = await waitPlanBarAbove(page, dest, 0);
  await waitPlanBarAbove(page, dest, first);
  expect(await page.isHidden(`${planRow(dest)} .note`)).toBe(true);
  expect(await page.isVisible(`${row(dest, 'active')}`)).toBe(true); // an ordinary row in the list
  await page.waitForSelector(`${planRow(dest)}[data-state="installed"]`, { timeout: 15_000 });
  expect((await fs.stat(path.join(s.modelsDir, 'upscale_models', 'upscale', '4x-UltraSharp.pth'))).size).toBe(3 * MB);
});

test('a Hugging Face repository from the add form starts its files as one group', async () => {
  const hub = await startFakeHub();
  cleanups.push(() => hub.close());
  hub.hf.repo('org/tiny-model');
  hub.hf.commit('org/tiny-model', { 'model.safetensors': Buffer.alloc(300_000, 1), 'vae/vae.safetensors': Buffer.alloc(100_000, 2), 'config.json': '{"v":1}' });
  const s = await server({ HF_ENDPOINT: hub.hf.url });
  const page = await open(await context(), `${s.url}/`);
  await page.fill('#add-url', `${hub.hf.url}/org/tiny-model`);
  await page.selectOption('#add-folder', 'diffusion_models');
  await page.click('#add-submit');
  await page.waitForSelector('#add-msg[data-tone="ok"]');
  expect(await text(page, '#add-msg')).toBe('Started 3 files of org/tiny-model.');
  await page.waitForSelector(`${groupBlock('org/tiny-model', 'finished')}[data-status="completed"]`, { timeout: 15_000 });
  expect(await text(page, `${groupBlock('org/tiny-model')} > .group-head .where`)).toBe('3 of 3 done');
  expect(await shownRows(page)).toEqual([
    'finished-list:diffusion_models/tiny-model/config.json:completed',
    'finished-list:diffusion_models/tiny-model/model.safetensors:completed',
    'finished-list:diffusion_models/tiny-model/vae/vae.safetensors:completed',
  ]);
});

test('screenshot: a workflow plan with every state, on a desktop', async () => {
  const f = await files();
  f.addFile('/comfyanonymous/flux_text_encoders/t5xxl_fp8_e4m3fn.safetensors', { size: 96 * MB, throttle: 3 * MB });
  f.addFile('/XLabs-AI/flux-lora-collection/realism_lora.safetensors', { size: 22 * MB });
  f.addFile('/city96/FLUX.1-dev-gguf/flux1-dev-Q8_0.gguf', { size: 120 * MB });
  f.route('/black-forest-labs/FLUX.1-dev/ae.safetensors', (_req, res) => {
    res.writeHead(401, { 'Content-Type': 'text/plain' });
    res.end('Access to model black-forest-labs/FLUX.1-dev is restricted. You must have access to it and be authenticated to access it.');
  });
  const s = await server();
  await install(s, 'clip/clip_l.safetensors', 4096); // ComfyUI's legacy folder for text encoders
  await install(s, 'diffusion_models/flux1-dev-fp8.safetensors', 8192);
  const at = (p: string) => `${f.url}/${p}`;
  const workflow = {
    nodes: [
      node(10, 'UNETLoader', ['flux1-dev-fp8.safetensors', 'fp8_e4m3fn']),
      node(11, 'DualCLIPLoader', ['clip_l.safetensors', 't5xxl_fp8_e4m3fn.safetensors', 'flux', 'default'], link('t5xxl_fp8_e4m3fn.safetensors', at('comfyanonymous/flux_text_encoders/t5xxl_fp8_e4m3fn.safetensors'), 'text_encoders')),
      node(12, 'VAELoader', ['ae.safetensors'], link('ae.safetensors', at('black-forest-labs/FLUX.1-dev/ae.safetensors'), 'vae')),
      node(13, 'LoraLoaderModelOnly', ['flux\\realism_lora.safetensors', 0.8], link('realism_lora.safetensors', at('XLabs-AI/flux-lora-collection/realism_lora.safetensors'), 'loras')),
      node(14, 'UnetLoaderGGUF', ['flux1-dev-Q8_0.gguf'], link('flux1-dev-Q8_0.gguf', at('city96/FLUX.1-dev-gguf/flux1-dev-Q8_0.gguf'), 'diffusion_models')),
      node(15, 'UpscaleModelLoader', ['4x-UltraSharp.pth']),
    ],
    links: [],
  };
  // One of them is already on its way (started from another tab): the plan shows it live.
  const t5 = await s.api('POST', '/api/downloads', { url: at('comfyanonymous/flux_text_encoders/t5xxl_fp8_e4m3fn.safetensors'), folder: 'text_encoders' });
  expect(t5.status).toBe(202);
  const page = await open(await context({ width: 1280, height: 900 }), `${s.url}/`);
  await dropJson(page, 'flux-dev-realism.json', workflow);
  await page.waitForSelector('#wf-rows tr');
  await waitPlanBarAbove(page, 'text_encoders/t5xxl_fp8_e4m3fn.safetensors', 120);
  expect(await planStates(page)).toEqual([
    'diffusion_models/flux1-dev-fp8.safetensors:installed',
    'text_encoders/clip_l.safetensors:installed',
    'text_encoders/t5xxl_fp8_e4m3fn.safetensors:active',
    'vae/ae.safetensors:missing',
    'loras/flux/realism_lora.safetensors:missing',
    'diffusion_models/flux1-dev-Q8_0.gguf:missing',
    'upscale_models/4x-UltraSharp.pth:no_source',
  ]);
  expect(await text(page, `${planRow('text_encoders/clip_l.safetensors')} .wf-detail`)).toBe('found at clip/clip_l.safetensors');
  expect(await text(page, `${planRow('vae/ae.safetensors')} .note`)).toMatch(/answered 401/);
  expect(await page.getAttribute(`${planRow('vae/ae.safetensors')} .note`, 'data-tone')).toBe('warn');
  expect(await text(page, '#wf-download')).toBe('Download 3 missing (142 MB+)'); // the gated one's size is not known
  expect(await page.getAttribute('#wf-download', 'title')).toBe('The size of one of them is not known yet');
  await page.fill(`${planRow('upscale_models/4x-UltraSharp.pth')} input[type="url"]`, 'https://huggingface.co/lokCX/4x-Ultrasharp/resolve/main/4x-UltraSharp.pth');
  await page.$eval(`${planRow('upscale_models/4x-UltraSharp.pth')} input[type="url"]`, (input) => (input as HTMLInputElement).blur());
  await page.mouse.move(0, 0);

  await fs.mkdir(ARTIFACTS, { recursive: true });
  const section = await page.$('#workflow');
  await section!.screenshot({ path: path.join(ARTIFACTS, 'workflow.png') });
  await page.emulateMedia({ colorScheme: 'dark' });
  await section!.screenshot({ path: path.join(ARTIFACTS, 'workflow-dark.png') });
  await page.emulateMedia({ colorScheme: 'light' });

  // The same plan on a phone: no sideways scrolling.
  const phone = await open(await context({ width: 390, height: 844 }), `${s.url}/`);
  await dropJson(phone, 'flux-dev-realism.json', workflow);
  await phone.waitForSelector('#wf-rows tr');
  await waitPlanBarAbove(phone, 'text_encoders/t5xxl_fp8_e4m3fn.safetensors', 0);
  await (await phone.$('#workflow'))!.screenshot({ path: path.join(ARTIFACTS, 'workflow-phone.png') });
  expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  for (const name of ['workflow.png', 'workflow-dark.png', 'workflow-phone.png']) {
    expect((await fs.stat(path.join(ARTIFACTS, name))).size).toBeGreaterThan(10_000);
  }
});

test('a group\'s header pauses, resumes and cancels all its downloads at once', async () => {
  const f = await files();
  const names = ['one', 'two', 'three'];
  const nodes = names.map((n, i) => {
    const file = f.addFile(`/${n}.safetensors`, { size: 3 * MB, throttle: 1 * MB });
    return node(i + 1, 'LoraLoaderModelOnly', [`${n}.safetensors`, 1], link(`${n}.safetensors`, file.url, 'loras'));
  });
  const s = await server({ MAX_CONCURRENT: '2' });
  const started = await s.api('POST', '/api/workflows/download?name=three-loras', { nodes, links: [] });
  expect(started.status).toBe(202);
  const page = await open(await context(), s.url);
  const head = `${groupBlock('three-loras', 'active')} > .group-head`;
  await page.waitForSelector(`${head} button[data-group-action="pause"]:visible`);
  expect(await page.isHidden(`${head} button[data-group-action="resume"]`)).toBe(true);

  // Pause all: every row of the group paused (the queued one too), on the page and on the server.
  await page.click(`${head} button[data-group-action="pause"]`);
  const statuses = () => page.$$eval(`${groupBlock('three-loras')} li.row`, (rows) => rows.map((r) => (r as HTMLElement).dataset.status));
  await page.waitForFunction((sel) => [...document.querySelectorAll<HTMLElement>(sel)].every((r) => r.dataset.status === 'paused'), `${groupBlock('three-loras')} li.row`);
  expect(await statuses()).toEqual(['paused', 'paused', 'paused']);
  expect(s.store.all().map((e) => e.status)).toEqual(['paused', 'paused', 'paused']);
  await page.waitForSelector(`${head} button[data-group-action="resume"]:visible`);
  expect(await page.isHidden(`${head} button[data-group-action="pause"]`)).toBe(true);
  expect(await page.isHidden(`${head} .note`)).toBe(true);

  // Resume all, then Cancel all: every row cancelled, the group in the finished list, Retry all offered.
  await page.click(`${head} button[data-group-action="resume"]`);
  await page.waitForSelector(`${head} button[data-group-action="pause"]:visible`);
  await page.click(`${head} button[data-group-action="cancel"]`);
  await page.waitForSelector(`${groupBlock('three-loras', 'finished')}[data-status="cancelled"]`);
  expect(s.store.all().map((e) => e.status)).toEqual(['cancelled', 'cancelled', 'cancelled']);
  await page.waitForSelector(`${groupBlock('three-loras', 'finished')} > .group-head button[data-group-action="retry"]:visible`);
});
