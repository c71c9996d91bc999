import fc from 'fast-check';

/**
 * A seeded generator of HTTP/1.1 responses for the differential test: valid ones, and mutations of
 * them where parsers disagree (line ends, folding, Transfer-Encoding and Content-Length variants,
 * chunk sizes, extensions and trailers, 1xx and 101, odd status lines, long heads, control
 * characters, bytes after the message), each with the body its maker meant, the pieces it is
 * written in (down to one byte at a time) and whether the server closes after it.
 */
export interface Case {
  /** The bytes on the wire. */
  wire: Buffer;
  /** Lengths of the writes `wire` is sent in. */
  writes: number[];
  /** The server closes its side right after the last write; otherwise a little later. */
  close: boolean;
  /** The body the response was made to carry. */
  intended: Buffer;
  /** No mutation: both clients must read exactly `intended`. */
  valid: boolean;
  /** What was made and changed, for the failure report. */
  label: string;
}

type Framing = 'length' | 'chunked' | 'close';

interface Line {
  text: string;
  eol: string;
}

interface Plan {
  version: '1.1' | '1.0';
  status: number;
  framing: Framing;
  body: Buffer;
  chunkSizes: number[];
  exts: string[];
  trailers: Array<[string, string]>;
  extra: Array<[string, string]>;
  interim: number[];
  mutations: Mutation[];
  writes: { kind: 'whole' } | { kind: 'bytes' } | { kind: 'cuts'; cuts: number[] };
  close: boolean;
}

type Mutation =
  | { m: 'eol'; line: number; eol: string }
  | { m: 'finalEol'; eol: string }
  | { m: 'fold'; line: number }
  | { m: 'te'; value: string }
  | { m: 'teTwice'; second: string }
  | { m: 'cl'; value: string }
  | { m: 'clTwice'; delta: number }
  | { m: 'chunkSize'; chunk: number; delta: number }
  | { m: 'chunkExt'; ext: string }
  | { m: 'afterLast'; what: string }
  | { m: 'chunkEol'; chunk: number; eol: string }
  | { m: 'status'; line: string }
  | { m: 'interim'; status: number }
  | { m: 'longHead'; size: number }
  | { m: 'manyFields'; count: number }
  | { m: 'ctl'; char: string; where: 'value' | 'name' | 'te' }
  | { m: 'coding'; value: string }
  | { m: 'nameSpace' }
  | { m: 'truncate'; by: number }
  | { m: 'trailing'; bytes: string }
  | { m: 'proto'; name: string };

