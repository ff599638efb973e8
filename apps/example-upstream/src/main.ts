import 'reflect-metadata';
import { createLogger, onShutdown, runMain } from '@tollgate/platform';
import { createExampleUpstream } from './example-upstream';

runMain('example-upstream', async () => {
  const logger = createLogger('example-upstream');
  const app = await createExampleUpstream(undefined, { logger });
  app.enableShutdownHooks();
  logger.log(`example-upstream ready: ${await app.getUrl()} (trackyard /api/external/v1, beatpass /api/v1, trakt /, trace /v1)`);
  onShutdown(async () => {
    await app.close();
  });
});
