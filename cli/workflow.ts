import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry } from '../server/protocol/wire';
import { formatBytes, hostOf } from '../client/format';
import { alreadyActive, follow, foundLine, type CommandContext } from './add';
import type { Plan, PlannedModel, WorkflowDownload } from './answers';
import { CliError, type RawBody } from './api';
import { fit } from './render';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** The file's bytes as they are: a PNG (by its signature, whatever its name) as image/png, anything else as JSON. */
export async function readWorkflowFile(file: string): Promise<RawBody> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(`Cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (err as Error).message}`, 'refused');
  }
  const png = bytes.subarray(0, 8).equals(PNG_SIGNATURE);
  return { bytes: new Uint8Array(bytes), type: png ? 'image/png' : 'application/json' };
}

const MARK: Record<PlannedModel['state'], string> = { installed: '✓', missing: '+', active: '↓', no_source: '✗' };

const sourceOf = (m: PlannedModel): string => (m.source ? `${m.source}${m.url ? ` · ${hostOf(m.url)}` : ''}` : '—');

/** What to say under a model's row: where it was found, why it may fail, what to do. */
function notes(m: PlannedModel): string[] {
  const out: string[] = [];
  if (m.found_at) out.push(`found at ${m.found_at}`);
  if (m.state === 'active' && m.download_id) out.push(`being downloaded (id ${m.download_id})`);
  if (m.gated) out.push(`gated: ${m.gated}`);
  if (m.error) out.push(`error: ${m.error.message} (${m.error.code})`);
  if (m.state === 'no_source') out.push(`no known source: find the file, then \`npm run cli -- add <url> --folder ${m.dest.slice(0, m.dest.lastIndexOf('/'))}\``);
  return out;
}

/**
 * The plan as a table: one row per model (name, folder, state, size, source), and under a row what
 * else there is to know (found at, gated, error, what to do).
 */
export function planTable(plan: Plan, columns?: number): string {
  const count = (s: PlannedModel['state']): number => plan.models.filter((m) => m.state === s).length;
  const parts = [
    `${count('installed')} installed`,
    ...(count('active') ? [`${count('active')} being downloaded`] : []),
    ...(count('missing') ? [`${count('missing')} missing${plan.missing_bytes > 0 ? ` (${formatBytes(plan.missing_bytes)} to download)` : ''}`] : []),
    ...(count('no_source') ? [`${count('no_source')} without a source`] : []),
  ];
  const title = `Workflow${plan.name ? ` ${plan.name}` : ''}: ${plan.models.length} model${plan.models.length === 1 ? '' : 's'}${plan.models.length ? ` — ${parts.join(', ')}` : ''}\n`;
  if (plan.models.length === 0) return title;
  const clip = (text: string): string => (columns && text.length > columns ? `${text.slice(0, columns - 1)}…` : text);
  const width = (header: string, values: string[], max: number): number => Math.min(max, Math.max(header.length, ...values.map((v) => v.length)));
  const nameW = width('MODEL', plan.models.map((m) => m.name), 48);
  const folderW = width('FOLDER', plan.models.map((m) => m.folder), 24);
  const stateW = width('STATE', plan.models.map((m) => m.state), 10);
  const sizes = plan.models.map((m) => (m.size === undefined ? '—' : formatBytes(m.size)));
  const sizeW = width('SIZE', sizes, 10);
  const row = (mark: string, name: string, folder: string, state: string, size: string, source: string): string =>
    clip(`${mark} ${fit(name, nameW)}  ${fit(folder, folderW)}  ${state.padEnd(stateW)}  ${size.padStart(sizeW)}  ${source}`).trimEnd();
  let text = `${title}\n${row(' ', 'MODEL', 'FOLDER', 'STATE', 'SIZE', 'SOURCE')}\n`;
  plan.models.forEach((m, i) => {
    const mark = m.error && m.state !== 'installed' ? '!' : MARK[m.state];
    text += `${row(mark, m.name, m.folder, m.state, sizes[i]!, sourceOf(m))}\n`;
    for (const n of notes(m)) text += `${clip(`    ${n}`)}\n`;
  });
  return text;
}

/** Why a model is not installed at the end, or undefined when it is. */
function shortfall(m: PlannedModel, final: ReadonlyMap<string, Entry>, vanished: ReadonlySet<string>): string | undefined {
  if (m.state === 'installed') return undefined;
  if (m.state === 'no_source') return 'no known source';
  if (m.state === 'active' && m.download_id) {
    const e = final.get(m.download_id);
    if (!e) return 'its download could not be followed';
    if (vanished.has(e.id)) return 'its download is no longer listed';
    if (e.status === 'completed') return undefined;
    return e.status === 'error' ? `${e.error?.message ?? 'failed'} (${e.error?.code ?? 'ERROR'})` : e.status;
  }
  if (m.error) return `${m.error.message} (${m.error.code})`;
  return 'not started';
}

