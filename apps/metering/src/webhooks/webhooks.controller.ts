import { Body, Controller, Delete, Get, HttpCode, Post, Put, Query, UseGuards, UseInterceptors } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { PathId } from '@tollgate/platform';
import { Actor } from '../admin/admin.controller';
import { AdminTokenGuard } from '../admin/admin.guard';
import { CommandIdInterceptor } from '../admin/command-id.interceptor';
import { CreateWebhookDto, DeliveriesQueryDto, ResendDto, RotateSecretDto, SetAlertsDto, WebhooksQueryDto } from './webhooks.dto';
import { WebhooksService } from './webhooks.service';

/** SPEC §8, alerts and webhooks. */
@ApiTags('admin')
@ApiBearerAuth()
@UseGuards(AdminTokenGuard)
@UseInterceptors(CommandIdInterceptor)
@Controller('admin')
export class WebhooksController {
  constructor(private readonly webhooks: WebhooksService) {}

  @Put('orgs/:org/alerts')
  setAlerts(@PathId('org') org: string, @Body() dto: SetAlertsDto, @Actor() actor: string) {
    return this.webhooks.setAlerts(org, dto, actor);
  }

  /** The org's own thresholds removed: its plan's apply again. */
  @Delete('orgs/:org/alerts')
  @HttpCode(200)
  clearAlerts(@PathId('org') org: string, @Actor() actor: string) {
    return this.webhooks.clearAlerts(org, actor);
  }

  @Get('orgs/:org/alerts')
  getAlerts(@PathId('org') org: string) {
    return this.webhooks.getAlerts(org);
  }

  @Put('plans/:plan/alerts')
  setPlanAlerts(@PathId('plan') plan: string, @Body() dto: SetAlertsDto, @Actor() actor: string) {
    return this.webhooks.setPlanAlerts(plan, dto, actor);
  }

  @Get('plans/:plan/alerts')
  getPlanAlerts(@PathId('plan') plan: string) {
    return this.webhooks.getPlanAlerts(plan);
  }

  @Post('webhooks')
  create(@Body() dto: CreateWebhookDto, @Actor() actor: string) {
    return this.webhooks.create(dto, actor);
  }

  @Get('webhooks')
  list(@Query() q: WebhooksQueryDto) {
    return this.webhooks.list(q.org_id);
  }

  @Delete('webhooks/:id')
  @HttpCode(204)
  remove(@PathId('id') id: string, @Actor() actor: string) {
    return this.webhooks.remove(id, actor);
  }

  @Post('webhooks/:id/rotate-secret')
  @HttpCode(200)
  rotateSecret(@PathId('id') id: string, @Body() dto: RotateSecretDto, @Actor() actor: string) {
    return this.webhooks.rotateSecret(id, dto, actor);
  }

  @Get('webhooks/:id/deliveries')
  deliveries(@PathId('id') id: string, @Query() q: DeliveriesQueryDto) {
    return this.webhooks.deliveries(id, q.limit);
  }

  @Post('webhooks/:id/resend')
  @HttpCode(202)
  resend(@PathId('id') id: string, @Body() dto: ResendDto, @Actor() actor: string) {
    return this.webhooks.resend(id, dto, actor);
  }
}
