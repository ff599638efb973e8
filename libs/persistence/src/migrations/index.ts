import { InitialSchema1732300000000 } from './1732300000000-InitialSchema';
import { DeadLetters1796181840252 } from './1796181840252-DeadLetters';
import { ReservationHeldAt1796181879934 } from './1796181879934-ReservationHeldAt';
import { AdminCommandRecord1796192278455 } from './1796192278455-AdminCommandRecord';
import { OrgLeadingKeys1796192335631 } from './1796192335631-OrgLeadingKeys';
import { UsageChargedEntities1796194700000 } from './1796194700000-UsageChargedEntities';
import { OptimisticWriteGuard1796215499771 } from './1796215499771-OptimisticWriteGuard';
import { Webhooks1796619983943 } from './1796619983943-Webhooks';
import { CreditLeases1796629446925 } from './1796629446925-CreditLeases';
import { ClearAlerts1796700000000 } from './1796700000000-ClearAlerts';
import { SlimLedgerOutbox1796710000000 } from './1796710000000-SlimLedgerOutbox';
import { WebhookAlertsRotation1796630655981 } from './1796630655981-WebhookAlertsRotation';

/** Every migration, oldest first. `npm run migration:generate -- <Name>` adds new ones here. */
export const migrations = [
  InitialSchema1732300000000,
  DeadLetters1796181840252,
  ReservationHeldAt1796181879934,
  AdminCommandRecord1796192278455,
  OrgLeadingKeys1796192335631,
  UsageChargedEntities1796194700000,
  OptimisticWriteGuard1796215499771,
  Webhooks1796619983943,
  CreditLeases1796629446925,
  WebhookAlertsRotation1796630655981,
  ClearAlerts1796700000000,
  SlimLedgerOutbox1796710000000,
];
