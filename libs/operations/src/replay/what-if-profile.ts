import { readFileSync } from 'node:fs';
import { parseProfile, Profile, ProfileError } from '@tollgate/profiles';
import { ProfileCatalog } from '@tollgate/ledger';

/**
 * The catalog a what-if replay prices with: the shipped profiles, with the one FILE describes put in place of the
 * shipped profile of the same `name`; a FILE whose name no shipped profile has stands in for the active profile
 * (TOLLGATE_PROFILE), so `name: trackyard-doubled` prices trackyard's orgs. A bad file throws a ProfileError
 * naming the file, the key and the problem.
 */
export function whatIfCatalog(file: string, activeName: string, shipped: ProfileCatalog = ProfileCatalog.load(activeName)): { catalog: ProfileCatalog; replaces: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ProfileError(file, '(file)', `cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const parsed = parseProfile(text, file);
  const replaces = shipped.get(parsed.name) ? parsed.name : activeName;
  const profile: Profile = { ...parsed, name: replaces };
  const others = [...shipped.names()].filter((n) => n !== replaces).map((n) => shipped.get(n)!);
  return { catalog: new ProfileCatalog(profile, others), replaces };
}
