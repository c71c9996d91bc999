/**
 * The segment map of a download over several connections, as plain bookkeeping (no file, no
 * network): how a file is laid out in ranges (a big one in pieces, lowest first), whether a saved
 * map still describes it, how much is written and how far the written prefix reaches, and which
 * range a free connection takes next: the next piece, else the larger half of the biggest range
 * left (work stealing).
 */
import type { Segment } from '../disk/part-file';

/**
 * A file of at least this many minimum segments per connection (64 MiB by default) is taken in
 * pieces, lowest first, rather than in one range per connection. The sha256 computed while
 * downloading can only hash the written prefix from offset 0; with a range per connection most of
 * the file is still beyond it when the last byte lands, with pieces only the last few pieces are.
 * A free connection takes the next piece of what no connection holds: 1/(2·connections) of it, so
 * pieces are big at first (few requests: each is one more request, redirects included) and shrink
 * towards the end, down to a minimum segment, or to what a connection moves in four times the
 * time a request takes to answer when that is more (a slow redirect is not paid for every few
 * megabytes). The pieces in flight at the end hold little the hash has not reached.
 */
export const PIECES = 16;

/** How many connections a file gets: CONNECTIONS, or fewer for a file of fewer minimum segments. */
export const rangesFor = (total: number, connections: number, minSegment: number): number => Math.max(1, Math.min(connections, Math.floor(total / minSegment)));

/** Whether a file of `total` bytes is taken in pieces (see PIECES). */
export const takenInPieces = (total: number, connections: number, minSegment: number): boolean => total >= rangesFor(total, connections, minSegment) * PIECES * minSegment;

/** The map of a fresh download of `total` bytes: nothing done yet. */
export function layOut(total: number, connections: number, minSegment: number): Segment[] {
  const n = rangesFor(total, connections, minSegment);
  // A file of at least a piece per connection is one range, cut into pieces as connections take
  // them; a smaller one is a range per connection (the in-flight hash has less than a piece per
  // connection to do after the last byte either way).
  const size = takenInPieces(total, connections, minSegment) ? total : Math.ceil(total / n);
  return Array.from({ length: Math.ceil(total / size) }, (_, i) => ({ start: i * size, end: Math.min(total, (i + 1) * size), done: 0 })).filter((s) => s.end > s.start);
}

/** Whether a saved map describes a file of `total` bytes: ranges end to end from 0, none done past its end. */
export function validMap(segments: Segment[], total: number): boolean {
  let at = 0;
  for (const s of [...segments].sort((a, b) => a.start - b.start)) {
    if (s.start !== at || s.end <= s.start || s.done < 0 || s.done > s.end - s.start) return false;
    at = s.end;
  }
  return at === total;
}

/** Bytes written, over every range. */
export const bytesDone = (segments: readonly Segment[]): number => segments.reduce((sum, s) => sum + s.done, 0);

/** Bytes from offset 0 that are written: the ranges done from the first on, up to the first unfinished (`segments` by start). */
export function writtenPrefix(segments: readonly Segment[]): number {
  let at = 0;
  for (const s of segments) {
    at = s.start + s.done;
    if (s.done < s.end - s.start) break;
  }
  return at;
}

/** What a claim needs to know beyond the map. */
export interface ClaimPlan {
  connections: number;
  /** A range is never split below this. */
  minSegment: number;
  /** The file is taken in pieces (see PIECES, takenInPieces). */
  inPieces: boolean;
  /** The smallest piece for now: a minimum segment, or four request latencies' worth of one connection's bytes. */
  minPiece: number;
  /** Told when a range a connection holds is split: `range` keeps the first part, `stolen` is the rest. */
  onSplit?: (range: Segment, stolen: Segment) => void;
}

/**
 * The next range for a free connection: the lowest one no connection holds (its next piece, when
 * it is bigger), else the larger half of the biggest left. `segments` (by start) is changed in
 * place; `held` maps each range a connection holds to the bytes it has received and not yet
 * written.
 */
export function claimRange(segments: Segment[], held: ReadonlyMap<Segment, number>, plan: ClaimPlan): Segment | undefined {
  merge(segments, held);
  const idle = segments.find((s) => !held.has(s) && s.done < s.end - s.start);
  if (idle) {
    const left = idle.end - idle.start - idle.done;
    const size = Math.max(plan.minPiece, Math.ceil(left / (2 * plan.connections)));
    if (plan.inPieces && left >= size + plan.minSegment) {
      const cut = idle.start + idle.done + size;
      segments.splice(segments.indexOf(idle) + 1, 0, { start: cut, end: idle.end, done: 0 });
      idle.end = cut;
    }
    return idle;
  }
  // Bytes a connection has received but not yet written are spoken for: split after them.
  const free = (s: Segment): number => s.end - s.start - s.done - (held.get(s) ?? 0);
  let biggest: Segment | undefined;
  for (const s of held.keys()) if (!biggest || free(s) > free(biggest)) biggest = s;
  if (!biggest) return undefined;
  const left = free(biggest);
  if (left < 2 * plan.minSegment) return undefined;
  const mid = biggest.end - Math.floor(left / 2);
  const stolen: Segment = { start: mid, end: biggest.end, done: 0 };
  biggest.end = mid; // its connection stops there
  plan.onSplit?.(biggest, stolen);
  segments.splice(segments.indexOf(biggest) + 1, 0, stolen);
  return stolen;
}

/** Joins neighbouring finished ranges that no connection holds: the map stays a few ranges long. */
function merge(segments: Segment[], held: ReadonlyMap<Segment, number>): void {
  for (let i = 0; i + 1 < segments.length; ) {
    const a = segments[i]!;
    const b = segments[i + 1]!;
    const full = (s: Segment): boolean => s.done === s.end - s.start && !held.has(s);
    if (full(a) && full(b)) {
      a.end = b.end;
      a.done = a.end - a.start;
      segments.splice(i + 1, 1);
    } else i++;
  }
}
