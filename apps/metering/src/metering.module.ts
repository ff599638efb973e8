import { DynamicModule, Module } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Messaging } from '@tollgate/messaging';
import { HealthController, ReadinessChecks } from '@tollgate/platform';
import { AdminController } from './admin/admin.controller';
import { AdminToken, AdminTokenGuard } from './admin/admin.guard';
import { AdminService } from './admin/admin.service';
import { AdminViews } from './admin/admin-views';
import { AdminViewsController } from './admin/admin-views.controller';
import { ConsoleController } from './console/console.controller';
import { WebhooksController } from './webhooks/webhooks.controller';
import { WebhooksService } from './webhooks/webhooks.service';

export interface MeteringDeps {
  ds: DataSource;
  messaging: Messaging;
  admin: AdminService;
  webhooks: WebhooksService;
  adminToken: string;
  /** The ledger consumer is in its group and making progress (ConsumerStallWatch): a metering that is not consuming is not ready. */
  consuming: () => boolean;
}

/** Wiring only: the services are built in main.ts from the infrastructure they need. */
@Module({})
export class MeteringModule {
  static register(deps: MeteringDeps): DynamicModule {
    return {
      module: MeteringModule,
      controllers: [AdminController, AdminViewsController, WebhooksController, ConsoleController, HealthController],
      providers: [
        { provide: AdminService, useValue: deps.admin },
        { provide: WebhooksService, useValue: deps.webhooks },
        { provide: AdminViews, useFactory: () => { const v = new AdminViews(deps.ds); v.startSampling(); return v; } },
        { provide: AdminToken, useValue: deps.adminToken },
        AdminTokenGuard,
        {
          provide: ReadinessChecks,
          useValue: [
            { name: 'postgres', check: async () => (await deps.ds.query('SELECT 1')).length === 1 },
            { name: 'kafka', check: () => deps.messaging.ping() },
            { name: 'consumer', check: () => Promise.resolve(deps.consuming()) },
          ],
        },
      ],
    };
  }
}
