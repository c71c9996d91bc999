/**
 * Fleet mode on the page (`FLEET_DIR`, docs/reference.md "Fleet mode"): what `GET /api/fleet`
 * answers, checked at the boundary; the texts a row of another server's download shows (its
 * instance silent, what its buttons will do, a command handed over, a new download refused
 * because another instance has it); and FleetWatch, which keeps that answer fresh without
 * polling storms. No DOM: the header's indicator is fleet-indicator.ts, the row download-row.ts.
 *
 * Everything said here comes from the server: the entries' `instance` and `instance_stale`, the
 * instances' `silent_seconds`, the commands' `forwarded_to`, the refusals' messages.
 */
import type { Entry, FleetDescription, InstanceSummary } from '../server/protocol/wire.js';

export type { InstanceSummary } from '../server/protocol/wire.js';
import type { Command } from '../server/protocol/status.js';
import { isFinished } from '../server/protocol/status.js';
import { formatClock } from './format.js';

/** An answer of `GET /api/fleet` and when this page received it (its own clock, epoch ms). */
export interface FleetInfo extends FleetDescription {
  receivedAt: number;
  byName: ReadonlyMap<string, InstanceSummary>;
}

/** Fleet mode: unknown until the first answer; `off` when `/api/fleet` is 404 (a lone server). */
export type FleetState = { mode: 'unknown' } | { mode: 'off' } | { mode: 'on'; info: FleetInfo };

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isName = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 255;

/** The answer of `GET /api/fleet`, checked; undefined when it is not one (the indicator stays as it was). */
export function parseFleet(body: unknown, receivedAt: number): FleetInfo | undefined {
  const b = body as Partial<FleetDescription> | null;
  if (!b || typeof b !== 'object' || !isName(b.instance) || !isCount(b.stale_seconds) || !Array.isArray(b.instances)) return undefined;
  const instances: InstanceSummary[] = [];
  for (const raw of b.instances as unknown[]) {
    const i = raw as Partial<InstanceSummary> | null;
    if (!i || typeof i !== 'object' || !isName(i.name) || !isCount(i.silent_seconds) || !isCount(i.downloads) || !isCount(i.active)) continue;
    instances.push({
      name: i.name,
      self: i.self === true,
      live: i.live === true,
      stopped: i.stopped === true,
      silent_seconds: i.silent_seconds,
      downloads: i.downloads,
      active: i.active,
      ...(typeof i.host === 'string' && i.host ? { host: i.host } : {}),
    });
  }
  return { instance: b.instance, stale_seconds: b.stale_seconds, instances, receivedAt, byName: new Map(instances.map((i) => [i.name, i])) };
}

/**
 * Whether the entries say something the last answer does not know: an instance it does not list,
 * or one whose liveness changed (an entry stale that the answer had live, or the reverse). Then the
 * indicator is out of date: ask again. Also true for a server found in fleet mode after all.
 */
export function needsRefresh(state: FleetState, entries: Iterable<Entry | undefined>): boolean {
  for (const e of entries) {
    if (!e?.instance) continue;
    if (state.mode === 'off') return true; // a restarted server, now in fleet mode
    if (state.mode !== 'on') return false; // the first answer is on its way
    const i = state.info.byName.get(e.instance);
    if (!i || i.live === (e.instance_stale === true)) return true;
  }
  return false;
}

/** When an instance was last heard from, in epoch seconds (this page's clock: received minus silent). */
export function lastHeard(i: InstanceSummary, info: FleetInfo): number {
  return info.receivedAt / 1000 - i.silent_seconds;
}

/** `stopped at 14:32`, `silent since 14:32`, or `silent` when the answer does not list it. */
export function silenceText(name: string, info: FleetInfo | undefined): string {
  const i = info?.byName.get(name);
  if (!i || !info) return 'silent';
  return `${i.stopped ? 'stopped at' : 'silent since'} ${formatClock(lastHeard(i, info))}`;
}

/** `after 30 s of silence`, from the server's FLEET_STALE_SECONDS when known. */
function takeoverDelay(info: FleetInfo | undefined): string {
  return info ? `after ${info.stale_seconds} s of silence` : 'once it has been silent for FLEET_STALE_SECONDS';
}

/**
 * The note of a row whose instance is silent (`instance_stale`): since when, and what becomes of
 * the download. Undefined for any other row.
 */
export function staleNote(e: Entry, info: FleetInfo | undefined): string | undefined {
  if (!e.instance || !e.instance_stale) return undefined;
  const head = `Instance ${e.instance} ${silenceText(e.instance, info)}; this row is what it last published.`;
  if (isFinished(e.status)) return head;
  return `${head} Another server takes this download over ${takeoverDelay(info)} and goes on from its .part.`;
}

const VERBS: Readonly<Record<Command, string>> = { pause: 'Pause', resume: 'Resume', cancel: 'Cancel', retry: 'Retry', remove: 'Remove' };

