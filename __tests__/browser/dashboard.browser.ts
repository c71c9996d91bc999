/// <reference lib="dom" />
/**
 * The live page in a real browser (Debian's Chromium via playwright-core) against the real server
 * and the scriptable file server, throttled so that a download lasts a few seconds.
 * The promise under test: reload, a second tab, a server restart — the bars come back at once
 * with the right numbers and keep moving.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { startTestServer, type TestServer } from '../helpers/harness';
import { browserSuite, row, shownRows, waitBarAbove, waitConnection, waitStatus } from './browser';

const MB = 1024 * 1024;
const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts');
/** One connection per download, so the throttle is the download's speed. */
const ENV = { CONNECTIONS: '1' };

const { cleanups, files, server, context, open: openPage } = browserSuite(ENV);

/** A page at the dashboard. Page errors fail the test. */
const open = (ctx: BrowserContext, url: string): Promise<Page> => openPage(ctx, url, { live: false, dialogs: true });

async function add(s: TestServer, url: string, folder: string): Promise<{ id: string; dest: string }> {
  const res = await s.api('POST', '/api/downloads', { url, folder });
  expect(res.status).toBe(202);
  return res.body.download;
}

test('a download started from the form shows a moving bar, survives a reload and ends completed', async () => {
  const f = await files();
  f.addFile('/model-a.safetensors', { size: 8 * MB, throttle: 2 * MB });
  const s = await server();
  const page = await open(await context(), `${s.url}/`);
  await waitConnection(page, 'live');

  await page.fill('#add-url', `${f.url}/model-a.safetensors`);
  await page.selectOption('#add-folder', 'checkpoints');
  await page.click('#add-submit');
  await page.waitForSelector('#add-msg[data-tone="ok"]');
  expect(await page.textContent('#add-msg')).toContain('checkpoints/model-a.safetensors');

  const dest = 'checkpoints/model-a.safetensors';
  const first = await waitBarAbove(page, dest, 0);
  const moved = await waitBarAbove(page, dest, first);
  expect(moved).toBeGreaterThan(first);
  expect(await page.textContent(`${row(dest, 'active')} .speed`)).toMatch(/\/s$/);

  // Reload mid-download: within 1 s of the load the bar is back with a value > 0 …
  await page.reload(); // resolves at the load event
  const restored = await waitBarAbove(page, dest, 0, 1000);
  expect(restored).toBeLessThan(1000);
  expect(restored).toBeGreaterThanOrEqual(moved); // the right numbers, not a restart from zero
  // … and keeps moving.
  await waitBarAbove(page, dest, restored);

  await waitStatus(page, dest, 'completed');
  await page.waitForSelector(`${row(dest, 'finished')}`);
  expect(await page.$(row(dest, 'active'))).toBeNull();
  expect(await page.textContent(`${row(dest, 'finished')} .detail`)).toMatch(/^8\.00 MB · finished at /);
  expect(await page.isVisible('#active-empty')).toBe(true);
});

test('two tabs show the same state; a cancel in one shows in the other', async () => {
  const f = await files();
  f.addFile('/model-b.safetensors', { size: 8 * MB, throttle: 2 * MB });
  f.addFile('/small.pth', { size: 64 * 1024 });
  const s = await server();
  const ctx = await context();
  const [a, b] = [await open(ctx, `${s.url}/`), await open(ctx, `${s.url}/`)];
  await add(s, `${f.url}/small.pth`, 'upscale_models');
  const { dest } = await add(s, `${f.url}/model-b.safetensors`, 'loras');

  for (const page of [a, b]) {
    await waitBarAbove(page, dest, 0);
    await waitStatus(page, 'upscale_models/small.pth', 'completed');
  }
  expect(await shownRows(a)).toEqual(await shownRows(b));

  await a.click(`${row(dest, 'active')} button[data-action="cancel"]`);
  for (const page of [b, a]) {
    await page.waitForSelector(`${row(dest, 'finished')}[data-status="cancelled"]`, { timeout: 5000 }).catch(async (err: Error) => {
      throw new Error(`${err.message}\nshown: ${(await shownRows(page)).join(', ')}; server: ${JSON.stringify((await s.api('GET', '/api/downloads')).body)}`);
    });
    expect(await page.$(row(dest, 'active'))).toBeNull();
  }
  expect(await shownRows(a)).toEqual(await shownRows(b));
  expect(await shownRows(b)).toEqual(['finished-list:loras/model-b.safetensors:cancelled', 'finished-list:upscale_models/small.pth:completed']);
});

