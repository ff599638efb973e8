import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { ProtoFiles, ProtoPackages } from '@tollgate/contracts';
import { connectDatabase, KeyAuthenticator } from '@tollgate/persistence';
import { ConfigError, configureHttp, createLogger, grpcServerOptions, onShutdown, runMain } from '@tollgate/platform';
import { loadAllProfiles } from '@tollgate/profiles';
import { AccountViews } from './account-views';
import { queryConfig } from './config';
import { QueryModule } from './query.module';

runMain('query', async () => {
  // Every setting, checked before anything starts (config.ts).
  const config = queryConfig();
  const { port, grpcPort, host } = config;
  const logger = createLogger('query', config.logging);
  const profiles = loadAllProfiles(config.profile.dir);
  const profile = profiles.get(config.profile.name);
  if (!profile) throw new ConfigError(`invalid configuration: TOLLGATE_PROFILE: names no profile in ${config.profile.dir ?? 'config/profiles'} (got "${config.profile.name}")`);

  const ds = await connectDatabase({ url: config.database.url, migrate: true, poolSize: config.database.poolSize });
  const views = new AccountViews(ds, (name) => profiles.get(name));
  // No cache: a revoked key is refused by the query service at once.
  const auth = new KeyAuthenticator(ds, 0);
  const app = await NestFactory.create(QueryModule.register({ ds, views, auth, profile }), { logger });
  configureHttp(app, 'query');
  const base = profile.base_path.replace(/\/+$/, '');
  if (base) app.setGlobalPrefix(base, { exclude: ['health/live', 'health/ready', 'metrics', 'docs', 'docs/openapi.json'] });
  const openapi = SwaggerModule.createDocument(app, new DocumentBuilder().setTitle(`Tollgate query API (${profile.name})`).addBearerAuth().build());
  SwaggerModule.setup('docs', app, openapi, { jsonDocumentUrl: 'docs/openapi.json', useGlobalPrefix: false });
  app.connectMicroservice(grpcServerOptions(ProtoPackages.Query, ProtoFiles.Query, `${host}:${grpcPort}`));
  app.enableShutdownHooks();
  await app.startAllMicroservices();
  await app.listen(port, host);
  logger.log(`query ready: http://${host}:${port}${base}/me, gRPC ${host}:${grpcPort}`);
  onShutdown(async () => {
    await app.close();
    await ds.destroy();
  });
});
