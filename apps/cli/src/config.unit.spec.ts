import { run } from './tollgate';
import { cliConfig } from './config';

describe("the CLI's configuration", () => {
  it('keeps its defaults', () => {
    expect(cliConfig({})).toMatchObject({ adminUrl: 'http://127.0.0.1:8081', adminToken: undefined, kafkaBrokersSet: false, publishWindowSeconds: 120 });
    expect(cliConfig({ TOLLGATE_ADMIN_URL: 'http://m:8081/', USER: 'ops' })).toMatchObject({ adminUrl: 'http://m:8081', user: 'ops' });
  });

  it.each([
    ['TOLLGATE_ADMIN_URL', 'metering:8081'],
    ['DATABASE_URL', 'http://db'],
    ['KAFKA_BROKERS', 'broker'],
    ['RESERVATION_PUBLISH_WINDOW_SECONDS', '2m'],
  ])('a command refuses %s=%s before it runs: exit 2, naming it', async (name, value) => {
    for (const argv of [['orgs', 'list'], ['audit'], ['dlq', 'list'], ['replay', '--all']]) {
      let err = '';
      const code = await run(argv, { out: () => undefined, err: (s) => (err += s), env: { [name]: value }, sleep: async () => undefined, stopped: new Promise(() => undefined) });
      expect(code).toBe(2);
      expect(err).toMatch(new RegExp(`invalid configuration: ${name}: `));
    }
  });
});