test('a server restart mid-download: the page shows reconnecting, then resumed progress, then completed', async () => {
  const f = await files();
  f.addFile('/model-c.safetensors', { size: 8 * MB, throttle: 2 * MB });
  const first = await startTestServer(ENV);
  const { dir, port } = first;
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  let second: TestServer | undefined;
  cleanups.push(async () => second?.stop());
  cleanups.push(() => first.stop());

  const page = await open(await context(), `${first.url}/`);
  const { dest } = await add(first, `${f.url}/model-c.safetensors`, 'diffusion_models');
  const before = await waitBarAbove(page, dest, 150);

  await first.stop({ keepDir: true });
  await waitConnection(page, 'reconnecting', 5000);
  // While it reconnects, the last known numbers stay on screen.
  expect(await page.$eval(`${row(dest, 'active')} progress`, (p) => (p as HTMLProgressElement).value)).toBeGreaterThanOrEqual(before);

  second = await startTestServer({ ...ENV, PORT: String(port) }, { dir });
  await waitConnection(page, 'live', 15_000);
  // Resumed where it stopped (a Range request), not from zero.
  const resumed = await f.waitForRequest((r) => r.range !== undefined && !/^bytes=0-/.test(r.range), 10_000);
  expect(Number(/^bytes=(\d+)-/.exec(resumed.range!)![1])).toBeGreaterThan(0);
  const after = await waitBarAbove(page, dest, before);
  await waitBarAbove(page, dest, after);
  await waitStatus(page, dest, 'completed', 20_000);
});

test('an API error shows a readable message next to the form, not in a dialog', async () => {
  const s = await server();
  const page = await open(await context(), `${s.url}/`);
  const dialogs: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await waitConnection(page, 'live');
  await page.fill('#add-url', 'ftp://x/y');
  await page.click('#add-submit');
  const msg = await page.waitForSelector('#add-form #add-msg[data-tone="error"]');
  expect(await msg.isVisible()).toBe(true);
  expect(await msg.textContent()).toBe('Only http and https URLs can be downloaded, got ftp');
  expect(await page.getAttribute('#add-url', 'aria-invalid')).toBe('true');
  expect(await page.inputValue('#add-url')).toBe('ftp://x/y'); // kept, to be corrected
  expect(dialogs).toEqual([]);
  expect(await page.$$('li.row')).toHaveLength(0);
});

test('Clear completed removes the finished rows in every open tab', async () => {
  const f = await files();
  f.addFile('/done-1.pth', { size: 64 * 1024 });
  f.addFile('/done-2.pth', { size: 64 * 1024 });
  f.addFile('/running.safetensors', { size: 8 * MB, throttle: 1 * MB });
  const s = await server();
  const ctx = await context();
  const [a, b] = [await open(ctx, `${s.url}/`), await open(ctx, `${s.url}/`)];
  await add(s, `${f.url}/done-1.pth`, 'upscale_models');
  await add(s, `${f.url}/done-2.pth`, 'upscale_models');
  await add(s, `${f.url}/missing.safetensors`, 'loras'); // 404: an error row
  const running = await add(s, `${f.url}/running.safetensors`, 'checkpoints');
  for (const page of [a, b]) {
    await waitStatus(page, 'upscale_models/done-1.pth', 'completed');
    await waitStatus(page, 'upscale_models/done-2.pth', 'completed');
    await waitStatus(page, 'loras/missing.safetensors', 'error');
    expect(await page.textContent(`${row('loras/missing.safetensors')} .note`)).toMatch(/answered 404/);
    await waitBarAbove(page, running.dest, 0);
  }

  await a.click('#clear-completed');
  for (const page of [a, b]) {
    await page.waitForFunction(() => document.querySelectorAll('#finished-list li').length === 0, undefined, { timeout: 5000 });
    expect(await page.isVisible('#finished-empty')).toBe(true);
    expect(await page.isDisabled('#clear-completed')).toBe(true);
    expect(await shownRows(page)).toEqual([`active-list:${running.dest}:downloading`]);
  }
});

test('with API_TOKEN the page takes the token from ?token= or asks for it once', async () => {
  const s = await server({ API_TOKEN: 'sesame-1234' });
  const ctx = await context();
  const page = await open(ctx, `${s.url}/?token=sesame-1234`);
  await waitConnection(page, 'live');
  expect(new URL(page.url()).search).toBe(''); // out of the address bar
  expect(await page.evaluate(() => localStorage.getItem('model-downloader.token'))).toBe('sesame-1234');
  await page.waitForFunction(() => document.querySelectorAll('#add-folder option').length > 5);

  // A browser that has no token: an inline prompt, then live.
  const other = await open(await context(), `${s.url}/`);
  await waitConnection(other, 'unauthorized');
  await other.waitForSelector('#token-banner:not([hidden])');
  await other.fill('#token-input', 'wrong');
  await other.click('#token-form button[type="submit"]');
  await other.waitForSelector('#token-banner:not([hidden]) #token-msg:has-text("not accepted")');
  await other.fill('#token-input', 'sesame-1234');
  await other.click('#token-form button[type="submit"]');
  await waitConnection(other, 'live');
  expect(await other.isHidden('#token-banner')).toBe(true);
  // The API calls carry it too: a command from this page works.
  await other.fill('#add-url', 'http://127.0.0.1:9/nothing.bin');
  await other.click('#add-submit');
  await other.waitForSelector('#add-msg[data-tone="ok"]');
});

