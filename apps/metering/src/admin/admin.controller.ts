import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put, Query, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { AdminTokenGuard } from './admin.guard';
import { ChangePlanDto, CreateKeyDto, CreateOrgDto, GrantCreditsDto, LedgerQueryDto } from './admin.dto';
import { AdminService } from './admin.service';

@ApiTags('admin')
@ApiBearerAuth()
@UseGuards(AdminTokenGuard)
@Controller('admin')
export class AdminController {
  constructor(private readonly admin: AdminService) {}

  @Post('orgs')
  createOrg(@Body() dto: CreateOrgDto) {
    return this.admin.createOrg(dto);
  }

  @Get('orgs/:org')
  getOrg(@Param('org') org: string) {
    return this.admin.getOrg(org);
  }

  @Post('orgs/:org/keys')
  createKey(@Param('org') org: string, @Body() dto: CreateKeyDto) {
    return this.admin.createKey(org, dto);
  }

  @Delete('keys/:id')
  @HttpCode(204)
  async revokeKey(@Param('id') id: string): Promise<void> {
    await this.admin.revokeKey(id);
  }

  @Post('orgs/:org/credits')
  grantCredits(@Param('org') org: string, @Body() dto: GrantCreditsDto) {
    return this.admin.grantCredits(org, dto);
  }

  @Put('orgs/:org/plan')
  changePlan(@Param('org') org: string, @Body() dto: ChangePlanDto) {
    return this.admin.changePlan(org, dto);
  }

  @Put('orgs/:org/limits')
  setLimits(@Param('org') org: string, @Body() body: unknown) {
    return this.admin.setLimits(org, body);
  }

  @Get('orgs/:org/limits')
  getLimits(@Param('org') org: string) {
    return this.admin.getLimits(org);
  }

  @Get('orgs/:org/ledger')
  ledger(@Param('org') org: string, @Query() q: LedgerQueryDto) {
    return this.admin.ledger(org, q.after, q.limit);
  }
}
