import { Body, Controller, createParamDecorator, Delete, ExecutionContext, Get, HttpCode, Post, Put, Query, UseGuards, UseInterceptors } from '@nestjs/common';
import { PathId } from '@tollgate/platform';
import { ApiBearerAuth, ApiHeader, ApiTags } from '@nestjs/swagger';
import { AdminTokenGuard } from './admin.guard';
import { ChangePlanDto, CreateKeyDto, CreateOrgDto, GrantCreditsDto } from './admin.dto';
import { AdminService } from './admin.service';
import { ActorHeader, parseActor } from './admin-commands';
import { AfterPageQueryDto } from './paging.dto';
import { CommandIdInterceptor } from './command-id.interceptor';

/** Who issued the command: `X-Tollgate-Actor` (validated; 400 naming it), else the admin token's holder. Read after the guard. */
export const Actor = createParamDecorator((_: unknown, ctx: ExecutionContext) =>
  parseActor(ctx.switchToHttp().getRequest<{ headers: Record<string, string | string[] | undefined> }>().headers[ActorHeader]),
);

@ApiTags('admin')
@ApiBearerAuth()
@ApiHeader({ name: 'X-Tollgate-Actor', required: false, description: 'Who issues the command (1-128 characters, no control characters); recorded with it. Default: admin-token.' })
@UseGuards(AdminTokenGuard)
@UseInterceptors(CommandIdInterceptor)
@Controller('admin')
export class AdminController {
  constructor(private readonly admin: AdminService) {}

  @Post('orgs')
  createOrg(@Body() dto: CreateOrgDto, @Actor() actor: string) {
    return this.admin.createOrg(dto, actor);
  }

  @Get('orgs/:org')
  getOrg(@PathId('org') org: string) {
    return this.admin.getOrg(org);
  }

  @Post('orgs/:org/keys')
  createKey(@PathId('org') org: string, @Body() dto: CreateKeyDto, @Actor() actor: string) {
    return this.admin.createKey(org, dto, actor);
  }

  @Delete('keys/:id')
  @HttpCode(204)
  revokeKey(@PathId('id') id: string, @Actor() actor: string) {
    // 204: no body is sent; the command id goes out as a header.
    return this.admin.revokeKey(id, actor);
  }

  @Post('orgs/:org/credits')
  grantCredits(@PathId('org') org: string, @Body() dto: GrantCreditsDto, @Actor() actor: string) {
    return this.admin.grantCredits(org, dto, actor);
  }

  @Put('orgs/:org/plan')
  changePlan(@PathId('org') org: string, @Body() dto: ChangePlanDto, @Actor() actor: string) {
    return this.admin.changePlan(org, dto, actor);
  }

  @Put('orgs/:org/limits')
  setLimits(@PathId('org') org: string, @Body() body: unknown, @Actor() actor: string) {
    return this.admin.setLimits(org, body, actor);
  }

  @Get('orgs/:org/limits')
  getLimits(@PathId('org') org: string) {
    return this.admin.getLimits(org);
  }

  @Get('orgs/:org/ledger')
  ledger(@PathId('org') org: string, @Query() q: AfterPageQueryDto) {
    return this.admin.ledger(org, q.after, q.limit);
  }
}