test('when the WebSocket cannot open, the page polls /status and says so', async () => {
  const f = await files();
  f.addFile('/polled.safetensors', { size: 8 * MB, throttle: 2 * MB });
  const s = await server();
  const ctx = await context();
  // A proxy that kills every WebSocket before the server's first frame.
  await ctx.routeWebSocket(/\/ws/, (ws) => ws.close());
  const page = await open(ctx, `${s.url}/`);
  await waitConnection(page, 'polling');
  expect(await page.textContent('#conn')).toContain('Polling every 2 s');
  const { dest } = await add(s, `${f.url}/polled.safetensors`, 'vae');
  const first = await waitBarAbove(page, dest, 0, 5000);
  await waitBarAbove(page, dest, first, 5000);
});

test('the catalog: hidden when empty; cards by set from the server, each with its own progress, restored on reload', async () => {
  const f = await files();
  f.addFile('/sd_xl_base_1.0.safetensors', { size: 6 * MB, throttle: 2 * MB });
  const s = await server();
  await fs.writeFile(s.config.catalogFile, '{}');
  const ctx = await context();
  const answered = ctx.waitForEvent('response', (r) => r.url().endsWith('/api/catalog'));
  const plain = await open(ctx, `${s.url}/`);
  expect(await (await answered).json()).toEqual({});
  await waitConnection(plain, 'live');
  expect(await plain.isHidden('#catalog')).toBe(true);

  // The server's own catalog file (re-read on every request), in the seed's format.
  const catalog = {
    sdxl: {
      name: 'SDXL',
      models: {
        base: { name: 'SDXL base 1.0', url: `${f.url}/sd_xl_base_1.0.safetensors`, path: 'checkpoints/sd_xl_base_1.0.safetensors', description: 'Stability AI base model' },
        vae: { name: 'SDXL VAE', url: `${f.url}/sdxl_vae.safetensors`, path: 'vae/sdxl_vae.safetensors', description: 'fp16-fixed VAE' },
      },
    },
    upscale: { name: 'Upscalers', models: { ultrasharp: { name: '4x-UltraSharp', url: `${f.url}/4x.pth`, path: 'upscale_models/4x-UltraSharp.pth', description: '' } } },
  };
  await fs.writeFile(s.config.catalogFile, JSON.stringify(catalog));
  await fs.mkdir(path.join(s.modelsDir, 'vae'), { recursive: true });
  await fs.writeFile(path.join(s.modelsDir, 'vae', 'sdxl_vae.safetensors'), 'already here');
  const page = await open(await context(), `${s.url}/`);
  await page.waitForSelector('#catalog:not([hidden]) .card');
  expect(await page.$$eval('.cat-set-name', (hs) => hs.map((h) => h.textContent))).toEqual(['SDXL', 'Upscalers']);
  const card = (p: string): string => `.card[data-path="${p}"]`;
  expect(await page.textContent(`${card('vae/sdxl_vae.safetensors')} .card-state`)).toBe('On disk');

  // The card's button goes through the real POST /download.
  const started = page.waitForResponse((r) => r.url().endsWith('/download') && r.request().method() === 'POST');
  await page.click(`${card('checkpoints/sd_xl_base_1.0.safetensors')} button`);
  expect((await started).status()).toBe(202);
  await page.waitForFunction((sel) => (document.querySelector<HTMLProgressElement>(sel)?.value ?? 0) > 0, `${card('checkpoints/sd_xl_base_1.0.safetensors')} progress`);
  await fs.mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'catalog.png'), fullPage: true });
  // Restored on load like the rest.
  await page.reload();
  await page.waitForFunction((sel) => (document.querySelector<HTMLProgressElement>(sel)?.value ?? 0) > 0, `${card('checkpoints/sd_xl_base_1.0.safetensors')} progress`, { timeout: 2000 });
  await page.waitForSelector(`${card('checkpoints/sd_xl_base_1.0.safetensors')}[data-status="completed"]`, { timeout: 15_000 });
  expect(await page.textContent(`${card('checkpoints/sd_xl_base_1.0.safetensors')} .card-state`)).toBe('On disk');
});

