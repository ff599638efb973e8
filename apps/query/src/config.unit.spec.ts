import { ConfigError } from '@tollgate/platform';
import { queryConfig } from './config';

describe("the query service's configuration", () => {
  it('keeps every documented default', () => {
    expect(queryConfig({})).toMatchObject({ port: 8082, host: '127.0.0.1', grpcPort: 50051, database: { poolSize: 10 }, profile: { name: 'trackyard' } });
  });

  it.each([
    ['QUERY_PORT', '8082/tcp'],
    ['QUERY_GRPC_PORT', '99999'],
    ['QUERY_DB_POOL', '0'],
    ['DATABASE_URL', 'tollgate'],
  ])('refuses %s=%s at start, naming it', (name, value) => {
    expect(() => queryConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => queryConfig({ [name]: value })).toThrow(new RegExp(`^invalid configuration: ${name}: `));
  });
});
