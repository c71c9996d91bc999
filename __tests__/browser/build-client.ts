/** Jest global setup of the browser tests: the page needs static/js, which the server never builds. */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export default function buildClient(): void {
  const root = path.resolve(__dirname, '..', '..');
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-b', 'tsconfig.client.json'], { cwd: root, stdio: 'inherit' });
}