test('screenshot: the dashboard with downloads in different states, on a desktop and a phone', async () => {
  const f = await files();
  f.addFile('/flux1-dev-fp8.safetensors', { size: 96 * MB, throttle: 3 * MB });
  f.addFile('/sdxl_lightning_4step_lora.safetensors', { size: 24 * MB, throttle: 4 * MB });
  f.addFile('/4x-UltraSharp.pth', { size: 3 * MB });
  f.addFile('/sd_xl_refiner_1.0.safetensors', { size: 96 * MB, throttle: 4 * MB });
  f.addFile('/sdxl_vae.safetensors', { size: 2 * MB });
  const s = await server();
  const page = await open(await context({ width: 1280, height: 600 }), `${s.url}/`);
  await waitConnection(page, 'live');
  await add(s, `${f.url}/4x-UltraSharp.pth`, 'upscale_models');
  await waitStatus(page, 'upscale_models/4x-UltraSharp.pth', 'completed');
  await add(s, `${f.url}/ltx-video-2b-v0.9.5.safetensors`, 'diffusion_models'); // 404
  const lora = await add(s, `${f.url}/sdxl_lightning_4step_lora.safetensors`, 'loras');
  await waitBarAbove(page, lora.dest, 350);
  const paused = await s.api('POST', `/api/downloads/${lora.id}/pause`);
  expect(paused.status).toBe(200);
  await waitStatus(page, lora.dest, 'paused');
  const flux = await add(s, `${f.url}/flux1-dev-fp8.safetensors`, 'checkpoints');
  // A workflow's models, started as one group: one done, one downloading, one whose link is dead.
  const link = (name: string, directory: string) => ({ properties: { models: [{ name, url: `${f.url}/${name}`, directory }] } });
  const node = (id: number, type: string, widgets: unknown[], extra: object) => ({ id, type, mode: 0, inputs: [], outputs: [], properties: {}, widgets_values: widgets, ...extra });
  const started = await s.api('POST', '/api/workflows/download?name=sdxl-refiner.json', {
    nodes: [
      node(1, 'CheckpointLoaderSimple', ['sd_xl_refiner_1.0.safetensors'], link('sd_xl_refiner_1.0.safetensors', 'checkpoints')),
      node(2, 'VAELoader', ['sdxl_vae.safetensors'], link('sdxl_vae.safetensors', 'vae')),
      node(3, 'ControlNetLoader', ['controlnet-canny-sdxl.safetensors'], link('controlnet-canny-sdxl.safetensors', 'controlnet')), // 404
    ],
    links: [],
  });
  expect(started.status).toBe(202);
  await waitStatus(page, 'vae/sdxl_vae.safetensors', 'completed');
  await waitStatus(page, 'controlnet/controlnet-canny-sdxl.safetensors', 'error');
  await waitStatus(page, 'diffusion_models/ltx-video-2b-v0.9.5.safetensors', 'error');
  await waitBarAbove(page, flux.dest, 60);
  await waitBarAbove(page, 'checkpoints/sd_xl_refiner_1.0.safetensors', 60);
  await page.waitForFunction((sel) => /left$/.test(document.querySelector(sel)?.textContent ?? ''), `${row(flux.dest)} .eta`);
  await page.waitForFunction(() => /left$/.test(document.querySelector('li.group > .group-head .eta')?.textContent ?? ''));

  await fs.mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-full.png'), fullPage: true });
  // The lists (docs/dashboard.png): down to the finished list, without the catalog below.
  const bottom = await page.$eval('#finished', (el) => Math.ceil(el.getBoundingClientRect().bottom + window.scrollY + 14));
  await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true, clip: { x: 0, y: 0, width: 1280, height: bottom } });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-dark.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'light' });
  const phone = await open(await context({ width: 390, height: 844 }), `${s.url}/`);
  await waitBarAbove(phone, flux.dest, 0, 1000);
  await phone.screenshot({ path: path.join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });

  expect(await shownRows(page)).toEqual([
    `active-list:${lora.dest}:paused`,
    `active-list:${flux.dest}:downloading`,
    // A group's rows by dest.
    'active-list:checkpoints/sd_xl_refiner_1.0.safetensors:downloading',
    'active-list:controlnet/controlnet-canny-sdxl.safetensors:error',
    'active-list:vae/sdxl_vae.safetensors:completed',
    'finished-list:diffusion_models/ltx-video-2b-v0.9.5.safetensors:error',
    'finished-list:upscale_models/4x-UltraSharp.pth:completed',
  ]);
  expect(await page.textContent('li.group[data-name="sdxl-refiner"] > .group-head .where')).toBe('1 of 3 done · 1 failed');
  // Nothing sticks out sideways on a phone.
  expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  for (const name of ['dashboard.png', 'dashboard-full.png', 'dashboard-dark.png', 'dashboard-phone.png']) {
    expect((await fs.stat(path.join(ARTIFACTS, name))).size).toBeGreaterThan(10_000);
  }
});
