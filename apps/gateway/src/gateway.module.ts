import { DynamicModule, Module } from '@nestjs/common';
import { HealthController, ReadinessCheck, ReadinessChecks } from '@tollgate/platform';

/** The gateway's Nest part is only health and metrics; calls go through GatewayPipeline (an Express handler). */
@Module({})
export class GatewayModule {
  static register(checks: ReadinessCheck[]): DynamicModule {
    return { module: GatewayModule, controllers: [HealthController], providers: [{ provide: ReadinessChecks, useValue: checks }] };
  }
}
