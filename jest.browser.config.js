/**
 * Browser tests (`npm run test:browser`): the real server and page in Debian's Chromium via
 * playwright-core. Kept out of `npm test` (whose testMatch is *.test.ts) so that one passes
 * without a browser. The global setup builds the page into dist/public first.
 * @type {import('jest').Config}
 */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/__tests__/browser'],
  testMatch: ['**/*.browser.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }] },
  // The page's sources and protocol/ import siblings as `./x.js` (ES modules in the browser): resolve them to the .ts.
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  globalSetup: '<rootDir>/__tests__/browser/build-client.ts',
  // One Chromium at a time: two on this 2-core machine would make throttled timings noisy.
  maxWorkers: 1,
  testTimeout: 60000,
};
