/**
 * Transfer speed smoothed over a sliding window of seconds (not the average since start, which
 * hides a stall and lags a change of pace).
 */
export class SpeedMeter {
  private readonly samples: Array<{ t: number; bytes: number }> = [];

  /** @param windowMs length of the window @default 5000 */
  constructor(private readonly windowMs = 5000) {}

  /** Records the running byte total at time `t` (ms). */
  sample(bytes: number, t: number = Date.now()): void {
    const last = this.samples[this.samples.length - 1];
    if (last && this.samples.length > 1 && t - last.t < 100) {
      last.bytes = bytes; // keep the array small: at most ~10 samples a second
      last.t = t;
    } else {
      this.samples.push({ t, bytes });
    }
    while (this.samples.length > 2 && t - this.samples[1]!.t > this.windowMs) this.samples.shift();
  }

  /** Bytes per second over the window; 0 until two samples exist. */
  rate(t: number = Date.now()): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last === first) return 0;
    // A silent spell since the last sample counts as slowness, so a stall shows as falling speed.
    const span = Math.max(t, last.t) - first.t;
    if (span <= 0) return 0;
    return Math.max(0, ((last.bytes - first.bytes) * 1000) / span);
  }

  reset(): void {
    this.samples.length = 0;
  }
}
