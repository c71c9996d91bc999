#!/usr/bin/env node
// npm run bench — Model Downloader measured side by side with curl (and aria2c where installed).
// Prints a table and writes bench/results.json. It never asserts: numbers are for reading.
//   --quick      smaller files and fewer rounds (a smoke run)
//   --rounds N   rounds of the single-connection comparison (default 3)
//   --only A,B   only these parts: single, capped, memory, fanout, persistence, refresh, bigstatus,
//                verify (the sha256 while downloading, against the old pass after it), kill (bytes
//                fetched again after a kill -9), undici (the same files through undici: bench/undici.js),
//                groups (many files at once vs one big file: bench/groups.js)
// BENCH_BASELINE=<dir> runs the other side of `verify` (and a second round of `kill`) on the build
// in <dir>/dist (e.g. an earlier commit, built): before and after, side by side in one run.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');
const { serve, sha256Of, served } = require('./source-server');
const { groups, groupsRows } = require('./groups');

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const rounds = Number(args[args.indexOf('--rounds') + 1]) || (quick ? 1 : 3);
const only = args.includes('--only') ? new Set(args[args.indexOf('--only') + 1].split(',')) : undefined;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const MAIN = path.join(__dirname, '..', 'dist', 'server', 'main.js');
const baseline = process.env.BENCH_BASELINE ? path.resolve(process.env.BENCH_BASELINE, 'dist', 'server', 'main.js') : undefined;
const work = fs.mkdtempSync(path.join(process.env.BENCH_DIR || os.tmpdir(), 'md-bench-'));
const has = (cmd) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TCK = 100; // clock ticks a second (Linux)
const cpuOf = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / TCK;
};
const peakRss = (pid) => Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;

async function startSource() {
  const server = http.createServer(serve);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/** The service as `npm start` runs it, in its own folders (or in `dir`, kept by `kill9`, to start again there). */
async function startService(env = {}, dir = fs.mkdtempSync(path.join(work, 'svc-')), main = MAIN) {
  // BENCH_NODE_ARGS: extra node flags for the service, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const proc = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : []), main], {
    env: { PATH: process.env.PATH, PORT: '0', MODELS_DIR: path.join(dir, 'models'), STATUS_FILE: path.join(dir, 'status.json'), CATALOG_FILE: path.join(dir, 'catalog.json'), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const url = await new Promise((resolve, reject) => {
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /serving (http:\/\/[^/\s]+)\//.exec(out);
      if (m) resolve(m[1]);
    });
    proc.once('exit', (code) => reject(new Error(`service exited ${code}: ${out}`)));
  });
  const api = async (method, p, body) => {
    const res = await fetch(url + p, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
    return res.json();
  };
  return {
    url, dir, pid: proc.pid, api,
    kill9: async () => {
      proc.kill('SIGKILL');
      await new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once('exit', r)));
    },
    stop: async () => {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * One download through the service; seconds to the end of the transfer and to the durable file.
 * Watched over the WebSocket, as the page does: polling the API would itself cost the service CPU.
 */
async function mdDownload(svc, url, filename, extra = {}) {
  const ws = new WebSocket(`${svc.url.replace('http', 'ws')}/ws`);
  await new Promise((r) => ws.once('message', r)); // the snapshot
  const t0 = performance.now();
  let transfer;
  const done = new Promise((resolve, reject) => {
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type !== 'update' || m.download.filename !== filename) return;
      const d = m.download;
      if (!transfer && (d.status === 'verifying' || d.status === 'completed')) transfer = (performance.now() - t0) / 1000;
      if (d.status === 'completed') resolve(d);
      if (d.status === 'error') reject(new Error(d.error.message));
    });
  });
  const { download } = await svc.api('POST', '/api/downloads', { url, folder: 'checkpoints', filename, overwrite: true, ...extra });
  const entry = await done;
  const end = performance.now();
  const total = (end - t0) / 1000;
  ws.terminate();
  await svc.api('DELETE', `/api/downloads/${download.id}`);
  fs.rmSync(path.join(svc.dir, 'models', 'checkpoints', filename), { force: true });
  return { transfer, total, t0, end, entry };
}

