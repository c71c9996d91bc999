// Builds the server and the page once before the tests, as `npm start` does: the restart tests run
// dist/server/main.js as a child process, and the API tests fetch the page from dist/public/.
const { execFileSync } = require('node:child_process');
const path = require('node:path');

module.exports = async () => {
  execFileSync(process.execPath, [path.join(__dirname, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
    cwd: __dirname,
    stdio: 'inherit',
  });
  execFileSync(process.execPath, [path.join(__dirname, 'client', 'build.js')], { cwd: __dirname, stdio: 'inherit' });
};
