/**
 * Git's object id of a file kept in git: the only digest the Hugging Face Hub lists for its small
 * files (config.json, tokenizers). verify.ts checks a finished file against it.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';

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

/**
 * The git blob id and the sha256 of a file on disk, in one read: its size is taken first (the
 * blob header holds it) and the file must still have that size at the end. For small files (the
 * Hub keeps only small ones in git); abortable between reads.
 */
export async function fileBlobDigests(file: string, signal?: AbortSignal): Promise<{ gitOid: string; sha256: string; size: number }> {
  const handle = await fsp.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const blob = createGitBlobHasher(size);
    const sha256 = crypto.createHash('sha256');
    const buffer = Buffer.allocUnsafe(Math.min(Math.max(size, 1), 1024 * 1024));
    for (let position = 0; ; ) {
      signal?.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      blob.update(chunk);
      sha256.update(chunk);
      position += bytesRead;
    }
    return { gitOid: blob.digest(), sha256: sha256.digest('hex'), size };
  } finally {
    await handle.close();
  }
}
