import { Type } from 'class-transformer';
import { IsInt, IsOptional, Max, Min } from 'class-validator';

/**
 * The two ways the admin API pages, validated once here: a bad `after`, `limit` or `offset` is a 400 naming it.
 */

/** Rows with a sequence number above `after` (the last one the caller has), at most `limit` (1..500): the ledger, the history. */
export class AfterPageQueryDto {
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  after?: number;

  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(500)
  limit?: number;
}

/** `limit` rows (1..500) from `offset` (0 or more): lists whose rows have no sequence of their own. */
export class OffsetPageQueryDto {
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(500)
  limit?: number;

  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  offset?: number;
}
