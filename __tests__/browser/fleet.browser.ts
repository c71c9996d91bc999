/// <reference lib="dom" />
/**
 * Fleet mode on the page, in a real browser: two real servers (in this process, as
 * __tests__/fleet/fleet.test.ts starts them) sharing one MODELS_DIR and one FLEET_DIR, a page on
 * each. Each row shows the instance that has its download, the header lists the instances, a pause
 * asked of the server that does not have the download is handed over and shows on both pages, a
 * download another instance has is refused naming it, and a stopped instance's rows are greyed
 * with a note saying since when. A lone server's page shows none of it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { startTestServer, tempDir, type TestServer } from '../helpers/harness';
import { browserSuite, row, waitBarAbove, waitConnection, waitStatus } from './browser';

const MB = 1024 * 1024;
const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts');
/**
 * Fleet timings shortened as in fleet.test.ts, but commands picked up at the default pace (250 ms),
 * so that the answer of a command handed over always comes before its effect. The stale time stays
 * long: a stopped server is stale at once.
 */
const TUNING = { pollMs: 100, publishMs: 200, confirmMs: 50, holderWaitMs: 2000 };

const { cleanups, files, server, context, open } = browserSuite();

/** A server of a fleet in `dir`: its own status file, the shared models and FLEET_DIR. */
async function member(dir: string, name: string): Promise<TestServer> {
  const s = await startTestServer(
    {
      MODELS_DIR: path.join(dir, 'models'),
      FLEET_DIR: path.join(dir, 'fleet'),
      INSTANCE_NAME: name,
      FLEET_STALE_SECONDS: '10',
      STATUS_FILE: path.join(dir, `status-${name}.json`),
      CATALOG_FILE: path.join(dir, 'catalog.json'),
    },
    { dir, fleet: TUNING },
  );
  cleanups.push(() => s.stop({ keepDir: true }));
  return s;
}

/** The instances the header lists: name, live or not, and what it says of each. */
const chips = (page: Page): Promise<string[]> =>
  page.$$eval('#fleet:not([hidden]) li.inst', (lis) => lis.map((li) => `${(li as HTMLElement).dataset.instance}:${(li as HTMLElement).dataset.live}:${li.textContent}`));

