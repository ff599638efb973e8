import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProfileError, profilesDir } from '@tollgate/profiles';
import { CommandQueue, RecordedCommand } from './recorded-commands';
import { whatIfCatalog } from './what-if-profile';

describe('recorded commands around the events', () => {
  const t = (s: number) => Date.UTC(2026, 10, 1) + s * 1000;
  const commands: RecordedCommand[] = [
    { kind: 'create-org', orgId: 'o', at: t(10), plan: 'free', cause: 'admin:create-org:o' },
    { kind: 'grant', orgId: 'o', at: t(20), amount: 5, expiresAt: null, bucketId: 'top_up:k', cause: 'admin:grant:k' },
    { kind: 'change-plan', orgId: 'o', at: t(30), plan: 'pro', cause: 'admin:plan:pro' },
  ];

  it('opens the org before its first event, even one dated earlier, and each command before the first event at or after it', () => {
    const q = new CommandQueue(new Map([['o', commands]]));
    expect(q.due('o', t(5)).map((c) => c.kind)).toEqual(['create-org']);
    expect(q.due('o', t(15))).toEqual([]);
    expect(q.due('o', t(25)).map((c) => c.kind)).toEqual(['grant']);
    expect(q.due('other', t(99))).toEqual([]);
    expect(q.rest().map((c) => c.kind)).toEqual(['change-plan']);
  });

  it('hands out everything due at once, in order', () => {
    const q = new CommandQueue(new Map([['o', commands]]));
    expect(q.due('o', t(30)).map((c) => c.kind)).toEqual(['create-org', 'grant', 'change-plan']);
    expect(q.rest()).toEqual([]);
  });
});

describe('what-if profile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-whatif-unit-'));
  const shipped = readFileSync(join(profilesDir(), 'trackyard.yaml'), 'utf8');

  it('puts the file in place of the shipped profile of the same name', () => {
    const file = join(dir, 'doubled.yaml');
    writeFileSync(file, shipped.replace('cost: { kind: fixed, credits: 1 }', 'cost: { kind: fixed, credits: 2 }'));
    const { catalog, replaces } = whatIfCatalog(file, 'trace');
    expect(replaces).toBe('trackyard');
    expect(catalog.route('trackyard', 'POST', '/search')?.cost).toEqual({ kind: 'fixed', credits: 2 });
    expect(catalog.route('trace', 'GET', '/companies')?.cost.kind).toBe('per_entity');
  });

  it('stands in for the active profile when no shipped profile has its name', () => {
    const file = join(dir, 'renamed.yaml');
    writeFileSync(file, shipped.replace(/^name: trackyard$/m, 'name: trackyard-cheaper'));
    expect(whatIfCatalog(file, 'trackyard').replaces).toBe('trackyard');
  });

  it('names the file and the key of a bad profile', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, shipped.replace('cost: { kind: fixed, credits: 1 }', 'cost: { kind: sometimes }'));
    expect(() => whatIfCatalog(file, 'trackyard')).toThrow(ProfileError);
    expect(() => whatIfCatalog(file, 'trackyard')).toThrow(new RegExp(`${file}: routes\\[\\d+\\]\\.cost`));
    expect(() => whatIfCatalog(join(dir, 'missing.yaml'), 'trackyard')).toThrow(/missing\.yaml: \(file\): cannot be read: ENOENT/);
  });
});
