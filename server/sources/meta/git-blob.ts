import crypto from 'node:crypto';

/**
 * Git's object id of a file kept in git (not LFS): sha1 of `blob <size>\0` followed by the bytes.
 * The Hub's tree listing gives it as the `oid` of a non-LFS file (config.json, tokenizer files),
 * the only digest it has for those; `git hash-object` prints the same.
 */
export function gitBlobSha1(bytes: Uint8Array): string {
  return crypto.createHash('sha1').update(`blob ${bytes.byteLength}\0`).update(bytes).digest('hex');
}

export interface GitBlobHasher {
  update(chunk: Uint8Array): void;
  /** The blob id; throws when the bytes fed were not `size` bytes (the header would have lied). */
  digest(): string;
  /** Bytes fed so far. */
  readonly bytes: number;
}

/**
 * The same id, fed chunk by chunk as the bytes arrive. The header holds the size, so it must be
 * known first: the listing's `size` of the file, checked again by `digest()`.
 */
export function createGitBlobHasher(size: number): GitBlobHasher {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`Expected a size in bytes, got ${size}`);
  const hash = crypto.createHash('sha1').update(`blob ${size}\0`);
  let bytes = 0;
  return {
    update(chunk) {
      bytes += chunk.byteLength;
      hash.update(chunk);
    },
    digest() {
      if (bytes !== size) throw new RangeError(`The git blob id was computed over ${bytes} bytes, but its header says ${size}`);
      return hash.digest('hex');
    },
    get bytes() {
      return bytes;
    },
  };
}
