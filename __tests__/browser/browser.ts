/// <reference lib="dom" />
/**
 * Helpers of the browser tests: Debian's Chromium through playwright-core (never a downloaded
 * browser), and waits on what the page shows, each with a deadline.
 */
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startFileServer, type FileServer } from '../helpers/file-server';
import { startTestServer, type TestServer } from '../helpers/harness';

/** Flags for a headless Chromium in a container: no sandbox, no GPU, nothing phoning home. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

/**
 * One Chromium for a test file, and what each test starts (file servers, servers, contexts), closed
 * after it in reverse order. Call at the top of a test file: it registers the jest hooks.
 */
export function browserSuite(env: Record<string, string> = {}) {
  let browser: Browser;
  const cleanups: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });
  return {
    cleanups,
    async files(): Promise<FileServer> {
      const f = await startFileServer();
      cleanups.push(() => f.close());
      return f;
    },
    async server(more: Record<string, string> = {}): Promise<TestServer> {
      const s = await startTestServer({ ...env, ...more });
      cleanups.push(() => s.stop());
      return s;
    },
    async context(viewport = { width: 1280, height: 800 }): Promise<BrowserContext> {
      const ctx = await browser.newContext({ viewport, locale: 'en-US' });
      cleanups.push(() => ctx.close());
      return ctx;
    },
    /**
     * A page at `url`. Page errors fail the test, and so do dialogs unless `dialogs` allows them
     * (the token prompt); with `live`, it waits for the live connection.
     */
    async open(ctx: BrowserContext, url: string, o: { live?: boolean; dialogs?: boolean } = {}): Promise<Page> {
      const page = await ctx.newPage();
      const errors: string[] = [];
      page.on('pageerror', (err) => errors.push(err.message));
      if (!o.dialogs) {
        page.on('dialog', (d) => {
          errors.push(`dialog: ${d.message()}`);
          void d.dismiss();
        });
      }
      cleanups.push(async () => expect(errors).toEqual([]));
      await page.goto(url);
      if (o.live) await waitConnection(page, 'live');
      return page;
    },
  };
}

/** The row of a download (by its `dest`), optionally only within #active-list or #finished-list. */
export const row = (dest: string, list?: 'active' | 'finished'): string => `${list ? `#${list}-list ` : ''}li.row[data-dest="${dest}"]`;

/** Waits until the bar of `dest` in the active list has a value above `above` (of 1000); returns it. */
export async function waitBarAbove(page: Page, dest: string, above: number, timeout = 10_000): Promise<number> {
  const handle = await page.waitForFunction(
    ([selector, min]) => {
      const bar = document.querySelector<HTMLProgressElement>(selector);
      return bar && bar.hasAttribute('value') && bar.value > min ? bar.value : false;
    },
    [`${row(dest, 'active')} progress`, above] as const,
    { timeout },
  );
  return (await handle.jsonValue()) as number;
}

export async function waitStatus(page: Page, dest: string, status: string, timeout = 15_000): Promise<void> {
  await page.waitForSelector(`${row(dest)}[data-status="${status}"]`, { timeout });
}

export async function waitConnection(page: Page, state: string, timeout = 10_000): Promise<void> {
  await page.waitForSelector(`#conn[data-state="${state}"]`, { timeout });
}

/** What a page shows: each row's dest, list and status, in order (a group's rows within its list). */
export function shownRows(page: Page): Promise<string[]> {
  return page.$$eval('li.row', (rows) =>
    rows.map((r) => `${(r as HTMLElement).closest('#active-list, #finished-list')!.id}:${(r as HTMLElement).dataset.dest}:${(r as HTMLElement).dataset.status}`),
  );
}

/** The group block of a group (by its name), optionally only within #active-list or #finished-list. */
export const groupBlock = (name: string, list?: 'active' | 'finished'): string =>
  `${list ? `#${list}-list ` : ''}li.group[data-name="${name}"]`;

/** Waits until the total bar of a group in the active list has a value above `above` (of 1000); returns it. */
export async function waitGroupBarAbove(page: Page, name: string, above: number, timeout = 10_000): Promise<number> {
  const handle = await page.waitForFunction(
    ([groupName, min]) => {
      const group = [...document.querySelectorAll<HTMLElement>('#active-list li.group')].find((g) => g.dataset.name === groupName);
      const bar = group?.querySelector<HTMLProgressElement>(':scope > .group-head > progress');
      return bar && bar.hasAttribute('value') && bar.value > min ? bar.value : false;
    },
    [name, above] as const,
    { timeout },
  );
  return (await handle.jsonValue()) as number;
}

/** The plan table's row of a model (by its dest). */
export const planRow = (dest: string): string => `#wf-rows tr[data-dest="${dest}"]`;

/** Each plan row's dest and shown state, in order. */
export function planStates(page: Page): Promise<string[]> {
  return page.$$eval('#wf-rows tr', (rows) => rows.map((r) => `${(r as HTMLElement).dataset.dest}:${(r as HTMLElement).dataset.state}`));
}
