import { Controller, Get, Header, Headers, HttpCode, Inject, Optional, ServiceUnavailableException, UnauthorizedException } from '@nestjs/common';
import { MetricsAccess, metricsAccess, MetricsAccessPolicy, mayReadMetrics } from './metrics-access';
import { registry } from './metrics';

/** Each app provides what readiness means for it (Kafka and PostgreSQL answering, for most). */
export const ReadinessChecks = Symbol('ReadinessChecks');
export type ReadinessCheck = { name: string; check: () => Promise<boolean> };

@Controller()
export class HealthController {
  private readonly metricsAccess: MetricsAccess;

  /** Health is public; /metrics follows `MetricsAccessPolicy` (an app on an internal port by default). */
  constructor(
    @Inject(ReadinessChecks) private readonly checks: ReadinessCheck[],
    @Optional() @Inject(MetricsAccessPolicy) access?: MetricsAccess,
  ) {
    this.metricsAccess = access ?? metricsAccess(process.env, { publicPort: false });
  }

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
  metrics(@Headers('authorization') authorization: string | undefined) {
    if (!mayReadMetrics(this.metricsAccess, authorization)) {
      const why = this.metricsAccess.digest ? 'missing or wrong Authorization: Bearer <TOLLGATE_METRICS_TOKEN>' : 'set TOLLGATE_METRICS_TOKEN to read them on this port';
      throw new UnauthorizedException({ error: 'unauthorized', message: `metrics: ${why}` });
    }
    return registry.metrics();
  }
}
