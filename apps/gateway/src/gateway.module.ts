import { DynamicModule, Module } from '@nestjs/common';
import { HealthController, MetricsAccess, MetricsAccessPolicy, ReadinessCheck, ReadinessChecks } from '@tollgate/platform';

/**
 * The gateway's Nest part is only health, metrics and docs; calls go through GatewayPipeline, a plain node:http
 * handler that main.ts's server gives every request under the profile's base path, so Nest and Express are never on
 * a paid call's path. Its port is the public one, so /metrics there follows the public-port policy (main.ts).
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
