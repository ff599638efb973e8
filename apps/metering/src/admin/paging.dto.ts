import { IsOptional } from 'class-validator';
import { QueryWholeNumber } from '@tollgate/platform';

/**
 * The two ways the admin API pages, validated once here: a bad `after`, `limit` or `offset` (not decimal digits,
 * out of range, past 2^53 - 1 such as 1e20) is a 400 naming it.
 */

/** At most `limit` rows (1..500): what every page of the admin API shares. */
export class PageLimitDto {
  @IsOptional()
  @QueryWholeNumber(1, 500)
  limit?: number;
}

/** Rows with a sequence number above `after` (the last one the caller has), at most `limit`: the ledger, the history. */
export class AfterPageQueryDto extends PageLimitDto {
  @IsOptional()
  @QueryWholeNumber(0)
  after?: number;
}

/** `limit` rows from `offset` (0 or more): lists whose rows have no sequence of their own. */
export class OffsetPageQueryDto extends PageLimitDto {
  @IsOptional()
  @QueryWholeNumber(0)
  offset?: number;
}