/**
 * What a row's button will do when the download is another server's (its `title`): handed to that
 * instance, or refused while it is silent. Undefined for this server's own downloads, and while
 * the page does not know which instance is its server's.
 */
export function actionHint(action: Command, e: Entry, info: FleetInfo | undefined): string | undefined {
  if (!e.instance || !info || e.instance === info.instance) return undefined;
  if (!e.instance_stale) return `${VERBS[action]}: handed to instance ${e.instance}, which has this download; the row changes when it has done it`;
  const later = isFinished(e.status) ? 'until it is back' : `until it is back, or another server has taken the download over (${takeoverDelay(info)})`;
  return `${VERBS[action]}: refused while instance ${e.instance} is silent, ${later}`;
}

/** A row's note after the server handed a command to the instance that has the download (`forwarded_to`). */
export function forwardedNote(action: Command, to: string): string {
  return `${VERBS[action]} handed to instance ${to}, which has this download; the row changes when ${to} has done it.`;
}

/**
 * What the add form says when the server refused a new download because another instance has its
 * destination (`409 ACTIVE_ELSEWHERE`, whose message names it): not an error of the form's.
 * Undefined for every other refusal.
 */
export function elsewhereText(code: string, message: string, body: unknown): string | undefined {
  if (code !== 'ACTIVE_ELSEWHERE') return undefined;
  const holder = (body as { download?: Partial<Entry> } | null)?.download;
  const where = holder && typeof holder.instance === 'string' ? ` Its row in the list shows its progress, marked ${holder.instance}.` : '';
  return `${/[.!?]$/.test(message) ? message : `${message}.`}${where}`;
}

export interface FleetWatchOptions {
  /** `GET /api/fleet`: resolves with the body; rejects with an error carrying the HTTP `status` (404: fleet mode off). */
  load: () => Promise<unknown>;
  /** Called after every answer that changed what is known. */
  onChange: (state: FleetState) => void;
  /** Whether the page is looked at: a hidden tab is not refreshed periodically. @default always */
  visible?: () => boolean;
  /** Refresh period while in fleet mode (instances come and go without any download changing). @default 10000 */
  periodMs?: number;
  /** Least time between two requests, however many reasons there are to ask. @default 1000 */
  minGapMs?: number;
  now?: () => number;
}

/**
 * Keeps the answer of `GET /api/fleet` fresh: asked when the page has a reason (`refresh()`: a new
 * snapshot, entries the answer does not explain, the tab shown again), never twice at once, at
 * most once per `minGapMs`, and every `periodMs` while in fleet mode and visible. A 404 is fleet
 * mode off: no more periodic requests until the next `refresh()`.
 */
export class FleetWatch {
  private stateValue: FleetState = { mode: 'unknown' };
  private inFlight = false;
  private again = false;
  private lastStart = -Infinity;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Why the timer runs: a delayed refresh() (`soon`) or the period. */
  private timerFor: 'soon' | 'period' | undefined;
  private closed = false;
  private readonly o: Required<FleetWatchOptions>;

  constructor(options: FleetWatchOptions) {
    this.o = { visible: () => true, periodMs: 10_000, minGapMs: 1000, now: () => Date.now(), ...options };
  }

  get state(): FleetState {
    return this.stateValue;
  }

  /** Asks the server now, or as soon as the gap allows; a request under way is followed by one more. */
  refresh(): void {
    if (this.closed) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    const wait = this.lastStart + this.o.minGapMs - this.o.now();
    if (wait > 0) {
      if (this.timerFor !== 'soon') this.schedule('soon', wait);
      return;
    }
    void this.load();
  }

  close(): void {
    this.closed = true;
    this.clearTimer();
  }

  private async load(): Promise<void> {
    this.clearTimer();
    this.inFlight = true;
    this.lastStart = this.o.now();
    let next: FleetState | undefined;
    let retry = true;
    try {
      const info = parseFleet(await this.o.load(), this.o.now());
      if (info) next = { mode: 'on', info }; // else not an answer of ours: keep what is shown
    } catch (err) {
      const status = (err as { status?: unknown } | null)?.status;
      if (status === 404) next = { mode: 'off' };
      // 401: the page asks for the token, and its reconnection brings a snapshot, which asks again.
      if (status === 401) retry = false;
    }
    this.inFlight = false;
    if (this.closed) return;
    if (next) {
      this.stateValue = next;
      this.o.onChange(next);
    }
    if (this.again) {
      this.again = false;
      this.refresh();
    } else if (retry && this.stateValue.mode !== 'off' && this.o.visible()) {
      this.schedule('period', this.o.periodMs);
    }
  }

  private schedule(why: 'soon' | 'period', ms: number): void {
    this.clearTimer();
    this.timerFor = why;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerFor = undefined;
      if (why === 'period' && !this.o.visible()) return; // shown again: the page calls refresh()
      this.refresh();
    }, ms);
  }

  private clearTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerFor = undefined;
  }
}
