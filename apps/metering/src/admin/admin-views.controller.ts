import { Controller, Get, Query, UseGuards } from '@nestjs/common';
import { PathId } from '@tollgate/platform';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { AdminTokenGuard } from './admin.guard';
import { ActivityQueryDto, LedgerEntriesQueryDto, ListOrgsQueryDto, OrgUsageQueryDto } from './admin-views.dto';
import { AdminViews } from './admin-views';
import { AfterPageQueryDto } from './paging.dto';

/** Read-only admin views for operators (CLI and console): lists, usage, keys, history, activity and the system. */
@ApiTags('admin')
@ApiBearerAuth()
@UseGuards(AdminTokenGuard)
@Controller('admin')
export class AdminViewsController {
  constructor(private readonly views: AdminViews) {}

  @Get('orgs')
  listOrgs(@Query() q: ListOrgsQueryDto) {
    return this.views.listOrgs(q);
  }

  @Get('orgs/:org/usage')
  usage(@PathId('org') org: string, @Query() q: OrgUsageQueryDto) {
    return this.views.usage(org, q.limit, q.offset);
  }

  @Get('orgs/:org/keys')
  keys(@PathId('org') org: string) {
    return this.views.keys(org);
  }

  @Get('orgs/:org/entries')
  entries(@PathId('org') org: string, @Query() q: LedgerEntriesQueryDto) {
    return this.views.entries(org, q.before, q.limit);
  }

  /** The org's operator commands, oldest first: who did what when, and the ledger entries each appended. */
  @Get('orgs/:org/history')
  history(@PathId('org') org: string, @Query() q: AfterPageQueryDto) {
    return this.views.history(org, q.after, q.limit);
  }

  @Get('orgs/:org/activity')
  activity(@PathId('org') org: string, @Query() q: ActivityQueryDto) {
    return this.views.activity(org, q.bucket);
  }

  @Get('system')
  system() {
    return this.views.system();
  }
}
