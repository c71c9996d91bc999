import type { Entry } from '../server/protocol/wire';
import { isActive } from '../server/protocol/status';
import { formatBytes, formatDuration, formatPercent, formatSpeed } from '../client/format';

/** Where the lines go: a terminal gets bars redrawn in place, a pipe or file gets plain lines. */
export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

const MARK: Record<Entry['status'], string> = {
  queued: '·',
  starting: '…',
  downloading: '↓',
  paused: '‖',
  verifying: '≡',
  completed: '✓',
  error: '✗',
  cancelled: '–',
};

/** `[██████░░░░]` or, for a pipe, `[######----]`. */
export function bar(progress: number, width: number, unicode: boolean): string {
  const filled = Math.max(0, Math.min(width, Math.round((progress / 100) * width)));
  const [on, off] = unicode ? ['█', '░'] : ['#', '-'];
  return `[${on.repeat(filled)}${off.repeat(width - filled)}]`;
}

/** `text` padded to `width`, or cut at its start (`…ng/name.safetensors`): the end of a path says most. */
export const fit = (text: string, width: number): string => (text.length <= width ? text.padEnd(width) : `…${text.slice(text.length - width + 1)}`);

const clip = (text: string, columns: number | undefined): string => (columns && text.length > columns ? `${text.slice(0, columns - 1)}…` : text);

export interface LineOptions {
  unicode: boolean;
  columns?: number;
  /** Width of a group column before the destination (`status` when some download has a group). */
  groupWidth?: number;
  /** Width of an instance column first (`status` in fleet mode: which server has the download). */
  instanceWidth?: number;
  /** Width of the destination column. @default 36 */
  destWidth?: number;
}

/** The part of a line that is not the destination, with a short tail: what the destination may not take. */
const LINE_REST = 80;

/**
 * A destination column wide enough for these downloads (at least 36, at most 64), and narrow
 * enough to leave the rest of a line room on a terminal of `columns`.
 */
export function destWidth(entries: readonly Entry[], columns?: number): number {
  const widest = Math.min(64, Math.max(36, ...entries.map((e) => e.dest.length)));
  return columns ? Math.max(20, Math.min(widest, columns - LINE_REST)) : widest;
}

/** One download as one line: mark, destination, bar, percent, bytes, speed, ETA and status (or the error). */
export function line(e: Entry, options: LineOptions = { unicode: false }): string {
  const bytes = `${formatBytes(e.downloaded)} / ${formatBytes(e.file_size)}`;
  const moving = e.status === 'downloading';
  const tail =
    e.status === 'error' || (e.status === 'starting' && e.error)
      ? `${e.status}: ${e.error?.message ?? 'failed'}`
      : moving
        ? `${formatSpeed(e.speed)}  ETA ${formatDuration(e.eta)}`
        : e.status;
  const group = options.groupWidth ? `${fit(e.group?.name ?? '', options.groupWidth)} ` : '';
  const instance = options.instanceWidth ? `${fit(`${e.instance ?? ''}${e.instance_stale ? ' (stale)' : ''}`, options.instanceWidth)} ` : '';
  const text = `${MARK[e.status]} ${instance}${group}${fit(e.dest, options.destWidth ?? 36)} ${bar(e.progress, 24, options.unicode)} ${formatPercent(e.progress).padStart(4)}  ${bytes.padEnd(21)} ${tail}`;
  return clip(text, options.columns);
}

/**
 * Several downloads as one line: bytes summed, the bar by bytes when every size is known (by
 * completed files otherwise), the summed speed and the ETA it gives, and how many completed or failed.
 */
export function totalLine(entries: readonly Entry[], label: string, options: { unicode: boolean; columns?: number; destWidth?: number }): string {
  const completed = entries.filter((e) => e.status === 'completed').length;
  const failed = entries.filter((e) => e.status === 'error').length;
  const sized = entries.every((e) => e.file_size !== null);
  const have = entries.reduce((n, e) => n + e.downloaded, 0);
  const want = sized ? entries.reduce((n, e) => n + (e.file_size ?? 0), 0) : null;
  const progress = want ? (100 * have) / want : entries.length ? (100 * completed) / entries.length : 100;
  const speed = entries.reduce((n, e) => n + (e.status === 'downloading' ? e.speed : 0), 0);
  const eta = want !== null && speed > 0 ? (want - have) / speed : null;
  const bytes = `${formatBytes(have)} / ${formatBytes(want)}`;
  const moving = speed > 0 ? `${formatSpeed(speed)}  ETA ${formatDuration(eta)}  ` : '';
  const text = `Σ ${fit(label, options.destWidth ?? 36)} ${bar(progress, 24, options.unicode)} ${formatPercent(progress).padStart(4)}  ${bytes.padEnd(21)} ${moving}${completed}/${entries.length} completed${failed ? `, ${failed} failed` : ''}`;
  return clip(text, options.columns);
}

