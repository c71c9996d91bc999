/*
 * Owns the time limits of one connection (connection.ts): the one timer that runs at a time and
 * which limit it is (connecting, the TLS handshake, a proxy's answer to CONNECT, a response head,
 * an idle body), and the bytes counted for their messages. A limit that runs out destroys the
 * connection's socket with its retryable AppError (dial.ts makes those).
 */
import type { AppError } from '../errors';
import { seconds, timeoutError, type Timeouts } from './dial';

export class TimeLimits {
  /** The one time limit running, if any. */
  private timer: NodeJS.Timeout | undefined;
  /** A response head is awaited: its limit starts once the connection is ready. */
  private awaitingHead = false;
  /** A body is read: no byte for `bodyIdleMs` while not paused fails it. */
  private watchingBody = false;
  private bytesIn = 0;

  /** `destroy` ends the connection's socket (whichever it is when the limit runs out); `host` is what messages call the other end. */
  constructor(
    private readonly timeouts: Timeouts,
    private readonly host: string,
    private readonly destroy: (err: AppError) => void,
  ) {}

  /** Bytes arrived: counted, and a watched body's idle limit starts over. */
  received(n: number): void {
    this.bytesIn += n;
    if (this.watchingBody) this.timer?.refresh();
  }

  /** A response head is awaited from now; its limit starts now if the connection is `ready`, else at `headDue`. */
  expectHead(ready: boolean): void {
    this.awaitingHead = true;
    if (ready) this.armHead();
  }

  /** The connection is up: the head's limit starts if one is awaited. */
  headDue(): void {
    if (this.awaitingHead) this.armHead();
  }

  /** The head arrived (or the request ended): its limit stops. */
  headDone(): void {
    if (!this.awaitingHead) return;
    this.awaitingHead = false;
    this.disarm();
  }

  /** A body is read from now until `quiet`: its idle limit runs while the connection is not `paused`. */
  watchBody(paused: boolean): void {
    this.watchingBody = true;
    if (!paused) this.armBody();
  }

  /** The connection was paused by its reader (the disk): not the server's silence. */
  paused(): void {
    if (this.watchingBody) this.disarm();
  }

  resumed(): void {
    if (this.watchingBody) this.armBody();
  }

  /** No time limit runs any more. */
  quiet(): void {
    this.awaitingHead = false;
    this.watchingBody = false;
    this.disarm();
  }

  arm(ms: number, make: () => AppError): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.destroy(make());
    }, ms);
  }

  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private armHead(): void {
    const from = this.bytesIn;
    const ms = this.timeouts.headMs;
    this.arm(ms, () =>
      timeoutError(
        'HEAD_TIMEOUT',
        this.bytesIn === from ? `${this.host} accepted the connection but sent no answer for ${seconds(ms)}` : `${this.host} sent part of its answer's head, then nothing more for ${seconds(ms)}`,
      ),
    );
  }

  private armBody(): void {
    if (this.timer) return void this.timer.refresh();
    const ms = this.timeouts.bodyIdleMs;
    this.arm(ms, () => timeoutError('BODY_TIMEOUT', `${this.host} sent no data for ${seconds(ms)} in the middle of the body`));
  }
}