/**
 * `workflow <file>`: the plan of a workflow (JSON, or a PNG saved by ComfyUI) as a table; then,
 * unless `--dry-run`, its missing models started as one group and followed until they end.
 * Exit code 0 when every model is installed at the end (for a dry run: now), 1 otherwise.
 */
export async function workflow(c: CommandContext): Promise<number> {
  const file = c.o.file!;
  const body = await readWorkflowFile(file);
  const query = `?name=${encodeURIComponent(path.basename(file))}${c.o.link ? '&link=true' : ''}`;
  const post = async <T>(route: string): Promise<T> => {
    try {
      return (await c.api.request<T>('POST', `api/workflows/${route}${query}`, body)).body;
    } catch (err) {
      // An older server without the route: it cannot be used for this.
      if (err instanceof CliError && err.answer?.status === 404 && err.answer.code === 'NOT_FOUND') {
        throw new CliError(`${c.o.server} has no /api/workflows/${route}: it is older than this client; update it`, 'failing', err.answer);
      }
      throw err;
    }
  };

  const plan = await post<Plan>('plan');
  c.out.write(planTable(plan, c.out.isTTY ? c.out.columns : undefined));
  const startable = plan.models.filter((m) => m.state === 'missing' && m.url && !m.error);
  if (c.o.dryRun) {
    const ready = plan.models.every((m) => m.state === 'installed');
    c.out.write(ready ? '\nEvery model is installed.\n' : `\nDry run: nothing started. ${startable.length ? `Without --dry-run, ${startable.length} would be downloaded.` : ''}\n`);
    return ready ? 0 : 1;
  }

  let models = plan.models;
  const followed: Entry[] = [];
  let label = plan.name ?? path.basename(file);
  /** Models the server already has at another dest (same sha256), not linked: where. */
  const elsewhere = new Map<string, string>();
  if (startable.length > 0) {
    const started = await post<WorkflowDownload>('download');
    models = started.models;
    label = started.group.name;
    followed.push(...started.downloads, ...(await alreadyActive(c.api, started.skipped ?? [])));
    c.out.write(`\nStarted ${started.downloads.length} download${started.downloads.length === 1 ? '' : 's'} as group ${started.group.name} (${started.group.id}).\n`);
    for (const f of started.found_elsewhere ?? []) {
      c.out.write(foundLine(f));
      if (!f.linked) elsewhere.set(`${f.folder}/${f.filename}`, f.same_as);
    }
    for (const s of started.skipped ?? []) c.out.write(`  skipped ${s.folder}/${s.filename}: ${s.error.message} (${s.error.code})\n`);
    // A model skipped because it is already being downloaded is followed all the same.
    models = models.map((m) => {
      const e = followed.find((d) => d.dest === m.dest);
      return e && m.state !== 'installed' ? { ...m, state: 'active' as const, download_id: e.id } : m;
    });
  }
  // Models that were being downloaded before this command: followed too.
  const known = new Set(followed.map((e) => e.id));
  const others = models.filter((m) => m.state === 'active' && m.download_id && !known.has(m.download_id)).map((m) => m.download_id!);
  if (others.length > 0) {
    const { body: list } = await c.api.request<{ downloads: Entry[] }>('GET', 'api/downloads');
    followed.push(...list.downloads.filter((e) => others.includes(e.id)));
  }

  const final = new Map<string, Entry>();
  let vanished: ReadonlySet<string> = new Set();
  if (followed.length > 0) {
    c.out.write('\n');
    const tracked = await follow(c, followed, { label, summary: false }); // the models' summary below says it all
    for (const e of tracked.entries) final.set(e.id, e);
    vanished = tracked.vanished;
  }

  const why = (m: PlannedModel): string | undefined =>
    elsewhere.has(m.dest) ? `the same file (sha256) is ${elsewhere.get(m.dest)}; run again with --link to link it here` : shortfall(m, final, vanished);
  const missing = models.map((m) => ({ m, why: why(m) })).filter((x) => x.why !== undefined);
  const installed = models.length - missing.length;
  if (missing.length === 0) {
    c.out.write(`\nEvery model is installed (${installed} of ${models.length}).\n`);
    return 0;
  }
  c.out.write(`\n${installed} of ${models.length} models installed; missing:\n`);
  for (const { m, why } of missing) c.out.write(`  ✗ ${m.dest}: ${why}\n`);
  return 1;
}
