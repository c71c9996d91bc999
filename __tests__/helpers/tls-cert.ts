import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let made: { key: Buffer; cert: Buffer } | undefined;

/**
 * A self-signed certificate for `localhost` (and 127.0.0.1), made once per test process with the
 * openssl CLI (Node cannot make X.509 certificates itself). `cert` is also the CA that trusts it.
 */
export function localhostCert(): { key: Buffer; cert: Buffer } {
  if (made) return made;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'md-cert-'));
  try {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
      { stdio: 'ignore' },
    );
    made = { key: fs.readFileSync(key), cert: fs.readFileSync(cert) };
    return made;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
