import { IsIn, IsInt, IsISO8601, IsOptional, IsString, Length, Matches, Max, Min } from 'class-validator';

const idPattern = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export class CreateOrgDto {
  @IsOptional()
  @IsString()
  @Matches(idPattern, { message: 'id must be 1-63 lower-case letters, digits, "_" or "-", starting with a letter or digit' })
  id?: string;

  @IsString()
  @Length(1, 200)
  name!: string;

  @IsString()
  @Length(1, 64)
  plan!: string;

  /** Defaults to the metering service's active profile (TOLLGATE_PROFILE). */
  @IsOptional()
  @IsString()
  @Length(1, 64)
  profile?: string;
}

export class CreateKeyDto {
  @IsOptional()
  @IsString()
  @Length(1, 200)
  name?: string;

  @IsOptional()
  @IsIn(['key', 'user'])
  kind?: 'key' | 'user';
}

export class GrantCreditsDto {
  // A JSON number, not a string that looks like one: money amounts are never guessed.
  @IsInt()
  @Min(1)
  @Max(1_000_000_000)
  amount!: number;

  @IsString()
  @Length(1, 500)
  reason!: string;

  @IsString()
  @Length(1, 200)
  idempotency_key!: string;

  @IsOptional()
  @IsISO8601({ strict: true })
  expires_at?: string;
}

export class ChangePlanDto {
  @IsString()
  @Length(1, 64)
  plan!: string;
}
