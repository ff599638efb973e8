import { DynamicModule, Module } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { KeyAuthenticator } from '@tollgate/persistence';
import { HealthController, ReadinessChecks } from '@tollgate/platform';
import { Profile } from '@tollgate/profiles';
import { AccountViews } from './account-views';
import { AccountsGrpcController } from './accounts.grpc.controller';
import { ActiveProfile, QueryHttpController } from './query.http.controller';

/** Wiring only. Readiness is PostgreSQL: the query service reads, it neither consumes nor produces. */
@Module({})
export class QueryModule {
  static register(deps: { ds: DataSource; views: AccountViews; auth: KeyAuthenticator; profile: Profile }): DynamicModule {
    return {
      module: QueryModule,
      controllers: [QueryHttpController, AccountsGrpcController, HealthController],
      providers: [
        { provide: AccountViews, useValue: deps.views },
        { provide: KeyAuthenticator, useValue: deps.auth },
        { provide: ActiveProfile, useValue: deps.profile },
        { provide: ReadinessChecks, useValue: [{ name: 'postgres', check: async () => (await deps.ds.query('SELECT 1')).length === 1 }] },
      ],
    };
  }
}