/** Deterministic bytes: a seeded xorshift, so that large bodies cost no generator time. */
function bytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const VALID_EXTS = ['', '', '', ';a=b', ';name="quoted value"', ';flag', ' ;a = b', ';a=b;c=d'];

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ m: fc.constant('eol' as const), line: fc.nat(8), eol: fc.constantFrom('\n', '\r', '', '\r\r\n', '\n\r') }),
  fc.record({ m: fc.constant('finalEol' as const), eol: fc.constantFrom('\n', '\r', '\n\r\n', '\r\n\n') }),
  fc.record({ m: fc.constant('fold' as const), line: fc.nat(8) }),
  fc.record({
    m: fc.constant('te' as const),
    value: fc.constantFrom('chunked', 'Chunked', 'CHUNKED', ' chunked ', 'chunked, ', ', chunked', 'gzip, chunked', 'chunked, gzip', 'identity', 'chunk', 'chunked\x00', 'chunked\x01', 'chunked\x7f', 'chunked;q=1', 'identity, chunked', 'x', '', '"chunked"', 'chunked\x0b'),
  }),
  fc.record({ m: fc.constant('teTwice' as const), second: fc.constantFrom('', 'chunked', 'identity', 'gzip') }),
  fc.record({ m: fc.constant('cl' as const), value: fc.constantFrom('N+1', 'N-1', 'N, N', 'N, N+1', '+N', '0N', ' N ', 'N\x00', 'N N', '-1', '0xN', 'N.0', '99999999999999999999', '') }),
  fc.record({ m: fc.constant('clTwice' as const), delta: fc.constantFrom(0, 0, 1, -1) }),
  fc.record({ m: fc.constant('chunkSize' as const), chunk: fc.nat(8), delta: fc.constantFrom(1, -1, 2) }),
  fc.record({ m: fc.constant('chunkExt' as const), ext: fc.constantFrom(';', ';a=', ';a="unterminated', ';a\x01', '; a b', ' ', '\t', ';a=b c', 'x', ';"q"', ';a=b\x7f', ';a="x\\"y"') }),
  fc.record({
    m: fc.constant('afterLast' as const),
    what: fc.constantFrom('5\r\nworld\r\n0\r\n\r\n', 'not a field\r\n\r\n', 'X-T: a\r\n folded\r\n\r\n', 'X-T: a\n\r\n', 'X-T: a\r\n', 'X-T: \x00\r\n\r\n', ': v\r\n\r\n', 'X-T: a\r\nX-U: b\r\n\r\n', '\n', 'garbage'),
  }),
  fc.record({ m: fc.constant('chunkEol' as const), chunk: fc.nat(8), eol: fc.constantFrom('\n', '\r', '', 'xx', '\r\r\n') }),
  fc.record({
    m: fc.constant('status' as const),
    line: fc.constantFrom('HTTP/1.1 200', 'HTTP/1.1 200 ', 'HTTP/1.1  200 OK', 'HTTP/1.1 200  OK', 'HTTP/2 200 OK', 'HTTP/1.2 200 OK', 'http/1.1 200 OK', 'HTTP/1.1 20 OK', 'HTTP/1.1 2000 OK', 'HTTP/1.1 999 X', 'HTTP/1.1 099 X', 'HTTP/1.1 200 O\x01K', 'HTTP/1.1 200 O\x7fK', 'HTTP/1.1 200 OK\x00', ' HTTP/1.1 200 OK', 'HTTP/1.1 200 \xe9t\xe9', 'HTTP/1.1 600 X'),
  }),
  fc.record({ m: fc.constant('interim' as const), status: fc.constantFrom(101, 100, 103, 102, 150, 199) }),
  fc.record({ m: fc.constant('longHead' as const), size: fc.constantFrom(8 * 1024, 15 * 1024, 17 * 1024, 63 * 1024, 65 * 1024, 80 * 1024) }),
  fc.record({ m: fc.constant('manyFields' as const), count: fc.constantFrom(90, 101, 150) }),
  fc.record({ m: fc.constant('ctl' as const), char: fc.constantFrom('\x00', '\x01', '\x08', '\x0b', '\x0c', '\x1f', '\x7f', '\t', '\xff'), where: fc.constantFrom('value' as const, 'name' as const, 'te' as const) }),
  fc.record({ m: fc.constant('coding' as const), value: fc.constantFrom('gzip', 'br', 'deflate', 'identity', 'gzip, identity', 'x-gzip') }),
  fc.record({ m: fc.constant('nameSpace' as const) }),
  fc.record({ m: fc.constant('truncate' as const), by: fc.integer({ min: 1, max: 12 }) }),
  fc.record({ m: fc.constant('trailing' as const), bytes: fc.constantFrom('HTTP/1.1 200 OK\r\n\r\n', 'xyz', '\r\n', '0\r\n\r\n') }),
  fc.record({ m: fc.constant('proto' as const), name: fc.constantFrom('__proto__', 'constructor', 'hasOwnProperty', 'toString') }),
);

