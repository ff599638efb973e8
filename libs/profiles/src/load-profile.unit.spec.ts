import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAllProfiles, loadProfile, profileNames, profilesDir } from './load-profile';
import { rejection } from './testing/rejection';

// Works on a scratch copy of a shipped profile in a temporary directory.
const shipped = profilesDir({});
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-profiles-'));
  copyFileSync(join(shipped, 'trace.yaml'), join(dir, 'trace.yaml'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('profilesDir', () => {
  it('given no TOLLGATE_PROFILES_DIR, then it is config/profiles under the repository root', () => {
    expect(shipped.endsWith(join('config', 'profiles'))).toBe(true);
    expect(JSON.parse(readFileSync(join(shipped, '..', '..', 'package.json'), 'utf8')).name).toBe('tollgate');
  });

  it('given TOLLGATE_PROFILES_DIR, then it wins', () => {
    expect(profilesDir({ TOLLGATE_PROFILES_DIR: '/etc/tollgate/profiles' })).toBe('/etc/tollgate/profiles');
  });
});

describe('loadProfile', () => {
  it('given an existing profile, then it loads with the file as its source', () => {
    const p = loadProfile('trace', dir);
    expect(p.name).toBe('trace');
    expect(p.source).toBe(join(dir, 'trace.yaml'));
  });

  it('given a missing profile, then the error names the file and lists the known profiles', () => {
    const e = rejection(() => loadProfile('trakt', dir));
    expect([e.file, e.key, e.problem]).toEqual([join(dir, 'trakt.yaml'), '(file)', 'not found; known profiles: trace']);
  });

  it('given a name that is not a profile name, then it is not found rather than read from elsewhere', () => {
    expect(rejection(() => loadProfile('../trace', dir)).key).toBe('(file)');
  });

  it('given a file whose name key differs from its file name, then it is rejected at name', () => {
    writeFileSync(join(dir, 'copy.yaml'), readFileSync(join(dir, 'trace.yaml')));
    const e = rejection(() => loadProfile('copy', dir));
    expect([e.key, e.problem]).toEqual(['name', 'is "trace" but the file is copy.yaml; they must agree']);
  });
});

describe('loadAllProfiles', () => {
  it('given a directory, then every .yaml is loaded by name and other files are ignored', () => {
    writeFileSync(join(dir, 'notes.txt'), 'not a profile');
    expect([...loadAllProfiles(dir).keys()]).toEqual(['trace']);
    expect(profileNames(dir)).toEqual(['trace']);
  });

  it('given one invalid profile, then the whole load fails naming it', () => {
    writeFileSync(join(dir, 'broken.yaml'), 'name: broken\n');
    const e = rejection(() => loadAllProfiles(dir));
    expect(e.file).toBe(join(dir, 'broken.yaml'));
  });

  it('given a missing directory, then it says so', () => {
    expect(rejection(() => loadAllProfiles(join(dir, 'nope'))).key).toBe('(dir)');
  });
});
