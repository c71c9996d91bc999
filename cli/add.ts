import type { AddRequest, Entry } from '../server/protocol/wire';
import { formatBytes } from '../client/format';
import { isGroupAnswer, type AddAnswer, type FoundFile, type GroupAnswer, type Skipped } from './answers';
import type { Api } from './api';
import type { CliOptions } from './args';
import type { Output } from './render';
import { summary, track, type Tracked } from './watch';

export interface CommandContext {
  o: CliOptions;
  api: Api;
  out: Output;
  err: Output;
}

/** Every followed download completed: nothing failed, was cancelled, paused or lost. */
export const allCompleted = ({ entries, vanished }: Tracked): boolean => entries.every((e) => e.status === 'completed' && !vanished.has(e.id));

/**
 * Follows `downloads` with live bars until they have ended, then prints the summary (unless told
 * not to): the failed, cancelled and paused ones with why. Resolves with what was tracked.
 */
export async function follow(c: CommandContext, downloads: readonly Entry[], options: { label?: string; summary?: boolean } = {}): Promise<Tracked> {
  const tracked = await track({ server: c.o.server, ...(c.o.token ? { token: c.o.token } : {}), api: c.api, out: c.out, follow: downloads, ...(options.label ? { label: options.label } : {}) });
  if (options.summary !== false) c.out.write(summary(tracked.entries, tracked.vanished, { strict: true }));
  return tracked;
}

/** The entries of `skipped` files that are skipped because they are already being downloaded. */
export async function alreadyActive(api: Api, skipped: readonly Skipped[]): Promise<Entry[]> {
  const dests = new Set(skipped.filter((s) => s.error.code === 'ALREADY_ACTIVE').map((s) => `${s.folder}/${s.filename}`));
  if (dests.size === 0) return [];
  const { body } = await api.request<{ downloads: Entry[] }>('GET', 'api/downloads');
  return body.downloads.filter((e) => dests.has(e.dest));
}

const total = (entries: readonly Entry[]): string => {
  const sizes = entries.map((e) => e.file_size);
  return sizes.every((s) => s !== null) ? ` (${formatBytes(sizes.reduce((n, s) => n + s!, 0))})` : '';
};

/** A line for a file of a group that the server already had elsewhere (same sha256). */
export const foundLine = (f: FoundFile): string =>
  f.linked ? `  linked ${f.folder}/${f.filename} to ${f.same_as} (same sha256; nothing downloaded)\n` : `  already there: ${f.folder}/${f.filename} is ${f.same_as} (same sha256); --link links it into place\n`;

async function addGroup(c: CommandContext, answer: GroupAnswer): Promise<number> {
  const { group, downloads, skipped = [], found_elsewhere: found = [] } = answer;
  const joined = await alreadyActive(c.api, skipped);
  c.out.write(`Started ${downloads.length} file${downloads.length === 1 ? '' : 's'} of ${group.name}${total(downloads)} as group ${group.id}.\n`);
  for (const f of found) c.out.write(foundLine(f));
  for (const s of skipped) {
    const following = joined.some((e) => e.dest === `${s.folder}/${s.filename}`);
    c.out.write(`  skipped ${s.folder}/${s.filename}: ${following ? 'already being downloaded; following it' : `${s.error.message} (${s.error.code})`}\n`);
  }
  const all = [...downloads, ...joined];
  if (all.length === 0 && found.length > 0) return 0; // every file is already here
  if (all.length === 0) {
    c.err.write(`error: nothing of ${group.name} could be started\n`);
    return 1;
  }
  if (c.o.noWait) {
    c.out.write('Follow them with: npm run cli -- watch\n');
    return 0;
  }
  return allCompleted(await follow(c, all, { label: group.name })) ? 0 : 1;
}

/**
 * `add <url>`: starts the download and waits for its end with a bar (`--no-wait`: returns once the
 * server accepted it). A Hugging Face repository or folder starts a group: one bar per file.
 * Exit code 0 when everything completed or was already there, 1 otherwise.
 */
export async function add(c: CommandContext): Promise<number> {
  const { o } = c;
  const req: AddRequest = { url: o.url!, folder: o.folder, ...(o.filename ? { filename: o.filename } : {}), ...(o.sha256 ? { sha256: o.sha256 } : {}), ...(o.link ? { link: true } : {}) };
  const { status, body } = await c.api.request<AddAnswer | GroupAnswer>('POST', 'api/downloads', req);
  if (isGroupAnswer(body)) return addGroup(c, body);
  const { download } = body;
  if (status === 409) {
    c.err.write(`error: ${body.error?.message ?? 'Already active'} (${body.error?.code ?? 'ALREADY_ACTIVE'}): ${download.dest} is ${download.status}. Follow it with: npm run cli -- watch\n`);
    return 1;
  }
  if (body.status === 'already_exists' && body.same_as) {
    const size = download.file_size !== null ? ` (${formatBytes(download.file_size)})` : '';
    c.out.write(
      body.linked
        ? `Linked: ${download.dest} is now the same file as ${body.same_as}${size}; nothing downloaded.\n`
        : `Already there: the same file (sha256) is ${body.same_as}${size}; give --link to link it into ${o.folder} too.\n`,
    );
    return 0;
  }
  if (body.status === 'already_exists') {
    c.out.write(`Already there: ${download.dest}${download.file_size !== null ? ` (${formatBytes(download.file_size)})` : ''}; give --filename to save it under another name.\n`);
    return 0;
  }
  c.out.write(`Started: ${download.dest} (id ${download.id}).\n`);
  if (o.noWait) {
    c.out.write('Follow it with: npm run cli -- watch\n');
    return 0;
  }
  return allCompleted(await follow(c, [download])) ? 0 : 1;
}
