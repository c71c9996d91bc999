/**
 * The shared volume's clock, as this server estimates it. Fleet mode compares times written by
 * different hosts (a lock's mtime, a server's heartbeat), and hosts' clocks may be seconds apart:
 * so every comparison is made in the volume's time. A network file system stamps a file it writes
 * with its own clock; this server writes files there anyway (its instance file, every second or
 * so), reads back their mtime with stat, and keeps the offset between that and its own clock
 * around the write. The estimate is as good as the write is fast (half of its duration): the
 * tightest of the last 16 samples is kept.
 */
export class VolumeClock {
  private readonly samples: Array<{ offset: number; spread: number }> = [];
  /** Volume time minus local time, in ms. */
  offsetMs = 0;

  /** Now, on the volume's clock (epoch ms). */
  now(): number {
    return Date.now() + this.offsetMs;
  }

  /** A file was written between local times `t0` and `t1` (epoch ms), and the volume says its mtime is `mtimeMs`. */
  sample(mtimeMs: number, t0: number, t1: number): void {
    this.samples.push({ offset: mtimeMs - (t0 + t1) / 2, spread: (t1 - t0) / 2 });
    if (this.samples.length > 16) this.samples.shift();
    const best = this.samples.reduce((a, b) => (b.spread <= a.spread ? b : a));
    this.offsetMs = Math.round(best.offset);
  }
}
