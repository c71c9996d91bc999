/**
 * Reads the text chunks of a PNG (tEXt, zTXt, iTXt), where ComfyUI keeps the workflow it was made
 * with: the UI graph under `workflow`, the API graph under `prompt`. Every chunk's CRC is checked,
 * lengths are bounded by the buffer, and compressed text is inflated to at most `maxTextBytes`.
 * Format: https://www.w3.org/TR/png-3/#11textinfo
 *
 * A reader of its own rather than png-chunks-extract + png-chunk-text: those are single 2015
 * releases, know neither iTXt nor zTXt, and pull an old crc-32; this is ~100 lines on node:zlib.
 */
import zlib from 'node:zlib';
import { AppError, badRequest } from '../errors';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export const isPng = (bytes: Buffer): boolean => bytes.length >= 8 && bytes.subarray(0, 8).equals(SIGNATURE);

const CRC_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 as PNG computes it (ISO 3309), over the chunk's type and data. */
export function crc32(...parts: Buffer[]): number {
  let c = 0xffffffff;
  for (const part of parts) for (const byte of part) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const corrupt = (why: string) => badRequest('INVALID_PNG', `The PNG is damaged (${why}); save the image again from ComfyUI`);

const utf8 = new TextDecoder('utf-8', { fatal: true });
/**
 * tEXt is Latin-1 by the standard, but browsers' PNG writers (ComfyUI's page among them) put UTF-8
 * in it; ASCII (ComfyUI's own JSON) is the same in both. Valid UTF-8 is taken as UTF-8.
 */
function latin1OrUtf8(bytes: Buffer): string {
  try {
    return utf8.decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}

export interface PngTextOptions {
  /** Largest text a compressed chunk may inflate to. @default 64 MiB */
  maxTextBytes?: number;
}

/** The text chunks of a PNG, keyword → text; the first chunk of a keyword wins. Throws 400 INVALID_PNG. */
export function readPngText(png: Buffer, options: PngTextOptions = {}): Map<string, string> {
  const maxOutputLength = options.maxTextBytes ?? 64 * 1024 * 1024;
  if (!isPng(png)) throw badRequest('NOT_A_PNG', 'The body is not a PNG image (its first bytes are not the PNG signature)');
  const inflate = (data: Buffer): Buffer => {
    try {
      return zlib.inflateSync(data, { maxOutputLength });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw badRequest('PNG_TEXT_TOO_LARGE', `A compressed text chunk of the PNG inflates to more than ${maxOutputLength} bytes`);
      throw corrupt('a compressed text chunk does not inflate');
    }
  };
  const texts = new Map<string, string>();
  const add = (keyword: string, text: string): void => {
    if (!texts.has(keyword)) texts.set(keyword, text);
  };
  let at = 8;
  for (;;) {
    if (at + 12 > png.length) throw corrupt('it ends before its IEND chunk');
    const length = png.readUInt32BE(at);
    const typeBytes = png.subarray(at + 4, at + 8);
    const type = typeBytes.toString('latin1');
    if (length > 0x7fffffff || at + 12 + length > png.length) throw corrupt(`the ${type} chunk runs past the end of the file`);
    const data = png.subarray(at + 8, at + 8 + length);
    if (crc32(typeBytes, data) !== png.readUInt32BE(at + 8 + length)) throw corrupt(`the CRC of a ${type} chunk does not match`);
    at += 12 + length;
    if (type === 'IEND') return texts;

    if (type !== 'tEXt' && type !== 'zTXt' && type !== 'iTXt') continue;
    const nul = data.indexOf(0);
    if (nul < 1) continue; // no keyword: not a text chunk we can name
    const keyword = data.subarray(0, nul).toString('latin1');
    const rest = data.subarray(nul + 1);
    if (type === 'tEXt') {
      add(keyword, latin1OrUtf8(rest));
    } else if (type === 'zTXt') {
      if (rest[0] !== 0) continue; // 0 (zlib) is the only compression method PNG defines
      add(keyword, inflate(rest.subarray(1)).toString('latin1'));
    } else {
      // iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text.
      const compressed = rest[0] === 1;
      if (rest.length < 2 || (compressed && rest[1] !== 0)) continue;
      const langEnd = rest.indexOf(0, 2);
      const transEnd = langEnd < 0 ? -1 : rest.indexOf(0, langEnd + 1);
      if (transEnd < 0) throw corrupt('an iTXt chunk has no text part');
      const body = rest.subarray(transEnd + 1);
      try {
        add(keyword, utf8.decode(compressed ? inflate(body) : body));
      } catch (err) {
        if (err instanceof AppError) throw err;
        throw corrupt('an iTXt chunk is not UTF-8');
      }
    }
  }
}
