import { ArrayMaxSize, IsArray, IsIn, IsISO8601, IsOptional, IsString, Matches } from 'class-validator';
import { IsText, IsWholeNumber } from '@tollgate/platform';
import { PageLimitDto } from '../admin/paging.dto';
import { EventTypes } from './notifications';

/** The most thresholds of one kind an org may set: a handful is what anyone needs; more is a mistake. */
export const MaxThresholds = 10;

export class SetAlertsDto {
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(MaxThresholds)
  @IsWholeNumber(1, 1_000_000_000_000, { each: true })
  credits_below?: number[];

  @IsOptional()
  @IsArray()
  @ArrayMaxSize(MaxThresholds)
  @IsWholeNumber(1, 100, { each: true })
  allowance_used_percent?: number[];
}

export class CreateWebhookDto {
  @IsText(1, 2000)
  url!: string;

  @IsArray()
  @ArrayMaxSize(EventTypes.length)
  @IsIn(EventTypes, { each: true, message: `each value in events must be one of ${EventTypes.join(', ')}` })
  events!: string[];

  /** The org whose notifications it receives; absent or null: every org's. */
  @IsOptional()
  @IsString()
  @Matches(/^[a-z0-9][a-z0-9_-]{0,62}$/, { message: 'org_id must be an org id' })
  org_id?: string | null;
}

export class RotateSecretDto {
  /** How long the old secret still signs beside the new one: 0 (not at all) to 7 days; default a day. */
  @IsOptional()
  @IsWholeNumber(0, 7 * 24 * 60 * 60)
  overlap_seconds?: number;
}

export class ResendDto {
  /** One message (its webhook-id)… */
  @IsOptional()
  @IsText(1, 200)
  msg_id?: string;

  /** …or every message queued for the endpoint since this instant. */
  @IsOptional()
  @IsISO8601({ strict: true })
  since?: string;
}

/** `GET /admin/webhooks/:id/deliveries?limit=N`: the newest N attempts (1..500). */
export class DeliveriesQueryDto extends PageLimitDto {}

/** `GET /admin/webhooks?org_id=ORG`: the org's endpoints and the global ones; without it, all. */
export class WebhooksQueryDto {
  @IsOptional()
  @IsText(1, 200)
  org_id?: string;
}
