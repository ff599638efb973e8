/**
 * SQL for the ledger and its projections. Every function takes the transaction's EntityManager and does one
 * round trip, whatever the number of rows (arrays through unnest): metering writes a whole Kafka batch with
 * a handful of statements. Split by table: sql.ts (prepared statements, composed writes), account-rows.ts
 * (accounts, ledger entries, outbox), usage-rows.ts (usage rows, counts, windows), reservation-rows.ts,
 * offset-rows.ts; metering-store.ts loads a batch's state and writes what meterBatch returns.
 */
export * from './sql';
export * from './account-rows';
export * from './usage-rows';
export * from './reservation-rows';
export * from './offset-rows';
export * from './metering-store';
