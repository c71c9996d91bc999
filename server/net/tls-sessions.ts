/*
 * Owns the TLS sessions an agent keeps for resumption: the last one each (pool key, server name)
 * handed out, so that the segments of one download and its retries resume it instead of a full
 * handshake each. Keyed by the pool key, which carries the TLS options: a session made under one
 * set of options (a test's CA) is never offered under another. Bounded: the oldest go first.
 */
const LIMIT = 256;

export class TlsSessions {
  private readonly sessions = new Map<string, Buffer>();

  get(key: string): Buffer | undefined {
    return this.sessions.get(key);
  }

  set(key: string, session: Buffer): void {
    this.sessions.delete(key);
    this.sessions.set(key, session);
    if (this.sessions.size > LIMIT) this.sessions.delete(this.sessions.keys().next().value!);
  }

  /** Forgets a session whose connection failed (it may be what failed). */
  delete(key: string): void {
    this.sessions.delete(key);
  }
}
