import { Controller, Get, Header, HttpCode, Inject, ServiceUnavailableException } from '@nestjs/common';
import { registry } from './metrics';

/** Each app provides what readiness means for it (Kafka and PostgreSQL answering, for most). */
export const ReadinessChecks = Symbol('ReadinessChecks');
export type ReadinessCheck = { name: string; check: () => Promise<boolean> };

@Controller()
export class HealthController {
  constructor(@Inject(ReadinessChecks) private readonly checks: ReadinessCheck[]) {}

  @Get('health/live')
  live() {
    return { status: 'ok' };
  }

  @Get('health/ready')
  @HttpCode(200)
  async ready() {
    const results = await Promise.all(this.checks.map(async (c) => [c.name, await c.check().catch(() => false)] as const));
    const body = { status: results.every(([, ok]) => ok) ? 'ok' : 'unavailable', checks: Object.fromEntries(results.map(([n, ok]) => [n, ok ? 'up' : 'down'])) };
    if (body.status !== 'ok') throw new ServiceUnavailableException(body);
    return body;
  }

  @Get('metrics')
  @Header('Content-Type', registry.contentType)
  metrics() {
    return registry.metrics();
  }
}
