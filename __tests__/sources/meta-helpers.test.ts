import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createGitBlobHasher, gitBlobSha1 } from '../../server/downloader/git-blob';
import { globToRegExp, pathFilter } from '../../server/sources/meta/glob';

describe('gitBlobSha1', () => {
  test('is git hash-object: sha1 of "blob <size>\\0" and the bytes', () => {
    // Known values: `printf 'hello\n' | git hash-object --stdin`, and the empty blob.
    expect(gitBlobSha1(Buffer.from('hello\n'))).toBe('ce013625030ba8dba906f756967f9e9ca394464a');
    expect(gitBlobSha1(Buffer.alloc(0))).toBe('e69de29bb2d1d6434b8b29ae775ad8c2e48c5391');
  });

  test('agrees with git itself on random bytes, when git is installed', () => {
    let git = true;
    try {
      execFileSync('git', ['--version'], { stdio: 'ignore' });
    } catch {
      git = false;
    }
    if (!git) return;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blob-'));
    try {
      const data = crypto.randomBytes(70_001);
      const file = path.join(dir, 'f.bin');
      fs.writeFileSync(file, data);
      const fromGit = execFileSync('git', ['hash-object', '--no-filters', file], { encoding: 'utf8' }).trim();
      expect(gitBlobSha1(data)).toBe(fromGit);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the incremental hasher gives the same id chunk by chunk, and refuses bytes that do not add up to its size', () => {
    const data = crypto.randomBytes(100_000);
    const h = createGitBlobHasher(data.length);
    for (let i = 0; i < data.length; i += 7777) h.update(data.subarray(i, i + 7777));
    expect(h.bytes).toBe(data.length);
    expect(h.digest()).toBe(gitBlobSha1(data));

    const short = createGitBlobHasher(10);
    short.update(Buffer.alloc(9));
    expect(() => short.digest()).toThrow(/9 bytes, but its header says 10/);
    expect(() => createGitBlobHasher(-1)).toThrow(RangeError);
  });
});

describe('glob patterns as hf download reads them (fnmatchcase over the whole path)', () => {
  const m = (pattern: string, p: string): boolean => globToRegExp(pattern).test(p);

  test('* matches across folders, ? one character', () => {
    expect(m('*.safetensors', 'model.safetensors')).toBe(true);
    expect(m('*.safetensors', 'text_encoder/model.safetensors')).toBe(true);
    expect(m('*.safetensors', 'model.safetensors.index.json')).toBe(false);
    expect(m('*.json', 'vae/config.json')).toBe(true);
    expect(m('model-0000?-of-00002.safetensors', 'model-00001-of-00002.safetensors')).toBe(true);
    expect(m('model-0000?-of-00002.safetensors', 'model-00010-of-00002.safetensors')).toBe(false);
    expect(m('text_encoder/*', 'text_encoder/sub/deep.bin')).toBe(true);
    expect(m('*', '.gitattributes')).toBe(true);
  });

  test('a pattern ending in / is everything under that folder', () => {
    expect(m('vae/', 'vae/diffusion_pytorch_model.safetensors')).toBe(true);
    expect(m('vae/', 'vae_x/a')).toBe(false);
    expect(m('vae/', 'unet/vae/a')).toBe(false);
  });

  test('sets, ranges and negated sets; [ without ] is a plain character', () => {
    expect(m('*[0-9].bin', 'part7.bin')).toBe(true);
    expect(m('*[0-9].bin', 'partx.bin')).toBe(false);
    expect(m('*[!0-9].bin', 'partx.bin')).toBe(true);
    expect(m('*[!0-9].bin', 'part7.bin')).toBe(false);
    expect(m('[]x].txt', '].txt')).toBe(true);
    expect(m('[^a].txt', '^.txt')).toBe(true);
    expect(m('[^a].txt', 'a.txt')).toBe(true);
    expect(m('[^a].txt', 'b.txt')).toBe(false);
    expect(m('weird[name', 'weird[name')).toBe(true);
    expect(m('a\\b', 'a\\b')).toBe(true);
  });

  test('an empty range (z-a) matches nothing instead of throwing; hyphens at the edges are plain', () => {
    expect(m('[z-a]', 'm')).toBe(false);
    expect(m('x[z-a-c]', 'xm')).toBe(false); // Python reads it as [\-c]
    expect(m('x[z-a-c]', 'x-')).toBe(true);
    expect(m('[a-]', '-')).toBe(true);
    expect(m('[!-a]', 'b')).toBe(true);
    expect(m('[!-a]', '-')).toBe(false);
  });

  test("agrees with Python's fnmatchcase, when python3 is installed", () => {
    let python = true;
    try {
      execFileSync('python3', ['--version'], { stdio: 'ignore' });
    } catch {
      python = false;
    }
    if (!python) return;
    const patterns = ['*.safetensors', 'vae/*', '[]x].txt', '[!]x].txt', '[^a].txt', 'a[!b-d]c', '*[', '[!]', '[a-]z', '[--0]', 'a**b', '?.*',
      '[\\]]', '[]', '[!a-z]*.bin', '*/*.json', '[z-a]', '[a-c-e]', '[!-a]', '[-a]', '[a-]', '[\\-a]', '[a-\\]', '[]-a]', '[!]-a]', '[z-a-c]',
      '[a-z-0]', '*[a-c--z]', '[%--]', '[[]', '[[-]]', 'a[b-b]c', 'é*', '[é-ü]x'];
    const paths = ['m.safetensors', 'vae/a/b', '].txt', 'x.txt', '^.txt', 'aec', 'acc', 'a[', '[!]', '-z', 'az', '.z', '/', 'a\\b', 'axb', 'b', '-', '!',
      'e', 'c', '%', '+', '[', 'abc', 'abbc', '1.bin', 'a/b.json', ']', '\\', 'éa', 'ñx', 'A'];
    const cases = patterns.flatMap((p) => paths.map((s) => [p, s] as const));
    const script = 'import json,sys,fnmatch\nprint("".join("1" if fnmatch.fnmatchcase(s, p) else "0" for p, s in json.load(sys.stdin)))';
    const expected = execFileSync('python3', ['-c', script], { input: JSON.stringify(cases), encoding: 'utf8' }).trim();
    const ours = cases.map(([p, s]) => (m(p, s) ? '1' : '0')).join('');
    const diffs = cases.filter((_, i) => ours[i] !== expected[i]);
    expect(diffs).toEqual([]);
  });

  test('case-sensitive; regex characters are plain', () => {
    expect(m('*.SAFETENSORS', 'model.safetensors')).toBe(false);
    expect(m('a+b(1).bin', 'a+b(1).bin')).toBe(true);
    expect(m('a.b', 'axb')).toBe(false);
    expect(m('$^{}|', '$^{}|')).toBe(true);
  });

  test('pathFilter: kept when it matches an include (if any) and no exclude', () => {
    const keep = pathFilter(['*.safetensors', '*.json'], ['*fp32*', 'unused/']);
    expect(keep('unet/model.fp16.safetensors')).toBe(true);
    expect(keep('unet/model.fp32.safetensors')).toBe(false);
    expect(keep('config.json')).toBe(true);
    expect(keep('unused/config.json')).toBe(false);
    expect(keep('README.md')).toBe(false);
    expect(pathFilter()('anything')).toBe(true);
    expect(pathFilter([], ['*.md'])('README.md')).toBe(false);
    expect(pathFilter([], ['*.md'])('model.bin')).toBe(true);
  });
});
