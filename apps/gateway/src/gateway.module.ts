import { DynamicModule, Module } from '@nestjs/common';
import { HealthController, MetricsAccess, MetricsAccessPolicy, ReadinessCheck, ReadinessChecks } from '@tollgate/platform';

/**
 * The gateway's Nest part is only health and metrics; calls go through GatewayPipeline (an Express handler). Its
 * port is the public one, so /metrics there follows the public-port policy (main.ts).
 */
@Module({})
export class GatewayModule {
  static register(checks: ReadinessCheck[], metrics: MetricsAccess): DynamicModule {
    return {
      module: GatewayModule,
      controllers: [HealthController],
      providers: [{ provide: ReadinessChecks, useValue: checks }, { provide: MetricsAccessPolicy, useValue: metrics }],
    };
  }
}
