/**
 * Glob patterns as `hf download --include/--exclude` read them (huggingface_hub's
 * `filter_repo_objects`: Python's `fnmatchcase` over the whole path in the repository):
 * - `*` matches any run of characters, `/` included, so `*.safetensors` matches
 *   `text_encoder/model.safetensors` too;
 * - `?` one character, `[abc]`, `[a-z]` and `[!abc]` one of (or none of) a set;
 * - a pattern ending in `/` matches everything under that folder (`vae/` is `vae/*`);
 * - case-sensitive; `\` in a path is read as `/`.
 */
export function globToRegExp(pattern: string): RegExp {
  const p = pattern.endsWith('/') ? `${pattern}*` : pattern;
  let out = '';
  for (let i = 0; i < p.length; ) {
    const c = p[i++]!;
    if (c === '*') {
      while (p[i] === '*') i++;
      out += '.*';
    } else if (c === '?') {
      out += '.';
    } else if (c === '[') {
      // The set ends at the first `]` after its first character (`[]a]` holds `]`); none: a plain `[`.
      let j = i;
      if (p[j] === '!') j++;
      if (p[j] === ']') j++;
      while (j < p.length && p[j] !== ']') j++;
      if (j >= p.length) {
        out += '\\[';
        continue;
      }
      out += bracket(p.slice(i, j));
      i = j + 1;
    } else {
      out += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    }
  }
  return new RegExp(`^${out}$`, 's');
}

/** A `[…]` set (its inside, `!` included) as a RegExp class, the way Python's fnmatch.translate does it. */
function bracket(inner: string): string {
  let stuff: string;
  if (!inner.includes('-')) {
    stuff = inner.replace(/\\/g, '\\\\');
  } else {
    // Split at the range hyphens, drop ranges that are empty (`z-a`), escape the other hyphens.
    const chunks: string[] = [];
    let from = 0;
    for (let k = inner.startsWith('!') ? 2 : 1; ; k += 3) {
      k = inner.indexOf('-', k);
      if (k < 0) break;
      chunks.push(inner.slice(from, k));
      from = k + 1;
    }
    const last = inner.slice(from);
    if (last) chunks.push(last);
    else chunks[chunks.length - 1] += '-';
    for (let k = chunks.length - 1; k > 0; k--) {
      if (chunks[k - 1]!.slice(-1) > chunks[k]!.slice(0, 1)) {
        chunks[k - 1] = chunks[k - 1]!.slice(0, -1) + chunks[k]!.slice(1);
        chunks.splice(k, 1);
      }
    }
    stuff = chunks.map((c) => c.replace(/\\/g, '\\\\').replace(/-/g, '\\-')).join('-');
  }
  if (stuff === '') return '(?!)'; // an empty set matches nothing
  if (stuff === '!') return '.'; // a negated empty set matches any character
  if (stuff.startsWith('!')) stuff = `^${stuff.slice(1)}`;
  else if (stuff.startsWith('^') || stuff.startsWith('[')) stuff = `\\${stuff}`;
  // A `]` in a JavaScript class must be escaped (`[]a]` is an empty class there).
  return `[${stuff.replace(/\]/g, '\\]')}]`;
}

/** A test for repository paths: kept when it matches an `include` (if any) and no `exclude`. */
export function pathFilter(include?: readonly string[], exclude?: readonly string[]): (path: string) => boolean {
  const inc = include?.filter((p) => p !== '').map(globToRegExp);
  const exc = exclude?.filter((p) => p !== '').map(globToRegExp) ?? [];
  return (path) => {
    const p = path.replace(/\\/g, '/');
    if (inc && inc.length > 0 && !inc.some((r) => r.test(p))) return false;
    return !exc.some((r) => r.test(p));
  };
}