/** A command under /usr/bin/time: wall and CPU seconds. */
function timed(cmd, argv) {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/time', ['-f', '%e %U %S', cmd, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.once('exit', (code) => {
      const m = /([\d.]+) ([\d.]+) ([\d.]+)\s*$/.exec(err.trim());
      if (code !== 0 || !m) reject(new Error(`${cmd} failed (${code}): ${err}`));
      else resolve({ wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]) });
    });
  });
}

async function curlDownload(url, file) {
  const t0 = performance.now();
  const c = await timed('curl', ['-s', '-f', '-o', file, url]);
  const t1 = performance.now();
  // The kernel's writeback work is charged to whoever syncs: to the service for its fsync, so to
  // curl's side as well.
  const s = await timed('sync', [file]);
  const total = (performance.now() - t0) / 1000;
  fs.rmSync(file, { force: true });
  return { transfer: (t1 - t0) / 1000, total, cpu: c.cpu + s.cpu };
}

async function singleConnection(source, results) {
  const size = quick ? 256 * MiB : GiB;
  const url = `${source.url}/gen/${size}/model.bin`;
  const svc = await startService({ CONNECTIONS: '1' });
  const md = [], curl = [], mdCpu = [];
  for (let r = 0; r < rounds; r++) {
    // Alternate who goes first: the page cache and writeback of one run must not favour the other.
    const order = r % 2 === 0 ? ['curl', 'md'] : ['md', 'curl'];
    for (const who of order) {
      if (who === 'curl') curl.push(await curlDownload(url, path.join(work, 'curl.bin')));
      else {
        const c0 = cpuOf(svc.pid);
        md.push(await mdDownload(svc, url, 'md.bin'));
        mdCpu.push(cpuOf(svc.pid) - c0);
      }
    }
  }
  await svc.stop();
  const gb = size / GiB;
  const row = {
    size_bytes: size, rounds,
    md_MBps: size / MiB / median(md.map((x) => x.total)),
    curl_MBps: size / MiB / median(curl.map((x) => x.total)),
    md_transfer_MBps: size / MiB / median(md.map((x) => x.transfer)),
    curl_transfer_MBps: size / MiB / median(curl.map((x) => x.transfer)),
    md_cpu_s_per_GB: median(mdCpu) / gb,
    curl_cpu_s_per_GB: median(curl.map((x) => x.cpu)) / gb,
  };
  row.ratio = row.md_MBps / row.curl_MBps;
  row.raw_ratio = row.md_transfer_MBps / row.curl_transfer_MBps;
  row.cpu_ratio = row.md_cpu_s_per_GB / row.curl_cpu_s_per_GB;
  results.single = row;
}

async function cappedSource(source, results) {
  const cap = 20 * 1000 * 1000;
  const size = quick ? 64 * MiB : 256 * MiB;
  const url = `${source.url}/gen/${size}/capped.bin?cap=${cap}`;
  const svc = await startService({ CONNECTIONS: '8' });
  const md = await mdDownload(svc, url, 'capped.bin');
  await svc.stop();
  const row = { cap_MBps: cap / MiB, size_bytes: size, md_MBps: size / MiB / md.total, md_transfer_MBps: size / MiB / md.transfer, target_MBps: (0.9 * 8 * cap) / MiB };
  const curl = await curlDownload(url, path.join(work, 'capped-curl.bin'));
  row.curl_MBps = size / MiB / curl.total;
  if (has('aria2c')) {
    const t0 = performance.now();
    await timed('aria2c', ['-q', '-x8', '-s8', '-k1M', '--file-allocation=none', '--allow-overwrite=true', '-d', work, '-o', 'capped-aria.bin', url]);
    execFileSync('sync', [path.join(work, 'capped-aria.bin')]);
    row.aria2c_MBps = size / MiB / ((performance.now() - t0) / 1000);
    fs.rmSync(path.join(work, 'capped-aria.bin'), { force: true });
  }
  results.capped = row;
}

async function memory(source, results) {
  const size = quick ? GiB : 4 * GiB;
  const svc = await startService();
  const before = peakRss(svc.pid);
  const md = await mdDownload(svc, `${source.url}/gen/${size}/big.bin`, 'big.bin');
  results.memory = { size_bytes: size, rss_before_MB: before / MiB, peak_rss_MB: peakRss(svc.pid) / MiB, MBps: size / MiB / md.total };
  await svc.stop();
}

