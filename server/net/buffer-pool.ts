/*
 * Owns the 1 MiB blocks that response bytes are read into. Sockets read straight into a block and
 * the disk writes from it, so a block goes round socket → pump → disk → here → socket again, and
 * no memory is allocated per chunk. One pool per Agent: its connections share its spare blocks.
 */

/** Size of a block: one positional write to disk per block keeps a fast transfer cheap. */
export const BLOCK = 1024 * 1024;

/** Spare blocks kept for reuse; more than this are left to the garbage collector. */
const SPARE = 16;

export class BufferPool {
  private readonly spare: Buffer[] = [];

  /** A block to read into: a spare one, or a new one outside Node's shared slab (it lives long). */
  take(): Buffer {
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(BLOCK);
  }

  /** A block nothing reads from or writes into any more (bound: it is handed around as a callback). */
  readonly give = (block: Buffer): void => {
    if (this.spare.length < SPARE) this.spare.push(block);
  };
}
