/*
 * Owns reading a response head: the status line and the header fields, from the text before the
 * blank line. Where the body ends is body-framing.ts's business; this only gives it the fields.
 */
import { badResponse } from './http-errors';

/** An RFC 9110 token: what a field name may be made of (checked in both directions). */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export interface ParsedHead {
  status: number;
  /** The minor HTTP version: 1.0 and 1.1 frame and keep connections differently. */
  minor: '0' | '1';
  /** Field names in lower case; repeated fields joined with ", ". */
  headers: Record<string, string | undefined>;
}

/** Parses `text`, a head without its final blank line; throws BAD_RESPONSE for what is no HTTP/1.x head. */
export function parseHead(text: string): ParsedHead {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!m) throw badResponse(`the server did not answer in HTTP/1.1 (${JSON.stringify((lines[0] ?? '').slice(0, 40))})`);
  const status = Number(m[2]);
  const headers: Record<string, string | undefined> = {};
  let last: string | undefined;
  for (const line of lines.slice(1)) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && last) {
      headers[last] += ` ${line.trim()}`; // obsolete line folding
      continue;
    }
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    if (colon <= 0 || !TOKEN.test(name)) throw badResponse('the server sent a malformed header line');
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    last = name;
  }
  return { status, minor: m[1] as '0' | '1', headers };
}