async function fanOut(source, results) {
  const clients = 1000;
  const svc = await startService({ CONNECTIONS: '1', MAX_CONCURRENT: '4' });
  const sockets = [];
  const latencies = [];
  let messages = 0;
  for (let i = 0; i < clients; i++) {
    const ws = new WebSocket(`${svc.url.replace('http', 'ws')}/ws`);
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type !== 'update') return;
      messages++;
      latencies.push(Date.now() - m.download.timestamp * 1000);
    });
    ws.on('error', () => undefined);
    sockets.push(ws);
  }
  await Promise.all(sockets.map((ws) => new Promise((r) => (ws.readyState === 1 ? r() : ws.once('open', r)))));
  const size = 200 * MiB;
  for (let i = 0; i < 4; i++) await svc.api('POST', '/api/downloads', { url: `${source.url}/gen/${size}/fan${i}.bin?cap=${20e6}`, folder: 'loras' });
  await sleep(1000);
  latencies.length = 0;
  messages = 0;
  const c0 = cpuOf(svc.pid);
  const t0 = performance.now();
  await sleep(quick ? 3000 : 5000);
  const secs = (performance.now() - t0) / 1000;
  results.fanout = {
    clients,
    msgs_per_client_per_s: messages / clients / secs,
    latency_p50_ms: pct(latencies, 50),
    latency_p99_ms: pct(latencies, 99),
    server_cpu_cores: (cpuOf(svc.pid) - c0) / secs,
  };
  for (const ws of sockets) ws.terminate();
  await svc.stop();
}

async function persistence(source, results) {
  const svc = await startService({ CONNECTIONS: '1', MAX_CONCURRENT: '8' });
  let writes = 0;
  const watcher = fs.watch(svc.dir, (event, name) => {
    if (event === 'rename' && name === 'status.json') writes++;
  });
  for (let i = 0; i < 8; i++) await svc.api('POST', '/api/downloads', { url: `${source.url}/gen/${100 * MiB}/p${i}.bin?cap=${10e6}`, folder: 'loras' });
  await sleep(1000);
  writes = 0;
  const t0 = performance.now();
  await sleep(quick ? 2000 : 4000);
  results.persistence = { downloads: 8, status_writes_per_s: writes / ((performance.now() - t0) / 1000) };
  watcher.close();
  await svc.stop();
}

/** A status file of 10,000 entries while 4 downloads run: what each progress write costs. */
async function bigStatus(source, results) {
  const dir = fs.mkdtempSync(path.join(work, 'big-'));
  const t = Date.now() / 1000;
  const entries = {};
  for (let i = 0; i < 10_000; i++) {
    entries[`loras/old-${i}.safetensors`] = { id: `old${i}`, url: `https://huggingface.co/org/repo-${i % 50}/resolve/main/model-${i}.safetensors`, status: 'completed', progress: 100, downloaded: 1e9, file_size: 1e9, speed: 0, eta: null, start_time: t, timestamp: t, completion_time: t, attempts: 1 };
  }
  const statusFile = path.join(dir, 'status.json');
  fs.writeFileSync(statusFile, JSON.stringify(entries));
  const svc = await startService({ STATUS_FILE: statusFile, CONNECTIONS: '1', MAX_CONCURRENT: '4', RETENTION_HOURS: '1000' });
  let writes = 0;
  let bytes = 0;
  const watcher = fs.watch(dir, (event, name) => {
    if (event !== 'rename' || name !== 'status.json') return;
    writes++;
    try {
      bytes += fs.statSync(statusFile).size;
    } catch {}
  });
  for (let i = 0; i < 4; i++) await svc.api('POST', '/api/downloads', { url: `${source.url}/gen/${200 * MiB}/big${i}.bin?cap=${6e6}`, folder: 'loras' });
  await sleep(1500);
  writes = 0;
  bytes = 0;
  const c0 = cpuOf(svc.pid);
  const t0 = performance.now();
  await sleep(quick ? 4000 : 8000);
  const secs = (performance.now() - t0) / 1000;
  results.bigstatus = { entries: 10_000, downloads: 4, server_cpu_cores: (cpuOf(svc.pid) - c0) / secs, status_MB_written_per_s: bytes / MiB / secs, status_writes_per_s: writes / secs, file_MB: fs.statSync(statusFile).size / MiB };
  watcher.close();
  await svc.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}

