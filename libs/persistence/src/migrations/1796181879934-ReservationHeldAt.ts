import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * When each hold was taken, on the database's clock (clock_timestamp(): the insert's own instant, after the
 * account lock was waited for, not the transaction's start). The sweeper releases a hold by time only once the
 * consumer has read every event published up to `held_at` + the gateway's publish window (see HoldSweeper).
 * Holds that exist when this runs get the migration's time: later than they were taken, so they are only kept
 * longer.
 */
export class ReservationHeldAt1796181879934 implements MigrationInterface {
  name = 'ReservationHeldAt1796181879934';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE reservations ADD COLUMN held_at timestamptz NOT NULL DEFAULT clock_timestamp()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE reservations DROP COLUMN held_at`);
  }
}
