import { IsIn, IsISO8601, IsOptional, IsString, Matches } from 'class-validator';
import { IsText, IsWholeNumber } from '@tollgate/platform';

const idPattern = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Most credits one grant may add: a typo's extra zeros are refused, not granted. */
export const MaxGrantAmount = 1_000_000_000;

export class CreateOrgDto {
  @IsOptional()
  @IsString()
  @Matches(idPattern, { message: 'id must be 1-63 lower-case letters, digits, "_" or "-", starting with a letter or digit' })
  id?: string;

  @IsText(1, 200)
  name!: string;

  @IsText(1, 64)
  plan!: string;

  /** Defaults to the metering service's active profile (TOLLGATE_PROFILE). */
  @IsOptional()
  @IsText(1, 64)
  profile?: string;
}

export class CreateKeyDto {
  @IsOptional()
  @IsText(1, 200)
  name?: string;

  @IsOptional()
  @IsIn(['key', 'user'])
  kind?: 'key' | 'user';
}

export class GrantCreditsDto {
  // A JSON number, not a string that looks like one: money amounts are never guessed.
  @IsWholeNumber(1, MaxGrantAmount)
  amount!: number;

  @IsText(1, 500)
  reason!: string;

  /** Printable ASCII without spaces: it is shown, typed and compared as it is (Stripe's keys are the same kind). */
  @IsText(1, 200)
  @Matches(/^[\x21-\x7e]*$/, { message: 'must be printable ASCII without spaces' })
  idempotency_key!: string;

  /** An instant in the future, ISO 8601 with a four-digit year (checked further by the grant). */
  @IsOptional()
  @IsISO8601({ strict: true })
  expires_at?: string;
}

export class ChangePlanDto {
  @IsText(1, 64)
  plan!: string;
}
