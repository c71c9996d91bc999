import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface Tinyproxy {
  port: number;
  /** `http://[user:pass@]127.0.0.1:port`. */
  url: string;
  /** What it logged so far (requests, CONNECTs, refusals). */
  log(): string;
  stop(): Promise<void>;
}

const BINARIES = ['/usr/bin/tinyproxy', '/usr/sbin/tinyproxy', '/usr/local/bin/tinyproxy'];

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Starts Debian's tinyproxy on a free loopback port with a config of its own: only 127.0.0.1 may
 * use it, CONNECT only to `connectPorts`, no Via header, Basic credentials when `auth` is given,
 * logging to a temporary file. Missing tinyproxy is a failure that says how to install it, never a
 * skipped test.
 */
export async function startTinyproxy(o: { connectPorts: number[]; auth?: { user: string; password: string } }): Promise<Tinyproxy> {
  const binary = BINARIES.find((b) => fs.existsSync(b));
  if (!binary) throw new Error('tinyproxy is not installed: the proxy tests need it (apt-get install -y tinyproxy; .ci/run installs it)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'md-tinyproxy-'));
  const logFile = path.join(dir, 'tinyproxy.log');
  const port = await freePort();
  const config = [
    `Port ${port}`,
    'Listen 127.0.0.1',
    'Timeout 30',
    'Allow 127.0.0.1',
    ...o.connectPorts.map((p) => `ConnectPort ${p}`),
    'DisableViaHeader Yes',
    `LogFile "${logFile}"`,
    'LogLevel Info',
    'MaxClients 50',
    `PidFile "${path.join(dir, 'tinyproxy.pid')}"`,
    ...(o.auth ? [`BasicAuth ${o.auth.user} ${o.auth.password}`] : []),
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'tinyproxy.conf'), `${config}\n`);
  const child: ChildProcess = spawn(binary, ['-d', '-c', path.join(dir, 'tinyproxy.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  // Up when it accepts a connection; dead when it exits first.
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tinyproxy exited at start (${child.exitCode}): ${output}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`tinyproxy did not listen on ${port} in 10 s: ${output}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const auth = o.auth ? `${encodeURIComponent(o.auth.user)}:${encodeURIComponent(o.auth.password)}@` : '';
  return {
    port,
    url: `http://${auth}127.0.0.1:${port}`,
    log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''),
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
