// Builds the server once before the tests: the restart tests run dist/server/main.js as a child
// process, exactly as `npm start` does.
const { execFileSync } = require('node:child_process');
const path = require('node:path');

module.exports = async () => {
  execFileSync(process.execPath, [path.join(__dirname, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
    cwd: __dirname,
    stdio: 'inherit',
  });
};
