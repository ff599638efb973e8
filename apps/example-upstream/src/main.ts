import 'reflect-metadata';
import { createLogger, onShutdown, runMain } from '@tollgate/platform';
import { exampleUpstreamConfig } from './config';
import { createExampleUpstream } from './example-upstream';

runMain('example-upstream', async () => {
  const config = exampleUpstreamConfig();
  const logger = createLogger('example-upstream', config.logging);
  const app = await createExampleUpstream(config.port, { logger, host: config.host });
  app.enableShutdownHooks();
  logger.log(`example-upstream ready: ${await app.getUrl()} (trackyard /api/external/v1, beatpass /api/v1, trakt /, trace /v1)`);
  onShutdown(async () => {
    await app.close();
  });
});
