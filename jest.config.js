/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  // Only sources: built files under dist/ must never be picked up as tests.
  roots: ['<rootDir>/__tests__'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }] },
  // The page's sources and protocol/ import siblings as `./x.js` (ES modules in the browser): resolve them to the .ts.
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  globalSetup: '<rootDir>/jest.global-setup.js',
  testTimeout: 30000,
  // Two test files at once: most tests wait on throttled sources and timers, not the CPU, so on a
  // 2-core machine this halves the run (jest's default would be one worker there).
  maxWorkers: 2,
};
