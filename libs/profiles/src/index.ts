export * from './profile.types';
export { ProfileError } from './profile-error';
export { parseProfile } from './parse-profile';
export { loadAllProfiles, loadProfile, profileNames, profilesDir } from './load-profile';
export { canonicalPath, expandUpstreamPath, RouteTable } from './route-table';
export type { CanonicalPath, PathRefusal, RouteMatch } from './route-table';
export { readEntityIds } from './entity-ids';
export { errorBodyVariables, renderErrorBody } from './error-bodies';