export interface Renderer {
  /** Shows the current state of these downloads. */
  draw(entries: readonly Entry[]): void;
  /** Shows the final state (never throttled). */
  finish(entries: readonly Entry[]): void;
}

export interface RendererOptions {
  /** On a terminal, a total line above several downloads, with this label (a group's name). */
  label?: string;
  now?: () => number;
}

/** A pipe gets a progress line when a download crosses a step of this many percent. */
export const PIPE_STEP = 10;
/** …or, while its percent does not move (an unknown size), at most this often when its bytes do. */
export const PIPE_QUIET_MS = 30_000;

/**
 * A terminal gets one line per download (and a total line over several), redrawn in place at most
 * ten times a second, within its height: finished downloads fold into one line when they do not
 * fit. A pipe gets a line when a download changes state or crosses a step of PIPE_STEP percent.
 */
export function createRenderer(out: Output, options: RendererOptions = {}): Renderer {
  const now = options.now ?? Date.now;
  if (out.isTTY) {
    let drawn = 0;
    let last = -Infinity;
    const paint = (entries: readonly Entry[]): void => {
      last = now();
      const opts = { unicode: true, destWidth: destWidth(entries, out.columns), ...(out.columns ? { columns: out.columns } : {}) };
      const lines = fitRows(entries, out.rows, opts);
      if (entries.length > 1) lines.unshift(totalLine(entries, options.label ?? 'all', opts));
      let text = drawn > 0 ? `\x1b[${drawn}A` : '';
      for (const l of lines) text += `\r\x1b[2K${l}\n`;
      // Fewer lines than last time (finished ones folded): clear what is left below.
      if (lines.length < drawn) text += '\x1b[J';
      out.write(text);
      drawn = lines.length;
    };
    return {
      draw: (entries) => {
        if (now() - last >= 100) paint(entries);
      },
      finish: paint,
    };
  }
  const printed = new Map<string, { status: Entry['status']; step: number; downloaded: number; at: number }>();
  const print = (entries: readonly Entry[], force: boolean): void => {
    const width = destWidth(entries);
    for (const e of entries) {
      const prev = printed.get(e.id);
      const t = now();
      const step = Math.floor(e.progress / PIPE_STEP);
      const changed = !prev || prev.status !== e.status;
      const stepped = prev !== undefined && prev.step !== step;
      const quietly = prev !== undefined && prev.downloaded !== e.downloaded && t - prev.at >= PIPE_QUIET_MS;
      if (changed || stepped || quietly || (force && prev?.downloaded !== e.downloaded)) {
        out.write(`${line(e, { unicode: false, destWidth: width })}\n`);
        printed.set(e.id, { status: e.status, step, downloaded: e.downloaded, at: t });
      }
    }
  };
  return { draw: (entries) => print(entries, false), finish: (entries) => print(entries, true) };
}

/** The lines of `entries` within `rows - 2` (room for the total line and the cursor). */
function fitRows(entries: readonly Entry[], rows: number | undefined, opts: LineOptions): string[] {
  const room = rows ? Math.max(3, rows - 2) : Infinity;
  if (entries.length <= room) return entries.map((e) => line(e, opts));
  const running = entries.filter((e) => isActive(e.status));
  const ended = entries.filter((e) => !isActive(e.status));
  const shown = running.slice(0, room - 1);
  const count = (s: Entry['status']): number => ended.filter((e) => e.status === s).length;
  const parts = (['completed', 'error', 'cancelled', 'paused'] as const).filter((s) => count(s) > 0).map((s) => `${count(s)} ${s === 'error' ? 'failed' : s}`);
  const hidden = running.length - shown.length;
  const summary = [...(hidden > 0 ? [`${hidden} more waiting`] : []), ...parts].join(', ');
  return [...shown.map((e) => line(e, opts)), `  … ${summary}`];
}