async function refresh(results) {
  const dir = fs.mkdtempSync(path.join(work, 'refresh-'));
  const t = Date.now() / 1000;
  const entries = {};
  for (let i = 0; i < 1000; i++) {
    entries[`loras/model-${i}.safetensors`] = { id: `id${i}`, url: `https://huggingface.co/org/repo/resolve/main/model-${i}.safetensors`, status: 'completed', progress: 100, downloaded: 1e9, file_size: 1e9, speed: 0, eta: null, start_time: t, timestamp: t, completion_time: t, attempts: 1 };
  }
  fs.writeFileSync(path.join(dir, 'status.json'), JSON.stringify(entries));
  const svc = await startService({ STATUS_FILE: path.join(dir, 'status.json') });
  const times = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    const ws = new WebSocket(`${svc.url.replace('http', 'ws')}/ws`);
    const snap = await new Promise((r) => ws.once('message', (d) => r(JSON.parse(d))));
    times.push(performance.now() - t0);
    if (snap.downloads.length !== 1000) throw new Error(`snapshot had ${snap.downloads.length} entries`);
    ws.terminate();
  }
  results.refresh = { entries: 1000, connect_to_snapshot_ms_p50: median(times), connect_to_snapshot_ms_max: Math.max(...times) };
  await svc.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * The sha256 of a segmented download (CONNECTIONS=4, 4 GiB): hashed while the ranges arrive (the
 * default) against INFLIGHT_HASH=0 (the old pass over the whole file after the last byte),
 * alternating, each on its own service. "Tail" is from the last byte the source sent to
 * `completed`: what the user waits for once the network is done. Also without a known sha256, where
 * the in-flight hash only records the file's digest.
 */
async function verifyWhileDownloading(source, results) {
  const size = quick ? GiB : 4 * GiB;
  const sha256 = sha256Of(size);
  const svc = {
    on: await startService({ CONNECTIONS: '4' }),
    off: baseline ? await startService({ CONNECTIONS: '4' }, undefined, baseline) : await startService({ CONNECTIONS: '4', INFLIGHT_HASH: '0' }),
  };
  const runs = { on: [], off: [], plain_on: [], plain_off: [] };
  const vRounds = quick ? 1 : Number(process.env.VERIFY_ROUNDS || 2);
  let n = 0;
  for (let r = 0; r < vRounds; r++) {
    const order = r % 2 === 0 ? ['on', 'off'] : ['off', 'on'];
    for (const plain of [false, true]) {
      for (const who of order) {
        const name = `verify-${n++}.bin`;
        const c0 = cpuOf(svc[who].pid);
        const md = await mdDownload(svc[who], `${source.url}/gen/${size}/${name}`, name, plain ? {} : { sha256 });
        const last = served(`/gen/${size}/${name}`).lastByteAt;
        runs[plain ? `plain_${who}` : who].push({ ...md, tail: (md.end - last) / 1000, cpu: cpuOf(svc[who].pid) - c0, recorded: md.entry.sha256 === sha256 });
        await sleep(500); // the previous file's writeback out of the way
      }
    }
  }
  const rss = { on: peakRss(svc.on.pid) / MiB, off: peakRss(svc.off.pid) / MiB };
  await svc.on.stop();
  await svc.off.stop();
  const sum = (xs) => ({
    MBps: size / MiB / median(xs.map((x) => x.total)),
    transfer_MBps: size / MiB / median(xs.map((x) => x.transfer)),
    tail_s: median(xs.map((x) => x.tail)),
    tail_max_s: Math.max(...xs.map((x) => x.tail)),
    cpu_s: median(xs.map((x) => x.cpu)),
    sha256_recorded: xs.every((x) => x.recorded),
  });
  results.verify = { size_bytes: size, rounds: vRounds, peak_rss_MB: rss, off_is: baseline ? `the build in ${process.env.BENCH_BASELINE}` : 'INFLIGHT_HASH=0', on: sum(runs.on), off: sum(runs.off), plain_on: sum(runs.plain_on), plain_off: sum(runs.plain_off) };
}

/**
 * What a kill -9 costs: the built server downloads over 8 connections from a source capped at
 * 2 MB/s each (16 MB/s), is killed -9 at some point between 30 % and 70 % of the file, started
 * again on the same folders, and finishes. Bytes the source sent in all minus the file's size were
 * fetched twice: said as seconds of transfer at the rate measured before the kill.
 */
