import { exampleUpstreamConfig } from './config';

describe("the example upstream's configuration", () => {
  it('keeps its defaults and refuses a bad port, naming it', () => {
    expect(exampleUpstreamConfig({})).toMatchObject({ port: 8090, host: '127.0.0.1' });
    expect(() => exampleUpstreamConfig({ EXAMPLE_UPSTREAM_PORT: 'eighty' })).toThrow(/^invalid configuration: EXAMPLE_UPSTREAM_PORT: must be a whole number from 0 to 65535/);
  });
});
