import { INestApplication, LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { configureHttp, createLogger, intFromEnv, strFromEnv } from '@tollgate/platform';
import { ExampleUpstreamModule } from './example-upstream.module';
import { upstreamTestHooks } from './test-hooks';

export interface ExampleUpstreamOptions {
  /** Default `EXAMPLE_UPSTREAM_HOST`, else 127.0.0.1. */
  host?: string;
  /** Default: the JSON logger. `false` silences Nest (tests). */
  logger?: LoggerService | LogLevel[] | false;
}

/**
 * Starts the example upstream and returns it listening. `port` 0 picks a free port (tests read it from
 * `app.getUrl()`); without a port, `EXAMPLE_UPSTREAM_PORT` (default 8090).
 */
export async function createExampleUpstream(port?: number, options: ExampleUpstreamOptions = {}): Promise<INestApplication> {
  const listenPort = port ?? intFromEnv('EXAMPLE_UPSTREAM_PORT', 8090);
  const host = options.host ?? strFromEnv('EXAMPLE_UPSTREAM_HOST', '127.0.0.1');
  const app = await NestFactory.create(ExampleUpstreamModule, { logger: options.logger ?? createLogger('example-upstream') });
  configureHttp(app, 'example-upstream');
  // Registered before the routes (Nest mounts controllers at listen), so the hooks see every request first.
  app.use(upstreamTestHooks);
  await app.listen(listenPort, host);
  return app;
}
