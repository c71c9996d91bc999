/*
 * Owns reading a response head: finding where it ends (HeadScanner, byte by byte as it arrives,
 * within its size and field limits at all times) and parsing the status line and the header fields
 * (parseHead). Held to RFC 9112 as strictly as Node's own parser (llhttp) where leniency could
 * change the bytes of a body: every line ends in CRLF (a bare LF or a bare CR is refused, never
 * read one way in one place and another elsewhere), no obsolete line folding, no control character
 * in a field value. Where the body ends is body-framing.ts's business.
 */
import { badResponse } from './http-errors';

/** An RFC 9110 token: what a field name may be made of (checked in both directions). */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A field value (trimmed): visible characters, spaces, tabs and obs-text; never NUL, CR, LF, DEL or another control. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** A head (status line, fields and the blank line) may be this large at most, counted as it arrives. */
export const HEAD_LIMIT = 64 * 1024;
/** Header fields in one head (and trailer fields after a chunked body), at most. */
export const FIELD_LIMIT = 100;

/**
 * Fields that have one value: repeated with the same value they count once (RFC 9110 §5.3 lets a
 * recipient merge those), repeated with another they make the answer ambiguous and are refused.
 * Transfer-Encoding is refused whenever it is repeated (body-framing.ts).
 */
const SINGLE = new Set(['content-length', 'content-range', 'content-type', 'content-disposition', 'etag', 'last-modified', 'location', 'retry-after']);

export type Headers = Record<string, string | undefined>;

export interface ParsedHead {
  status: number;
  /** The minor HTTP version: 1.0 and 1.1 frame and keep connections differently. */
  minor: '0' | '1';
  /** Field names in lower case, in a map with no prototype; list fields joined with ", ". */
  headers: Headers;
  /** How many times each field came (Transfer-Encoding must come once). */
  counts: Record<string, number | undefined>;
}

/**
 * Finds the end of a head in bytes that arrive piece by piece: `scan(region)` with the bytes from
 * the head's first, longer each time (the same first bytes). Returns the head's length, blank line
 * included, or -1 while more is needed; throws BAD_RESPONSE at the first bare LF, past HEAD_LIMIT
 * bytes or past FIELD_LIMIT fields, without waiting for more.
 */
export class HeadScanner {
  private pos = 0;
  private lineStart = 0;
  private lines = 0;

  constructor(private readonly what = 'response headers') {}

  scan(region: Buffer): number {
    for (;;) {
      const nl = region.indexOf(10, this.pos);
      if (nl < 0) {
        this.pos = region.length;
        if (region.length > HEAD_LIMIT) throw badResponse(`the server sent ${this.what} larger than ${HEAD_LIMIT / 1024} KiB`);
        return -1;
      }
      if (nl === 0 || region[nl - 1] !== 13) throw badResponse(`the server ended a line of its ${this.what} with a bare LF, not CRLF`);
      if (nl + 1 > HEAD_LIMIT) throw badResponse(`the server sent ${this.what} larger than ${HEAD_LIMIT / 1024} KiB`);
      this.pos = nl + 1;
      if (nl - 1 === this.lineStart && this.lines > 0) return nl + 1;
      if (++this.lines > FIELD_LIMIT + 1) throw badResponse(`the server sent more than ${FIELD_LIMIT} header fields`);
      this.lineStart = nl + 1;
    }
  }
}

/** One field line `name: value` (no CR or LF in it): [lower-case name, trimmed value]; throws BAD_RESPONSE. */
export function parseField(line: string, what = 'header'): [string, string] {
  if (line.startsWith(' ') || line.startsWith('\t')) throw badResponse(`the server folded a ${what} line (obsolete line folding is refused)`);
  if (line.includes('\r')) throw badResponse(`the server sent a bare CR in a ${what} line`);
  const colon = line.indexOf(':');
  const name = line.slice(0, colon);
  if (colon <= 0 || !TOKEN.test(name)) throw badResponse(`the server sent a malformed ${what} line (${JSON.stringify(line.slice(0, 40))})`);
  const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
  if (!FIELD_VALUE.test(value)) throw badResponse(`the server sent a control character in the ${what} ${name}`);
  return [name.toLowerCase(), value];
}

/**
 * Parses `text`, a head without its final blank line (CRLF line ends, as HeadScanner found them);
 * throws BAD_RESPONSE for what is no HTTP/1.x head or is ambiguous.
 */
export function parseHead(text: string): ParsedHead {
  const lines = text.split('\r\n');
  const statusLine = lines[0] ?? '';
  const m = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/.exec(statusLine);
  if (!m) throw badResponse(`the server did not answer in HTTP/1.1 (${JSON.stringify(statusLine.slice(0, 40))})`);
  const status = Number(m[2]);
  if (status >= 600) throw badResponse(`the server answered with status ${status}, which HTTP does not have`);
  const headers: Headers = Object.create(null) as Headers;
  const counts: Record<string, number | undefined> = Object.create(null) as Record<string, number | undefined>;
  for (let i = 1; i < lines.length; i++) {
    const [name, value] = parseField(lines[i]!);
    // llhttp reads `chunked<TAB>` as no chunked coding, RFC 9110 as chunked: refused, never guessed.
    if (name === 'transfer-encoding' && lines[i]!.includes('\t')) throw badResponse('the server sent a tab in Transfer-Encoding');
    const before = headers[name];
    counts[name] = (counts[name] ?? 0) + 1;
    if (before === undefined) headers[name] = value;
    else if (SINGLE.has(name)) {
      if (before !== value) throw badResponse(`the server sent two different ${name} fields`);
    } else headers[name] = `${before}, ${value}`;
  }
  return { status, minor: m[1] as '0' | '1', headers, counts };
}
