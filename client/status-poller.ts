/**
 * The live client's fallback when WebSockets cannot get through but HTTP does (a proxy that
 * blocks them): ws-client.ts starts it after an attempt that could not open, and from then on the
 * probe (`GET /status` on the page) runs every `pollMs` until the client stops it. What the polls
 * find is handed back to the client, which owns the downloads and the connection state.
 */
import type { Entry } from '../server/protocol/wire.js';

/** What a look at the server over HTTP found: its entries, or why there are none. */
export type ProbeResult = { ok: true; downloads: Entry[] } | { ok: false; unauthorized?: boolean };

/** The probe's answer; a probe that threw found nothing. */
export async function probeOnce(probe: () => Promise<ProbeResult>): Promise<ProbeResult> {
  try {
    return await probe();
  } catch {
    return { ok: false };
  }
}

/** What the client does with the polls' answers. */
export interface PollHandlers {
  /** Every entry, as read by the probe that started polling, then by each poll that was answered. */
  read(downloads: Entry[]): void;
  /** A poll was answered (called after `read`): HTTP works. */
  answered(): void;
  /** A poll found that the server wants an API token; polling has stopped. */
  unauthorized(): void;
  /** A poll got no answer; polling goes on. */
  unanswered(): void;
}

export class StatusPoller {
  private readonly probe: (() => Promise<ProbeResult>) | undefined;
  private readonly pollMs: number;
  private readonly on: PollHandlers;
  private active = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Bumped when polling stops: a poll answer from before is stale. */
  private generation = 0;

  constructor(probe: (() => Promise<ProbeResult>) | undefined, pollMs: number, on: PollHandlers) {
    this.probe = probe;
    this.pollMs = pollMs;
    this.on = on;
  }

  /** Whether polling is under way. */
  get polling(): boolean {
    return this.active;
  }

  /** Starts polling, with what the probe that found HTTP working read. */
  start(downloads: Entry[]): void {
    this.active = true;
    this.on.read(downloads);
    this.schedule();
  }

  /** Stops polling; an answer still on its way is dropped. Idempotent. */
  stop(): void {
    if (this.active) this.generation++;
    this.active = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.poll(), this.pollMs);
  }

  private async poll(): Promise<void> {
    if (!this.active || !this.probe) return;
    const generation = this.generation;
    const result = await probeOnce(this.probe);
    // A WebSocket that went live meanwhile has the fresher state. (The client's close() stops
    // polling too, so a closed client is covered by the same check.)
    if (!this.active || generation !== this.generation) return;
    if (result.ok) {
      this.on.read(result.downloads);
      this.on.answered();
    } else if (result.unauthorized) {
      this.stop();
      this.on.unauthorized();
      return;
    } else {
      this.on.unanswered();
    }
    this.schedule();
  }
}
