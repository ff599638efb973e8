import { INestApplication, LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { configureHttp, createLogger } from '@tollgate/platform';
import { ExampleUpstreamModule } from './example-upstream.module';
import { upstreamTestHooks } from './test-hooks';

export interface ExampleUpstreamOptions {
  /** Default 127.0.0.1 (main.ts passes EXAMPLE_UPSTREAM_HOST from its config). */
  host?: string;
  /** Default: the JSON logger. `false` silences Nest (tests). */
  logger?: LoggerService | LogLevel[] | false;
}

/**
 * Starts the example upstream and returns it listening. `port` 0 picks a free port (tests read it from
 * `app.getUrl()`); main.ts passes EXAMPLE_UPSTREAM_PORT from its config.
 */
export async function createExampleUpstream(listenPort: number, options: ExampleUpstreamOptions = {}): Promise<INestApplication> {
  const host = options.host ?? '127.0.0.1';
  const app = await NestFactory.create(ExampleUpstreamModule, { logger: options.logger ?? createLogger('example-upstream') });
  configureHttp(app, 'example-upstream');
  // Registered before the routes (Nest mounts controllers at listen), so the hooks see every request first.
  app.use(upstreamTestHooks);
  await app.listen(listenPort, host);
  return app;
}
