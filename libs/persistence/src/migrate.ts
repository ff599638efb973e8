import { connectDatabase, databaseUrl, redactUrl } from './data-source';

/** `npm run migration:run`: applies pending migrations to DATABASE_URL. */
async function main(): Promise<void> {
  const ds = await connectDatabase({ migrate: true });
  console.warn(`migrations applied to ${redactUrl(databaseUrl())}`);
  await ds.destroy();
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