const plan: fc.Arbitrary<Plan> = fc
  .record({
    version: fc.constantFrom('1.1' as const, '1.1' as const, '1.1' as const, '1.0' as const),
    status: fc.constantFrom(200, 200, 200, 206, 203, 204, 304, 404, 500),
    framing: fc.constantFrom<Framing>('length', 'chunked', 'chunked', 'close'),
    size: fc.oneof({ arbitrary: fc.nat(300), weight: 8 }, { arbitrary: fc.integer({ min: 1000, max: 200_000 }), weight: 1 }),
    seed: fc.integer(),
    textBody: fc.boolean(),
    chunkSizes: fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 6 }),
    exts: fc.array(fc.constantFrom(...VALID_EXTS), { minLength: 1, maxLength: 4 }),
    trailers: fc.array(fc.tuple(fc.constantFrom('X-Checksum', 'Server-Timing', 'X-T'), fc.constantFrom('abc', 'a b', '', 'x=1; y="2"')), { maxLength: 2 }),
    extra: fc.array(fc.tuple(fc.constantFrom('X-A', 'Server', 'ETag', 'Cache-Control', 'Set-Cookie', 'Connection', 'Keep-Alive'), fc.constantFrom('a', '"abc"', 'max-age=0, no-cache', 'keep-alive', 'close', 'timeout=5', 'x y\tz')), { maxLength: 4 }),
    interim: fc.array(fc.constantFrom(100, 103), { maxLength: 2 }),
    mutations: fc.oneof({ arbitrary: fc.constant([] as Mutation[]), weight: 1 }, { arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }), weight: 4 }),
    writes: fc.oneof(
      { arbitrary: fc.constant({ kind: 'whole' as const }), weight: 3 },
      { arbitrary: fc.constant({ kind: 'bytes' as const }), weight: 1 },
      { arbitrary: fc.record({ kind: fc.constant('cuts' as const), cuts: fc.array(fc.nat(400), { minLength: 1, maxLength: 6 }) }), weight: 3 },
    ),
    close: fc.boolean(),
  })
  .map((r) => {
    const body = r.textBody ? Buffer.from(bytes(r.size, r.seed).toString('base64').slice(0, r.size).replace(/[/+]/g, '\r\n').slice(0, r.size), 'latin1') : bytes(r.size, r.seed);
    return { ...r, body } as Plan;
  });

