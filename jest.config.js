// Test tiers by file suffix: *.unit.spec.ts (pure, no I/O), *.int.spec.ts (real PostgreSQL / Kafka / Redis),
// *.e2e.spec.ts (the built apps as processes, driven over HTTP, gRPC and Kafka).
const paths = {
  '^@tollgate/(contracts|billing|rate-limit|rate-limit-redis|profiles|persistence|messaging|platform|ledger|operations)$': '<rootDir>/libs/$1/src',
};
const base = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  rootDir: __dirname,
  moduleNameMapper: paths,
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json' }] },
};
module.exports = {
  // Integration and e2e tests start processes and wait on Kafka; unit tests finish far below this.
  testTimeout: 60_000,
  projects: [
    { ...base, displayName: 'unit', testMatch: ['<rootDir>/{apps,libs,test}/**/*.unit.spec.ts'] },
    { ...base, displayName: 'int', testMatch: ['<rootDir>/{apps,libs,test}/**/*.int.spec.ts'] },
    { ...base, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.e2e.spec.ts'] },
  ],
};
