import { InitialSchema1732300000000 } from './1732300000000-InitialSchema';

/** Every migration, oldest first. `npm run migration:generate -- <Name>` adds new ones here. */
export const migrations = [InitialSchema1732300000000];
