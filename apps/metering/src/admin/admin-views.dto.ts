import { IsIn, IsOptional } from 'class-validator';
import { IsText, QueryWholeNumber } from '@tollgate/platform';
import { OffsetPageQueryDto, PageLimitDto } from './paging.dto';

export const OrgSorts = ['id', 'name', 'plan', 'balance', 'used_this_month', 'calls_today', 'last_call_at', 'created_at'] as const;
export type OrgSort = (typeof OrgSorts)[number];

/** `GET /admin/orgs`: search, sort and page the orgs. */
export class ListOrgsQueryDto extends OffsetPageQueryDto {
  /** Matches the id or the name, case-insensitively, anywhere in it. */
  @IsOptional()
  @IsText(1, 200)
  search?: string;

  @IsOptional()
  @IsIn(OrgSorts)
  sort?: OrgSort;

  @IsOptional()
  @IsIn(['asc', 'desc'])
  order?: 'asc' | 'desc';
}

/** `GET /admin/orgs/:org/usage`: the org's calls, newest first (what `/usage` shows its end users). */
export class OrgUsageQueryDto extends OffsetPageQueryDto {}

/** `GET /admin/orgs/:org/entries`: the ledger newest first, each entry with the call or command behind it. */
export class LedgerEntriesQueryDto extends PageLimitDto {
  /** Entries with a sequence number below this one (the previous page's last `seq`); omitted: the newest. */
  @IsOptional()
  @QueryWholeNumber(1)
  before?: number;
}

/** `GET /admin/orgs/:org/activity`: calls per hour (the last 48 hours) or per day (the last 31 days), and the balance. */
export class ActivityQueryDto {
  @IsOptional()
  @IsIn(['hour', 'day'])
  bucket?: 'hour' | 'day';
}
