/** Layer rules: CI fails when any of these is broken (`npm run deps:check`). */
const DOMAIN = '^libs/(billing|rate-limit)/';
module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', from: {}, to: { circular: true } },
    { name: 'libs-never-import-apps', severity: 'error', from: { path: '^libs/' }, to: { path: '^apps/' } },
    {
      name: 'domain-is-pure',
      comment: 'Billing and rate-limit rules import no framework, ORM or broker client.',
      severity: 'error',
      from: { path: DOMAIN },
      to: { path: 'node_modules/(@nestjs|typeorm|kafkajs|pg|ioredis|@grpc)/' },
    },
    {
      name: 'domain-depends-only-on-contracts',
      severity: 'error',
      from: { path: DOMAIN },
      to: { path: '^libs/', pathNot: ['^libs/(billing|rate-limit|contracts)/'] },
    },
    {
      name: 'operator-code-outside-the-service',
      comment:
        'replay, audit and dlq (libs/operations) are run by the operator through apps/cli, never by a service: only apps/cli ' +
        'imports them, and the code both share (libs/ledger) does not lean on them.',
      severity: 'error',
      from: { path: '^(apps|libs)/', pathNot: ['^apps/cli/', '^libs/operations/'] },
      to: { path: '^libs/operations/' },
    },
    { name: 'apps-do-not-import-each-other', severity: 'error', from: { path: '^apps/([^/]+)/' }, to: { path: '^apps/', pathNot: '^apps/$1/' } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    exclude: { path: '\\.spec\\.ts$' },
  },
};
