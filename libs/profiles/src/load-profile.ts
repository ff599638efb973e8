import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseProfile } from './parse-profile';
import { ProfileError } from './profile-error';
import { Profile } from './profile.types';

/**
 * Where profiles live: `TOLLGATE_PROFILES_DIR`, else `<repo root>/config/profiles`. The root is found by walking
 * up to the `package.json` named `tollgate`, which works from the sources (ts-jest) and from
 * `dist/libs/profiles/src` alike.
 */
export function profilesDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.TOLLGATE_PROFILES_DIR;
  if (fromEnv) return fromEnv;
  for (let dir = __dirname; ; dir = dirname(dir)) {
    if (isRepoRoot(dir)) return join(dir, 'config', 'profiles');
    if (dirname(dir) === dir) break;
  }
  throw new ProfileError(__dirname, '(dir)', 'no package.json named "tollgate" above this directory; set TOLLGATE_PROFILES_DIR');
}

function isRepoRoot(dir: string): boolean {
  const manifest = join(dir, 'package.json');
  if (!existsSync(manifest)) return false;
  try {
    return (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'tollgate';
  } catch {
    return false;
  }
}

/** The names of the profiles in a directory (`<name>.yaml`), sorted. */
export function profileNames(dir: string = profilesDir()): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -'.yaml'.length))
    .sort();
}

/** Reads and validates `<dir>/<name>.yaml`; the file's `name` must be the file name. */
export function loadProfile(name: string, dir: string = profilesDir()): Profile {
  const file = join(dir, `${name}.yaml`);
  if (!/^[a-z][a-z0-9_-]*$/.test(name) || !existsSync(file)) {
    throw new ProfileError(file, '(file)', `not found; known profiles: ${profileNames(dir).join(', ') || `none in ${dir}`}`);
  }
  const profile = parseProfile(readFileSync(file, 'utf8'), file);
  if (profile.name !== name) throw new ProfileError(file, 'name', `is "${profile.name}" but the file is ${name}.yaml; they must agree`);
  return profile;
}

/** Every profile in a directory, by name. A single invalid file fails the whole load. */
export function loadAllProfiles(dir: string = profilesDir()): Map<string, Profile> {
  if (!existsSync(dir)) throw new ProfileError(dir, '(dir)', 'not found; set TOLLGATE_PROFILES_DIR or create config/profiles');
  return new Map(profileNames(dir).map((name) => [name, loadProfile(name, dir)]));
}
