import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { ProtoFiles, ProtoPackages } from '@tollgate/contracts';
import { connectDatabase, KeyAuthenticator } from '@tollgate/persistence';
import { configureHttp, createLogger, grpcServerOptions, intFromEnv, onShutdown, runMain, strFromEnv } from '@tollgate/platform';
import { loadAllProfiles } from '@tollgate/profiles';
import { AccountViews } from './account-views';
import { QueryModule } from './query.module';

runMain('query', async () => {
  const logger = createLogger('query');
  const port = intFromEnv('QUERY_PORT', 8082);
  const grpcPort = intFromEnv('QUERY_GRPC_PORT', 50051);
  const host = strFromEnv('QUERY_HOST', '127.0.0.1');
  const profiles = loadAllProfiles();
  const profile = profiles.get(strFromEnv('TOLLGATE_PROFILE', 'trackyard'));
  if (!profile) throw new Error(`TOLLGATE_PROFILE names no profile in config/profiles`);

  const ds = await connectDatabase({ migrate: true, poolSize: intFromEnv('QUERY_DB_POOL', 10) });
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
