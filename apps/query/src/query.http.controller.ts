import { Controller, Get, HttpException, Inject, Query, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiQuery, ApiTags } from '@nestjs/swagger';
import { Request } from 'express';
import { extractCredentials, KeyAuthenticator, Principal } from '@tollgate/persistence';
import { fieldError } from '@tollgate/platform';
import { Profile } from '@tollgate/profiles';
import { AccountViews, parseUsageParams } from './account-views';

export const ActiveProfile = Symbol('ActiveProfile');

/** `/me` and `/usage` under the profile's base path (set as the global prefix). No rate limits here. */
@ApiTags('query')
@ApiBearerAuth()
@Controller()
export class QueryHttpController {
  constructor(
    private readonly views: AccountViews,
    private readonly auth: KeyAuthenticator,
    @Inject(ActiveProfile) private readonly profile: Profile,
  ) {}

  @Get('me')
  async me(@Req() req: Request) {
    return this.views.me(await this.principal(req));
  }

  @Get('usage')
  @ApiQuery({ name: 'limit', required: false, description: '1..500, default 50' })
  @ApiQuery({ name: 'offset', required: false, description: '0..2^53 - 1, default 0' })
  @ApiQuery({ name: 'cursor', required: false, description: 'next_cursor of a previous page (fast at any depth)' })
  async usage(@Req() req: Request, @Query() query: Record<string, unknown>) {
    const principal = await this.principal(req);
    const parsed = parseUsageParams(query);
    if (!parsed.ok) throw fieldError(parsed.field, parsed.problem);
    return this.views.usage(principal, parsed.params);
  }

  private async principal(req: Request): Promise<Principal> {
    const result = await this.auth.authenticate(extractCredentials(this.profile.identity, req.headers));
    if (!result.ok) throw new HttpException(this.profile.errors.unauthorized, 401);
    return result.principal;
  }
}