/** Records every text the note of `selector` shows from now on (a note may show for less than a frame of a test's polling). */
async function recordNotes(page: Page, selector: string): Promise<() => Promise<string[]>> {
  await page.evaluate((sel) => {
    const w = window as unknown as { notes: string[] };
    w.notes = [];
    const look = (): void => {
      const note = document.querySelector<HTMLElement>(sel);
      if (note && !note.hidden && note.textContent && w.notes.at(-1) !== note.textContent) w.notes.push(note.textContent);
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  }, selector);
  return () => page.evaluate(() => (window as unknown as { notes: string[] }).notes);
}

test('fleet mode: instance badges and the instances indicator; a pause handed to the owner; ACTIVE_ELSEWHERE on add; a stopped instance greyed', async () => {
  const f = await files();
  const big = f.addFile('/flux-big.safetensors', { size: 16 * MB, throttle: 1 * MB });
  const small = f.addFile('/tiny-vae.safetensors', { size: 64 * 1024 });
  const { dir, cleanup } = await tempDir('md-fleet-page-');
  cleanups.push(cleanup);
  const a = await member(dir, 'pod-a');
  const b = await member(dir, 'pod-b');
  const ctx = await context();
  const [pageA, pageB] = [await open(ctx, `${a.url}/`, { live: true }), await open(ctx, `${b.url}/`, { live: true })];

  const x = (await a.api('POST', '/api/downloads', { url: big.url, folder: 'checkpoints' })).body.download as { id: string; dest: string };
  const y = (await b.api('POST', '/api/downloads', { url: small.url, folder: 'vae' })).body.download as { id: string; dest: string };
  for (const page of [pageA, pageB]) {
    await waitBarAbove(page, x.dest, 0);
    await waitStatus(page, y.dest, 'completed');
    // Each row: the instance that has it.
    expect(await page.textContent(`${row(x.dest)} .instance`)).toBe('pod-a');
    expect(await page.textContent(`${row(y.dest)} .instance`)).toBe('pod-b');
    expect(await page.isVisible(`${row(x.dest)} .instance`)).toBe(true);
  }
  // The header: both instances, live, this page's own marked.
  await pageA.waitForFunction(() => document.querySelectorAll('#fleet li.inst').length === 2);
  await pageB.waitForFunction(() => document.querySelectorAll('#fleet li.inst').length === 2);
  expect(await chips(pageA)).toEqual(['pod-a:true:pod-athis server', 'pod-b:true:pod-b']);
  expect(await chips(pageB)).toEqual(['pod-b:true:pod-bthis server', 'pod-a:true:pod-a']);
  expect(await pageB.getAttribute(`${row(x.dest)} .instance`, 'data-self')).toBe('false');
  expect(await pageA.getAttribute(`${row(x.dest)} .instance`, 'data-self')).toBe('true');

  // pod-b's page says what its buttons do with pod-a's download; pod-a's page, its own, says nothing more.
  expect(await pageB.getAttribute(`${row(x.dest)} button[data-action="pause"]`, 'title')).toMatch(/^Pause: handed to instance pod-a, which has this download/);
  expect(await pageA.getAttribute(`${row(x.dest)} button[data-action="pause"]`, 'title')).toBeNull();

  // A pause from the page of the server that does not have the download: handed to pod-a, said so, done there.
  const notes = await recordNotes(pageB, `${row(x.dest)} .note`);
  const answered = pageB.waitForResponse((r) => r.url().endsWith(`/api/downloads/${x.id}/pause`));
  await pageB.click(`${row(x.dest)} button[data-action="pause"]`);
  const answer = await answered;
  expect(answer.status()).toBe(202);
  expect((await answer.json()).forwarded_to).toBe('pod-a');
  for (const page of [pageB, pageA]) await waitStatus(page, x.dest, 'paused', 5000);
  expect(a.store.getById(x.id)?.status).toBe('paused');
  expect(await notes()).toContain('Pause handed to instance pod-a, which has this download; the row changes when pod-a has done it.');
  // Done: the note has gone with the state it was about.
  expect(await pageB.isHidden(`${row(x.dest)} .note`)).toBe(true);

  // The same file asked of pod-b: refused, naming pod-a, as a note rather than a fault of the form.
  await pageB.fill('#add-url', big.url);
  await pageB.selectOption('#add-folder', 'checkpoints');
  await pageB.click('#add-submit');
  await pageB.waitForSelector('#add-msg[data-code="ACTIVE_ELSEWHERE"]');
  expect(await pageB.textContent('#add-msg')).toBe(`${x.dest} is paused on instance pod-a. Its row in the list shows its progress, marked pod-a.`);
  expect(await pageB.getAttribute('#add-msg', 'data-tone')).toBe('note');
  expect(await pageB.getAttribute('#add-url', 'aria-invalid')).toBeNull();

  // pod-a stops: on pod-b's page its rows go grey, with since when and what becomes of them.
  await a.stop({ keepDir: true });
  await pageB.waitForSelector(`${row(x.dest)}[data-stale="true"]`, { timeout: 5000 });
  await pageB.waitForSelector('#fleet li.inst[data-instance="pod-a"][data-live="false"]', { timeout: 5000 });
  expect(await chips(pageB)).toEqual([expect.stringMatching(/^pod-b:true:/), expect.stringMatching(/^pod-a:false:pod-astopped at \d\d:\d\d/)]);
  const note = await pageB.textContent(`${row(x.dest)} .note`);
  expect(note).toMatch(/^Instance pod-a stopped at \d\d:\d\d( [AP]M)?; this row is what it last published\. Another server takes this download over after 10 s of silence and goes on from its \.part\.$/);
  expect(await pageB.getAttribute(`${row(x.dest)} .note`, 'data-tone')).toBe('stale');
  expect(await pageB.$eval(`${row(x.dest)} .row-title`, (t) => Number(getComputedStyle(t).opacity))).toBeLessThan(1);
  expect(await pageB.getAttribute(`${row(x.dest)} button[data-action="resume"]`, 'title')).toMatch(
    /^Resume: refused while instance pod-a is silent, until it is back, or another server has taken the download over \(after 10 s of silence\)$/,
  );
  // pod-b's own row is as it was.
  expect(await pageB.getAttribute(row(y.dest), 'data-stale')).toBeNull();
  expect(await pageB.isHidden(`${row(y.dest)} .note`)).toBe(true);

  await fs.mkdir(ARTIFACTS, { recursive: true });
  await pageB.screenshot({ path: path.join(ARTIFACTS, 'fleet.png'), fullPage: true });
  // On a phone the instances take a line of their own; nothing sticks out sideways.
  const phone = await open(await context({ width: 390, height: 844 }), `${b.url}/`, { live: true });
  await phone.waitForSelector('#fleet li.inst[data-instance="pod-a"][data-live="false"]');
  await phone.waitForSelector(`${row(x.dest)}[data-stale="true"]`);
  await phone.screenshot({ path: path.join(ARTIFACTS, 'fleet-phone.png') });
  expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
});

test('a lone server (no FLEET_DIR): no instances indicator, no instance badges', async () => {
  const f = await files();
  const small = f.addFile('/lone.safetensors', { size: 64 * 1024 });
  const s = await server();
  const ctx = await context();
  const asked = ctx.waitForEvent('response', (r) => r.url().endsWith('/api/fleet'));
  const page = await open(ctx, `${s.url}/`, { live: true });
  expect((await asked).status()).toBe(404);
  const { dest } = (await s.api('POST', '/api/downloads', { url: small.url, folder: 'loras' })).body.download as { dest: string };
  await waitStatus(page, dest, 'completed');
  await waitConnection(page, 'live');
  expect(await page.isHidden('#fleet')).toBe(true);
  expect(await page.$$('#fleet li')).toHaveLength(0);
  expect(await page.isHidden(`${row(dest)} .instance`)).toBe(true);
  expect(await page.textContent(`${row(dest)} .where`)).toBe(`loras · ${new URL(small.url).host}`);
  expect(await page.$$eval('li.row button[title]', (bs) => bs.length)).toBe(0);
});
