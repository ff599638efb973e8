import { Cleaned, port, readConfig, RuntimeEnv, runtimeConfig, text } from '@tollgate/platform';

/**
 * Every variable the example upstream reads (documented in .env.example), checked once at start by
 * `exampleUpstreamConfig()` in main.ts.
 */
export const ExampleUpstreamEnv = {
  ...RuntimeEnv,
  EXAMPLE_UPSTREAM_PORT: port(8090),
  EXAMPLE_UPSTREAM_HOST: text('127.0.0.1'),
};

export function exampleUpstreamConfig(env: NodeJS.ProcessEnv = process.env) {
  const c: Cleaned<typeof ExampleUpstreamEnv> = readConfig(ExampleUpstreamEnv, env);
  return { ...runtimeConfig(c), port: c.EXAMPLE_UPSTREAM_PORT, host: c.EXAMPLE_UPSTREAM_HOST };
}