async function killCost(source, results) {
  const cap = 2 * 1000 * 1000;
  const size = quick ? 48 * MiB : 96 * MiB;
  const kills = quick ? 2 : Number(process.env.KILL_ROUNDS || 6);
  const rows = [];
  const base = [];
  for (let k = 0; k < (baseline ? 2 : 1) * kills; k++) {
    const main = baseline && k % 2 === 1 ? baseline : MAIN;
    const dir = fs.mkdtempSync(path.join(work, 'kill-'));
    const p = `/gen/${size}/kill-${k}.bin`;
    const env = { CONNECTIONS: '8' };
    const first = await startService(env, dir, main);
    const t0 = performance.now();
    await first.api('POST', '/api/downloads', { url: `${source.url}${p}?cap=${cap}`, folder: 'checkpoints' });
    const nth = baseline ? Math.floor(k / 2) : k;
    const at = size * (0.3 + (0.4 * nth) / Math.max(1, kills - 1));
    while (served(p).bytes < at) await sleep(5);
    await sleep(Math.random() * 250); // anywhere in a sync's cycle
    const sentBefore = served(p).bytes;
    const rate = sentBefore / ((performance.now() - t0) / 1000);
    await first.kill9();
    const second = await startService(env, dir, main);
    for (;;) {
      const { downloads } = await second.api('GET', '/api/downloads');
      const d = downloads.find((x) => x.filename === `kill-${k}.bin`);
      if (d?.status === 'completed') break;
      if (d?.status === 'error') throw new Error(`kill part: ${d.error.message}`);
      await sleep(100);
    }
    const lost = served(p).bytes - size;
    (main === MAIN ? rows : base).push({ killed_at: sentBefore / size, lost_bytes: lost, rate_MBps: rate / MiB, lost_s: lost / rate });
    await second.stop();
  }
  const sum = (xs) => ({ lost_MB_median: median(xs.map((r) => r.lost_bytes)) / MiB, lost_s_median: median(xs.map((r) => r.lost_s)), lost_s_max: Math.max(...xs.map((r) => r.lost_s)), rows: xs });
  results.kill = { connections: 8, cap_MBps_per_connection: cap / MiB, size_bytes: size, kills, ...sum(rows), ...(baseline ? { baseline: sum(base) } : {}) };
}

const f1 = (n) => (n === undefined ? '—' : n.toFixed(n < 10 ? 2 : 1));

