/** Jest global setup of the browser tests: the page needs dist/public, which the server never builds. */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export default function buildClient(): void {
  const root = path.resolve(__dirname, '..', '..');
  execFileSync(process.execPath, [path.join(root, 'client', 'build.js')], { cwd: root, stdio: 'inherit' });
}
