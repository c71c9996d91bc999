// `pause`, `resume`, `cancel` and `retry` from the terminal: for one download (by id or by the dest
// `status` shows), or for every member of a group (a workflow, a Hugging Face folder: by its id or
// its name), as the page's buttons and a group's "Pause all" do.
import type { Entry, GroupCommandAnswer, GroupRef } from '../server/protocol/wire';
import type { CommandContext } from './add';
import { CliError } from './api';
import type { ControlCommand } from './args';

type Target = { download: Entry } | { group: GroupRef; members: number };

/** What `target` names among `downloads`: an id, then a dest, then a group's id, then a group's name. */
export function findTarget(downloads: readonly Entry[], target: string): Target {
  const download = downloads.find((e) => e.id === target) ?? downloads.find((e) => e.dest === target);
  if (download) return { download };
  const groups = new Map<string, { group: GroupRef; members: number }>();
  for (const e of downloads) {
    if (!e.group || (e.group.id !== target && e.group.name !== target)) continue;
    const g = groups.get(e.group.id) ?? { group: e.group, members: 0 };
    g.members++;
    groups.set(e.group.id, g);
  }
  if (groups.size === 1) return [...groups.values()][0]!;
  if (groups.size > 1) {
    const ids = [...groups.values()].map((g) => `${g.group.id} (${g.members} files)`).join(', ');
    throw new CliError(`${groups.size} groups are named \`${target}\`: give one of their ids instead: ${ids}`, 'refused');
  }
  throw new CliError(`No download or group \`${target}\`: give a download's id or dest, or a group's id or name, as \`status\` lists them`, 'refused');
}

const DONE: Record<ControlCommand, string> = { pause: 'paused', resume: 'resumed', cancel: 'cancelled', retry: 'retried' };

/**
 * Runs the command; prints what it changed (and, for a group, what it left and why). Exit 0 when it
 * changed something, 1 when nothing fitted (the server's 409, or a group where every file was left)
 * or nothing is named `target`.
 */
export async function control(c: CommandContext, command: ControlCommand, target: string): Promise<number> {
  const { body } = await c.api.request<{ downloads: Entry[] }>('GET', 'api/downloads');
  const found = findTarget(body.downloads, target);
  if ('download' in found) {
    const e = found.download;
    const res = await c.api.request<{ download: Entry; forwarded_to?: string; error?: { code: string; message: string } }>('POST', `api/downloads/${encodeURIComponent(e.id)}/${command}`);
    if (res.status === 409) {
      // The command does not fit its state (a completed file is not paused): the server says why.
      c.err.write(`${res.body.error?.message ?? `Cannot ${command} ${e.dest}: it is ${res.body.download.status}`}\n`);
      return 1;
    }
    const by = res.body.forwarded_to ? ` (handed to instance ${res.body.forwarded_to})` : '';
    c.out.write(`${e.dest}: ${DONE[command]}${by}, now ${res.body.download.status}\n`);
    return 0;
  }
  const res = await c.api.request<GroupCommandAnswer>('POST', `api/groups/${encodeURIComponent(found.group.id)}/${command}`);
  const { downloads, left } = res.body;
  c.out.write(`${found.group.name}: ${downloads.length} of ${found.members} file${found.members === 1 ? '' : 's'} ${DONE[command]}\n`);
  for (const l of left) c.out.write(`  left ${l.dest}: ${l.error ? l.error.message : `it is ${l.status}`}\n`);
  return downloads.length > 0 ? 0 : 1;
}
