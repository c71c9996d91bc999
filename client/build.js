// Builds the page into dist/public/, the folder the server serves: the TypeScript of client/ (with
// the shared protocol/ modules it imports) as ES modules under js/, then the static files of
// client/public/ beside them. `npm run build:client`; the browser tests' global setup calls it too.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'dist', 'public');
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.client.json')], { cwd: root, stdio: 'inherit' });
fs.cpSync(path.join(__dirname, 'public'), out, { recursive: true });
