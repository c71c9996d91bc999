// The bench's `undici` part (issue 11): would undici, Node's own HTTP client (llhttp in wasm), do
// for the transfer path instead of our client (server/net/)? The same files as the `single` and
// `capped` parts, fetched through undici's dispatcher API by a child process that writes the way
// our pump does — each body chunk copied into reused 1 MiB blocks, a full block written at its
// offset while the next fills, at most 4 blocks per connection waiting for the disk (then the
// response is paused), an fdatasync every 64 MiB, an fsync before the rename — alternating with the
// service and curl in the same run. CPU is read from /proc for the child as for the service.
// As a module: undiciPart(ctx) (bench.js passes its helpers). As a child: answers {url,file,…}
// messages with {transfer, total} (seconds) until disconnected.
'use strict';
const { fork } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
/** As server/net/pump.ts. */
const BLOCK = MiB;
const MAX_BLOCKS = 4;
/** As server/disk/write-behind.ts. */
const SYNC_EVERY = 64 * MiB;

// ---------------------------------------------------------------- the child: one download per message

/** fdatasync every SYNC_EVERY bytes written, one at a time (write-behind.ts). */
function writeBehind(fd) {
  let since = 0;
  let inFlight;
  return {
    wrote(n) {
      since += n;
      if (inFlight || since < SYNC_EVERY) return;
      since = 0;
      inFlight = new Promise((r) => fs.fdatasync(fd, () => r())).then(() => (inFlight = undefined));
    },
    settled: () => inFlight,
  };
}

/**
 * One range [start, end] of `url` into `fd` at its offset, through `dispatcher`: the body's chunks
 * copied into reused blocks, each full block one positional write.
 */
function fetchRange(dispatcher, url, fd, start, end, total, sync, blocks) {
  return new Promise((resolve, reject) => {
    let block;
    let used = 0;
    let at = start; // file offset of block[0]
    let pending = 0;
    let ended = false;
    let failed = false;
    let controller;
    const fail = (err) => {
      if (failed) return;
      failed = true;
      controller?.abort(err);
      reject(err);
    };
    const done = () => {
      if (ended && pending === 0 && !failed) resolve();
    };
    const flush = () => {
      if (used === 0) return;
      const b = block;
      const n = used;
      const pos = at;
      block = undefined;
      used = 0;
      at += n;
      pending++;
      fs.write(fd, b, 0, n, pos, (err) => {
        pending--;
        blocks.push(b);
        if (err) return fail(err);
        sync.wrote(n);
        if (controller?.paused && pending < MAX_BLOCKS) controller.resume();
        done();
      });
    };
    dispatcher.dispatch(
      { origin: url.origin, path: url.pathname + url.search, method: 'GET', headers: { range: `bytes=${start}-${end}`, 'accept-encoding': 'identity' } },
      {
        onRequestStart(c) {
          controller = c;
        },
        onResponseStart(c, status, headers) {
          const want = `bytes ${start}-${end}/${total}`;
          if (status !== 206 || headers['content-range'] !== want) fail(new Error(`asked ${want}, got ${status} ${headers['content-range']}`));
        },
        onResponseData(c, chunk) {
          let off = 0;
          while (off < chunk.length) {
            block ??= blocks.pop() ?? Buffer.allocUnsafe(BLOCK);
            const n = chunk.copy(block, used, off);
            used += n;
            off += n;
            if (used === BLOCK) flush();
          }
          if (pending >= MAX_BLOCKS) c.pause();
        },
        onResponseEnd() {
          flush();
          ended = true;
          if (at !== end + 1) return fail(new Error(`range ${start}-${end} ended at ${at}`));
          done();
        },
        onResponseError(c, err) {
          fail(err);
        },
      },
    );
  });
}

