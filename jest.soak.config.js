/**
 * Soak tests (`npm run test:soak`): the kill loop, WebSocket churn and the HTTP client's differential
 * run against llhttp at length, minutes long, so kept out of
 * `npm test` (whose testMatch is *.test.ts). The global setup builds dist/ for the child servers.
 * @type {import('jest').Config}
 */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/__tests__/hardening', '<rootDir>/__tests__/net', '<rootDir>/__tests__/fleet'],
  testMatch: ['**/*.soak.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }] },
  // The page's sources and protocol/ import siblings as `./x.js` (ES modules in the browser): resolve them to the .ts.
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  globalSetup: '<rootDir>/jest.global-setup.js',
  // One at a time: they measure a machine under load, and two would make each other's timings noisy.
  maxWorkers: 1,
  testTimeout: 240_000,
  // The churn soak promises no listener, socket or timer left behind: jest reports any handle still
  // open when the tests end (and the run would not exit by itself).
  detectOpenHandles: true,
};
