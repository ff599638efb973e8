import { Controller } from '@nestjs/common';
import { GrpcMethod, RpcException } from '@nestjs/microservices';
import { Metadata, status } from '@grpc/grpc-js';
import { KeyAuthenticator, Principal } from '@tollgate/persistence';
import { AccountViews, parseUsageParams } from './account-views';

/**
 * tollgate.query.v1.Accounts. The caller's API key in the `authorization` metadata decides the org; no request
 * field names an org, so a key can only ever read its own.
 */
@Controller()
export class AccountsGrpcController {
  constructor(
    private readonly views: AccountViews,
    private readonly auth: KeyAuthenticator,
  ) {}

  @GrpcMethod('Accounts', 'GetAccount')
  async getAccount(_req: unknown, metadata: Metadata) {
    const principal = await this.principal(metadata);
    const me = await this.views.me(principal);
    return {
      orgId: principal.orgId,
      tier: me.tier,
      creditsRemaining: me.credits_remaining,
      monthlyAllowance: me.monthly_allowance,
      requestsPerMinute: me.rate_limit.requests_per_minute ?? 0,
      requestsPerDay: me.rate_limit.requests_per_day ?? 0,
    };
  }

  @GrpcMethod('Accounts', 'ListUsage')
  async listUsage(req: { limit: number; offset: number; cursor: string }, metadata: Metadata) {
    const principal = await this.principal(metadata);
    const parsed = parseUsageParams({ limit: req.limit || undefined, offset: req.offset || undefined, cursor: req.cursor || undefined });
    if (!parsed.ok) throw new RpcException({ code: status.INVALID_ARGUMENT, message: `${parsed.field}: ${parsed.problem}` });
    const page = await this.views.usage(principal, parsed.params);
    return {
      usage: page.usage.map((u) => ({
        timestamp: u.timestamp,
        endpoint: u.endpoint,
        statusCode: u.status_code,
        creditsConsumed: u.credits_consumed,
        responseTimeMs: u.response_time_ms,
        requestId: u.request_id ?? '',
        method: u.method,
        costReason: u.cost_reason,
      })),
      totalCount: page.total_count,
      offset: page.offset,
      limit: page.limit,
      nextCursor: page.next_cursor ?? '',
    };
  }

  private async principal(metadata: Metadata): Promise<Principal> {
    const header = metadata.get('authorization')[0];
    const m = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    const result = await this.auth.authenticate({ key: m ? m[1]! : null, userToken: null });
    if (!result.ok) throw new RpcException({ code: status.UNAUTHENTICATED, message: 'missing or invalid API key (metadata authorization: Bearer <key>)' });
    return result.principal;
  }
}