async function main() {
  const results = { machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memory_GB: Math.round(os.totalmem() / GiB), node: process.version, date: new Date().toISOString() } };
  const source = await startSource();
  try {
    const parts = [
      ['single', 'single connection vs curl', () => singleConnection(source, results)],
      ['capped', 'capped source', () => cappedSource(source, results)],
      ['memory', 'memory', () => memory(source, results)],
      ['fanout', 'fan-out', () => fanOut(source, results)],
      ['persistence', 'persistence', () => persistence(source, results)],
      ['refresh', 'refresh', () => refresh(results)],
      ['bigstatus', '10,000 entries', () => bigStatus(source, results)],
      ['verify', 'sha256 while downloading', () => verifyWhileDownloading(source, results)],
      ['kill', 'bytes fetched again after a kill -9', () => killCost(source, results)],
      ['undici', 'undici vs ours and curl', () => require('./undici').undiciPart({ source, results, rounds, quick, work, startService, mdDownload, curlDownload })],
      ['groups', 'groups of many files', () => groups({ startService, quick, rounds }, results)],
    ];
    for (const [key, name, run] of parts) {
      if (only && !only.has(key)) continue;
      process.stderr.write(`… ${name}\n`);
      await run();
    }
  } finally {
    await source.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
  const s = results.single, c = results.capped, m = results.memory, fo = results.fanout, p = results.persistence, r = results.refresh, b = results.bigstatus, v = results.verify, k = results.kill;
  const rows = [
    ...(s ? [
      ['1. single connection, durable file (MB/s)', `${f1(s.md_MBps)} vs curl+sync ${f1(s.curl_MBps)}`, `ratio ${f1(s.ratio)} (target ≥ 0.9)`],
      ['   transfer only, before fsync (MB/s)', `${f1(s.md_transfer_MBps)} vs curl ${f1(s.curl_transfer_MBps)}`, `ratio ${f1(s.raw_ratio)}`],
      ['4. CPU seconds per GB', `${f1(s.md_cpu_s_per_GB)} vs curl ${f1(s.curl_cpu_s_per_GB)}`, `ratio ${f1(s.cpu_ratio)} (target ≤ 1.5)`],
    ] : []),
    ...(c ? [[`2. capped ${f1(c.cap_MBps)} MB/s per connection, 8 connections (MB/s)`, `${f1(c.md_MBps)} (transfer only ${f1(c.md_transfer_MBps)}) vs curl ${f1(c.curl_MBps)}${c.aria2c_MBps ? ` vs aria2c -x8 ${f1(c.aria2c_MBps)}` : ' (aria2c not installed)'}`, `target ≥ ${f1(c.target_MBps)}`]] : []),
    ...(m ? [[`3. peak RSS downloading ${m.size_bytes / GiB} GiB (MB)`, f1(m.peak_rss_MB), 'target < 150']] : []),
    ...(fo ? [[`5. fan-out, ${fo.clients} subscribers, 4 downloads`, `${f1(fo.msgs_per_client_per_s)} msg/s/client, p50 ${f1(fo.latency_p50_ms)} ms, p99 ${f1(fo.latency_p99_ms)} ms, server ${f1(fo.server_cpu_cores)} cores`, 'p99 < 100 ms, < 1 core']] : []),
    ...(p ? [['6. status-file writes/s, 8 downloads', f1(p.status_writes_per_s), 'target ≤ 4']] : []),
    ...(b ? [[`8. 10,000 entries (${f1(b.file_MB)} MB file), 4 downloads at 6 MB/s`, `server ${f1(b.server_cpu_cores)} cores, status file ${f1(b.status_MB_written_per_s)} MB/s written (${f1(b.status_writes_per_s)} writes/s)`, '< 0.15 cores, < 20 MB/s']] : []),
    ...(r ? [['7. snapshot of 1000 entries after connect (ms)', `p50 ${f1(r.connect_to_snapshot_ms_p50)}, max ${f1(r.connect_to_snapshot_ms_max)}`, 'target < 50']] : []),
    ...(v ? [
      [`9. ${v.size_bytes / GiB} GiB, 4 connections, known sha256: last byte → completed (s)`, `${f1(v.on.tail_s)} (max ${f1(v.on.tail_max_s)}) vs ${f1(v.off.tail_s)} with ${v.off_is}`, 'target ≤ 0.3'],
      ['   the whole download, durable and verified (MB/s)', `${f1(v.on.MBps)} vs ${f1(v.off.MBps)} (transfer only ${f1(v.on.transfer_MBps)} vs ${f1(v.off.transfer_MBps)}); CPU ${f1(v.on.cpu_s)} vs ${f1(v.off.cpu_s)} s; peak RSS ${f1(v.peak_rss_MB.on)} vs ${f1(v.peak_rss_MB.off)} MB`, 'no slower'],
      ['   no sha256 given (MB/s)', `${f1(v.plain_on.MBps)} vs ${f1(v.plain_off.MBps)} with ${v.off_is}; sha256 recorded: ${v.plain_on.sha256_recorded ? 'yes' : 'no'}`, 'no slower'],
    ] : []),
    ...(k ? [[`10. kill -9, 8 connections at ${f1(k.cap_MBps_per_connection)} MB/s: fetched again`, `median ${f1(k.lost_MB_median)} MB = ${f1(k.lost_s_median)} s of transfer (max ${f1(k.lost_s_max)} s, ${k.kills} kills)${k.baseline ? `; baseline build ${f1(k.baseline.lost_s_median)} s (max ${f1(k.baseline.lost_s_max)} s)` : ''}`, 'target ≤ 0.5 s']] : []),
    ...(results.undici ? require('./undici').undiciRows(results.undici, f1) : []),
    ...groupsRows(results.groups, f1),
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  console.log(`\nModel Downloader bench — ${results.machine.cpus} × ${results.machine.cpu}, node ${results.machine.node}${quick ? ' (quick)' : ''}`);
  for (const [a, b, t] of rows) console.log(`${a.padEnd(w)}  ${b}  [${t}]`);
  fs.writeFileSync(path.join(__dirname, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  console.log('\nwritten to bench/results.json');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
