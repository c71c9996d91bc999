import type { Entry } from '../server/protocol/wire';
import { formatBytes, formatDuration, formatPercent, formatSpeed } from '../client/format';

/** Where the lines go: a terminal gets bars redrawn in place, a pipe or file gets plain lines. */
export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
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

const fit = (text: string, width: number): string => (text.length <= width ? text.padEnd(width) : `…${text.slice(text.length - width + 1)}`);

/** One download as one line: mark, destination, bar, percent, bytes, speed, ETA and status (or the error). */
export function line(e: Entry, options: { unicode: boolean; columns?: number } = { unicode: false }): string {
  const bytes = `${formatBytes(e.downloaded)} / ${formatBytes(e.file_size)}`;
  const moving = e.status === 'downloading';
  const tail =
    e.status === 'error' || (e.status === 'starting' && e.error)
      ? `${e.status}: ${e.error?.message ?? 'failed'}`
      : moving
        ? `${formatSpeed(e.speed)}  ETA ${formatDuration(e.eta)}`
        : e.status;
  const text = `${MARK[e.status]} ${fit(e.dest, 36)} ${bar(e.progress, 24, options.unicode)} ${formatPercent(e.progress).padStart(4)}  ${bytes.padEnd(21)} ${tail}`;
  return options.columns && text.length > options.columns ? `${text.slice(0, options.columns - 1)}…` : text;
}

export interface Renderer {
  /** Shows the current state of these downloads. */
  draw(entries: readonly Entry[]): void;
  /** Shows the final state (never throttled). */
  finish(entries: readonly Entry[]): void;
}

/**
 * A terminal gets one line per download, redrawn in place at most ten times a second. A pipe gets
 * a line when a download changes state, and at most one a second while it only makes progress.
 */
export function createRenderer(out: Output, now: () => number = Date.now): Renderer {
  if (out.isTTY) {
    let drawn = 0;
    let last = -Infinity;
    const paint = (entries: readonly Entry[]): void => {
      last = now();
      const lines = entries.map((e) => line(e, { unicode: true, ...(out.columns ? { columns: out.columns } : {}) }));
      let text = drawn > 0 ? `\x1b[${drawn}A` : '';
      for (const l of lines) text += `\r\x1b[2K${l}\n`;
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
  const printed = new Map<string, { status: Entry['status']; progress: number; at: number }>();
  const print = (entries: readonly Entry[], force: boolean): void => {
    for (const e of entries) {
      const prev = printed.get(e.id);
      const t = now();
      const changed = !prev || prev.status !== e.status;
      const progressed = prev !== undefined && prev.progress !== e.progress && t - prev.at >= 1000;
      if (changed || progressed || (force && prev?.progress !== e.progress)) {
        out.write(`${line(e)}\n`);
        printed.set(e.id, { status: e.status, progress: e.progress, at: t });
      }
    }
  };
  return { draw: (entries) => print(entries, false), finish: (entries) => print(entries, true) };
}
