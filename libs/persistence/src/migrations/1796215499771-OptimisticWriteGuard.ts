import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `tollgate_expect_rows(written, expected)`: the guard of an optimistic write. A composed write (one statement,
 * its own transaction) that updated fewer rows than it read calls it, and the whole statement rolls back with
 * SQLSTATE 40001 (serialization_failure), which the writer answers by deciding again under row locks. Metering's
 * reservations use it: read the accounts without locking, decide, then write only if no account row changed since
 * (its `xmin` is still the one read), in two round trips instead of four (BEGIN, lock, write, COMMIT).
 */
export class OptimisticWriteGuard1796215499771 implements MigrationInterface {
  name = 'OptimisticWriteGuard1796215499771';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION tollgate_expect_rows(written bigint, expected bigint) RETURNS boolean
      LANGUAGE plpgsql AS $$
      BEGIN
        IF written <> expected THEN
          RAISE EXCEPTION 'optimistic write: % of % rows were unchanged since they were read', written, expected
            USING ERRCODE = 'serialization_failure';
        END IF;
        RETURN true;
      END
      $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION tollgate_expect_rows(bigint, bigint)`);
  }
}