function build(p: Plan): Case {
  const noBody = p.status === 204 || p.status === 304;
  const intended = noBody ? Buffer.alloc(0) : p.body;
  const labels: string[] = [`${p.version} ${p.status} ${p.framing} ${intended.length}B`];
  const has = <K extends Mutation['m']>(m: K): Array<Extract<Mutation, { m: K }>> => p.mutations.filter((x): x is Extract<Mutation, { m: K }> => x.m === m);

  // The head, as lines that mutations may change.
  const status = has('status')[0]?.line.replace('200', String(p.status)) ?? `HTTP/${p.version} ${p.status} ${p.status === 200 ? 'OK' : 'Status'}`;
  const head: Line[] = [{ text: status, eol: '\r\n' }];
  const field = (name: string, value: string): void => void head.push({ text: `${name}: ${value}`, eol: '\r\n' });
  const n = intended.length;
  const framing: Framing = p.framing;
  if (p.status === 206 && n > 0) field('Content-Range', `bytes 0-${n - 1}/${n}`);
  const named = new Set<string>();
  for (const [name, value] of p.extra) if (!named.has(name) && named.add(name)) field(name, value);
  const teMut = has('te')[0];
  const clMut = has('cl')[0];
  if (framing === 'chunked' || teMut) field('Transfer-Encoding', teMut ? teMut.value : 'chunked');
  for (const t of has('teTwice')) field('Transfer-Encoding', t.second);
  if (framing === 'length' || clMut) {
    const v = (clMut?.value ?? 'N').replace(/N([+-]1)?/g, (_, d: string | undefined) => String(n + (d ? Number(d) : 0)));
    field('Content-Length', v);
  }
  for (const c of has('clTwice')) field('Content-Length', String(n + c.delta));
  for (const c of has('coding')) field('Content-Encoding', c.value);
  for (const c of has('proto')) field(c.name, 'x');
  for (const c of has('longHead')) field('X-Padding', 'p'.repeat(c.size));
  for (const c of has('manyFields')) for (let i = 0; i < c.count; i++) field(`X-F${i}`, String(i));
  for (const c of has('ctl')) {
    if (c.where === 'value') field('X-Ctl', `a${c.char}b`);
    else if (c.where === 'name') field(`X${c.char}Ctl`, 'a');
    else {
      const te = head.find((l) => l.text.startsWith('Transfer-Encoding: '));
      if (te) te.text += c.char;
      else field('X-Ctl', c.char);
    }
  }
  if (has('nameSpace').length > 0) {
    const target = head.find((l, i) => i > 0 && /^(Transfer-Encoding|Content-Length): /.test(l.text)) ?? head[1];
    if (target) target.text = target.text.replace(': ', ' : ');
  }
  for (const f of has('fold')) {
    const i = 1 + (f.line % Math.max(1, head.length - 1));
    if (head[i]) head[i]!.text = ` ${head[i]!.text}`;
  }
  for (const e of has('eol')) {
    const i = e.line % head.length;
    head[i]!.eol = e.eol;
  }
  const finalEol = has('finalEol')[0]?.eol ?? '\r\n';
  labels.push(...p.mutations.map((m) => JSON.stringify(m).slice(0, 80)));

  const parts: Buffer[] = [];
  for (const s of [...p.interim, ...has('interim').map((i) => i.status)]) {
    parts.push(Buffer.from(`HTTP/1.1 ${s} Interim\r\n${s === 103 ? 'Link: </x>; rel=preload\r\n' : ''}${s === 101 ? 'Upgrade: x\r\nConnection: Upgrade\r\n' : ''}\r\n`, 'latin1'));
  }
  parts.push(Buffer.from(head.map((l) => l.text + l.eol).join('') + finalEol, 'latin1'));

  // The body, framed as planned (its framing written even where a mutation contradicts it).
  if (!noBody || has('trailing').length > 0) {
    if (!noBody && framing === 'chunked') {
      let at = 0;
      let k = 0;
      const sizeMut = has('chunkSize');
      const eolMut = has('chunkEol');
      const badExt = has('chunkExt')[0];
      while (at < n) {
        const size = Math.min(p.chunkSizes[k % p.chunkSizes.length]!, n - at);
        const delta = sizeMut.find((s) => s.chunk % 8 === k)?.delta ?? 0;
        const ext = k === 0 && badExt ? badExt.ext : p.exts[k % p.exts.length]!;
        const eol = eolMut.find((e) => e.chunk % 8 === k)?.eol ?? '\r\n';
        parts.push(Buffer.from(`${Math.max(0, size + delta).toString(16)}${ext}\r\n`, 'latin1'), intended.subarray(at, at + size), Buffer.from(eol, 'latin1'));
        at += size;
        k++;
      }
      const after = has('afterLast')[0];
      parts.push(Buffer.from(`0\r\n${after ? after.what : p.trailers.map(([a, b]) => `${a}: ${b}\r\n`).join('') + '\r\n'}`, 'latin1'));
    } else if (!noBody) {
      parts.push(intended);
    }
  }
  for (const t of has('trailing')) parts.push(Buffer.from(t.bytes, 'latin1'));
  let wire = Buffer.concat(parts);
  const cut = has('truncate')[0];
  if (cut) wire = wire.subarray(0, Math.max(1, wire.length - cut.by));

  let writes: number[];
  if (p.writes.kind === 'whole' || (p.writes.kind === 'bytes' && wire.length > 600)) writes = [wire.length];
  else if (p.writes.kind === 'bytes') writes = Array<number>(wire.length).fill(1);
  else {
    writes = [];
    let left = wire.length;
    for (const c of p.writes.cuts) {
      const w = Math.min(left, c + 1);
      if (w > 0) writes.push(w);
      left -= w;
    }
    if (left > 0) writes.push(left);
  }
  labels.push(p.writes.kind === 'cuts' ? `writes ${writes.length}` : `writes ${p.writes.kind}`, p.close ? 'close' : 'linger');
  return { wire, writes, close: p.close || !!cut, intended, valid: p.mutations.length === 0, label: labels.join(' | ') };
}

/** `count` cases, the same for the same seed. */
export function generateCases(seed: number, count: number): Case[] {
  return fc.sample(plan, { seed, numRuns: count }).map(build);
}