/** The whole file over `connections` connections (equal ranges), durable; seconds to the last write and to the renamed file. */
async function download({ url, file, size, connections }) {
  const { Agent } = require('undici');
  const dispatcher = new Agent({ connections });
  const u = new URL(url);
  const part = `${file}.part`;
  const fd = fs.openSync(part, 'w');
  const sync = writeBehind(fd);
  const blocks = [];
  const t0 = performance.now();
  try {
    const per = Math.ceil(size / connections);
    const ranges = [];
    for (let s = 0; s < size; s += per) ranges.push(fetchRange(dispatcher, u, fd, s, Math.min(size, s + per) - 1, size, sync, blocks));
    await Promise.all(ranges);
    const transfer = (performance.now() - t0) / 1000;
    await sync.settled();
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(part, file);
    return { transfer, total: (performance.now() - t0) / 1000 };
  } finally {
    await dispatcher.close();
  }
}

if (require.main === module && process.send) {
  process.on('message', (job) => {
    download(job).then(
      (r) => process.send({ ok: r }),
      (err) => process.send({ error: String(err?.stack ?? err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------- the part, in bench.js's process

/** User and system CPU seconds of a process so far (Linux, 100 ticks a second). */
function cpuOf(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: Number(f[11]) / 100, sys: Number(f[12]) / 100 };
}
function cpuSince(pid, c0) {
  const c = cpuOf(pid);
  return { user: c.user - c0.user, sys: c.sys - c0.sys, cpu: c.user - c0.user + c.sys - c0.sys };
}

/**
 * ctx: { source, results, rounds, quick, work, startService, mdDownload, curlDownload } from
 * bench.js. Writes results.undici = { single: {...}, capped: {...} }. CPU is split into user and
 * system time: on this machine the system time (the kernel's page cache and writeback, socket
 * reads) swings by 2-3× from one download to the next whoever downloads, the user time is the client's own.
 */
async function undiciPart(ctx) {
  const { source, results, rounds, quick, work, startService, mdDownload, curlDownload } = ctx;
  // A long-lived child (warm, as the service is); its CPU read from /proc as the service's.
  const child = fork(__filename, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const viaUndici = (job) =>
    new Promise((resolve, reject) => {
      const c0 = cpuOf(child.pid);
      const died = (code) => reject(new Error(`the undici child exited (${code})`));
      child.once('exit', died);
      child.once('message', (m) => {
        child.off('exit', died);
        if (m.error) reject(new Error(m.error));
        else resolve({ ...m.ok, ...cpuSince(child.pid, c0) });
      });
      child.send(job);
    }).finally(() => fs.rmSync(job.file, { force: true }));
  const viaMd = async (svc, url, name) => {
    const c0 = cpuOf(svc.pid);
    const md = await mdDownload(svc, url, name);
    return { transfer: md.transfer, total: md.total, ...cpuSince(svc.pid, c0) };
  };
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  // Each run too (MB/s durable, CPU s per GB): the spread says how much to trust the medians.
  const each = (runs, size) => runs.map((x) => ({ MBps: +(size / MiB / x.total).toFixed(1), cpu_s_per_GB: +(x.cpu / (size / GiB)).toFixed(2) }));
  const sum = (runs, size) => ({
    runs: each(runs, size),
    MBps: size / MiB / median(runs.map((x) => x.total)),
    transfer_MBps: size / MiB / median(runs.map((x) => x.transfer)),
    cpu_s_per_GB: median(runs.map((x) => x.cpu)) / (size / GiB),
    ...(runs[0].user === undefined ? {} : { user_s_per_GB: median(runs.map((x) => x.user)) / (size / GiB), sys_s_per_GB: median(runs.map((x) => x.sys)) / (size / GiB) }),
  });
  const out = { version: require('undici/package.json').version };
  try {
    // One connection, the `single` part's file; who goes first rotates.
    {
      const size = quick ? 256 * MiB : GiB;
      const url = `${source.url}/gen/${size}/model.bin`;
      const svc = await startService({ CONNECTIONS: '1' });
      const runs = { md: [], undici: [], curl: [] };
      for (let r = 0; r < rounds; r++) {
        const order = [['md', 'undici', 'curl'], ['undici', 'curl', 'md'], ['curl', 'md', 'undici']][r % 3];
        for (const who of order) {
          if (who === 'md') runs.md.push(await viaMd(svc, url, 'md.bin'));
          else if (who === 'undici') runs.undici.push(await viaUndici({ url, file: path.join(work, 'undici.bin'), size, connections: 1 }));
          else runs.curl.push(await curlDownload(url, path.join(work, 'curl.bin')));
        }
      }
      await svc.stop();
      out.single = { size_bytes: size, rounds, md: sum(runs.md, size), undici: sum(runs.undici, size), curl: sum(runs.curl, size) };
    }
    // 8 connections on the `capped` part's source (each connection capped); curl once, on one.
    {
      const cap = 20 * 1000 * 1000;
      const size = quick ? 64 * MiB : 256 * MiB;
      const url = `${source.url}/gen/${size}/capped.bin?cap=${cap}`;
      const svc = await startService({ CONNECTIONS: '8' });
      const runs = { md: [], undici: [] };
      for (let r = 0; r < rounds; r++) {
        for (const who of r % 2 === 0 ? ['md', 'undici'] : ['undici', 'md']) {
          if (who === 'md') runs.md.push(await viaMd(svc, url, 'capped.bin'));
          else runs.undici.push(await viaUndici({ url, file: path.join(work, 'capped-undici.bin'), size, connections: 8 }));
        }
      }
      await svc.stop();
      const curl = await curlDownload(url, path.join(work, 'capped-curl.bin'));
      out.capped = { cap_MBps: cap / MiB, size_bytes: size, rounds, md: sum(runs.md, size), undici: sum(runs.undici, size), curl: sum([curl], size) };
    }
  } finally {
    await new Promise((r) => (child.once('exit', r), child.disconnect()));
  }
  const within = (ours, theirs, higherIsBetter) => (higherIsBetter ? theirs >= 0.9 * ours : theirs <= 1.1 * ours);
  out.within_10pct = {
    single_MBps: within(out.single.md.MBps, out.single.undici.MBps, true),
    capped_MBps: within(out.capped.md.MBps, out.capped.undici.MBps, true),
    single_cpu: within(out.single.md.cpu_s_per_GB, out.single.undici.cpu_s_per_GB, false),
    capped_cpu: within(out.capped.md.cpu_s_per_GB, out.capped.undici.cpu_s_per_GB, false),
  };
  results.undici = out;
}

/** The table's rows for results.undici (bench.js prints them). */
function undiciRows(u, f1) {
  const row = (what, x) => `${f1(x.md[what])} vs undici ${f1(x.undici[what])} vs curl ${f1(x.curl[what])}`;
  const ratio = (x, what) => `undici/ours ${f1(x.undici[what] / x.md[what])}`;
  return [
    [`11. undici ${u.version}, one connection, durable (MB/s)`, row('MBps', u.single), `${ratio(u.single, 'MBps')} (prefer undici if ≥ 0.9 on all four)`],
    ['    transfer only, before fsync (MB/s)', row('transfer_MBps', u.single), ratio(u.single, 'transfer_MBps')],
    ['    CPU seconds per GB', row('cpu_s_per_GB', u.single), `${ratio(u.single, 'cpu_s_per_GB')} (≤ 1.1)`],
    ['    of which user / system (s per GB)', `${f1(u.single.md.user_s_per_GB)} / ${f1(u.single.md.sys_s_per_GB)} vs undici ${f1(u.single.undici.user_s_per_GB)} / ${f1(u.single.undici.sys_s_per_GB)}`, ''],
    [`    capped, 8 connections, durable (MB/s)`, row('MBps', u.capped), `${ratio(u.capped, 'MBps')} (curl: one connection)`],
    ['    capped, CPU seconds per GB', row('cpu_s_per_GB', u.capped), `${ratio(u.capped, 'cpu_s_per_GB')} (≤ 1.1)`],
    ['    capped, user / system (s per GB)', `${f1(u.capped.md.user_s_per_GB)} / ${f1(u.capped.md.sys_s_per_GB)} vs undici ${f1(u.capped.undici.user_s_per_GB)} / ${f1(u.capped.undici.sys_s_per_GB)}`, ''],
  ];
}

module.exports = { undiciPart, undiciRows };
