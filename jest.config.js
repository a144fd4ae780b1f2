/** @type {import('jest').Config} */
module.exports = {
  rootDir: '.',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testRegex: '.*\\.spec\\.ts$',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json' }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  moduleNameMapper: {
    '^nestjs-persistence$': '<rootDir>/lib/index.ts',
    '^nestjs-persistence/health$': '<rootDir>/lib/health/index.ts',
    '^nestjs-persistence/postgres$': '<rootDir>/lib/storage/postgres/index.ts',
    '^nestjs-persistence/redis$': '<rootDir>/lib/storage/redis/index.ts',
    '^nestjs-persistence/testing$': '<rootDir>/lib/testing/index.ts',
    '^nestjs-persistence/s3$': '<rootDir>/lib/s3/index.ts',
  },
  collectCoverageFrom: ['lib/**/*.ts'],
  testTimeout: 30000,
  // Compiles what child processes run, once per run (test/fixtures/child-build.ts).
  globalSetup: '<rootDir>/test/global-setup.ts',
};
