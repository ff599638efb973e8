// The Docker tier (issue 22): test/docker/*.docker.spec.ts drive a Docker engine (docker compose on the images
// `npm run images` builds). Not part of `npm test`: scripts/ci-docker.sh starts an engine and runs them.
const base = require('./jest.config.js').projects[0];
module.exports = {
  testTimeout: 120_000,
  projects: [{ ...base, displayName: 'docker', testMatch: ['<rootDir>/test/docker/**/*.docker.spec.ts'] }],
};
