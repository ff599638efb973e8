/**
 * The ledger as metering writes it and the operator's tools read and re-run it: the store (row mappings, locks,
 * writes, and the store around billing's meterBatch), the request-completed consumer, the profile catalog and the dead-letter store.
 * Shared by apps/metering (the service) and the operator's tools (libs/operations; apps/cli for dlq), so no app imports
 * another.
 */
export * from './ledger-store';
export * from './request-completed.consumer';
export * from './profile-catalog';
export * from './dead-letter-store';
