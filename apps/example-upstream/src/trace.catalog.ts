import { Seed, slugify, stableId, titleCase } from './seed';
import { CompanyStems, CompanySuffixes, Industries, PartnershipTypes, Places, TopLevelDomains } from './words';

/**
 * Trace's company graph. Invariant: a company's id is `c_` + 12 hex digits of sha1 of its domain, so
 * looking a company up by domain or by id gives the same record for every company of the directory
 * (the 500 companies `/companies` pages through). An id outside the directory still answers, with
 * fields derived from the id. Per-entity billing keys on these ids, so they must never change.
 */

export interface TraceCompanyRef {
  id: string;
  name: string;
  domain: string;
}

export interface TraceCompany extends TraceCompanyRef {
  industry: string;
  employee_count: number;
  founded_year: number;
  headquarters: { city: string; country: string };
  description: string;
  updated_at: string;
}

export const TraceDirectorySize = 500;

export function traceCompanyId(domain: string): string {
  return stableId('c_', ['trace-company', domain]);
}

/** Accepts `acme.com`, `www.acme.com`, `https://acme.com/about`; answers `acme.com`. */
export function normaliseDomain(identifier: string): string {
  return identifier.trim().toLowerCase().replace(/^[a-z]+:\/\//, '').replace(/^www\./, '').replace(/[/?#].*$/, '');
}

function companyFrom(ref: TraceCompanyRef): TraceCompany {
  const s = new Seed('trace-company-details', ref.id);
  const industry = s.pick(Industries);
  return {
    ...ref,
    industry,
    employee_count: s.pick([8, 25, 60, 140, 320, 900, 2400, 7800]) + s.int(0, 7),
    founded_year: s.int(1995, 2024),
    headquarters: { ...s.pick(Places) },
    description: `${ref.name} builds ${industry.toLowerCase()} products for ${s.pick(['small businesses', 'enterprises', 'developers', 'hospitals', 'retailers', 'public agencies'])}.`,
    updated_at: s.dateBefore(60),
  };
}

/** The directory, built once: unique names from stems and suffixes, in a fixed order. */
const directory: readonly TraceCompany[] = (() => {
  const s = new Seed('trace-directory');
  const names = new Set<string>();
  const companies: TraceCompany[] = [];
  while (companies.length < TraceDirectorySize) {
    const name = `${s.pick(CompanyStems)} ${s.pick(CompanySuffixes)}`;
    if (names.has(name)) {
      // Stems x suffixes has 360 combinations; later companies take a numeral to stay unique.
      const numbered = `${name} ${companies.length}`;
      if (names.has(numbered)) continue;
      names.add(numbered);
      companies.push(directoryCompany(numbered, s));
      continue;
    }
    names.add(name);
    companies.push(directoryCompany(name, s));
  }
  return companies;
})();

function directoryCompany(name: string, s: Seed): TraceCompany {
  const domain = `${slugify(name).replace(/-/g, '')}.${s.pick(TopLevelDomains)}`;
  return companyFrom({ id: traceCompanyId(domain), name, domain });
}

const byId = new Map(directory.map((c) => [c.id, c]));
const byDomain = new Map(directory.map((c) => [c.domain, c]));

export function companyRef(c: TraceCompanyRef): TraceCompanyRef {
  return { id: c.id, name: c.name, domain: c.domain };
}

/** An identifier starting `c_` is an id; anything else is a domain. */
export function traceCompany(identifier: string): TraceCompany {
  const trimmed = identifier.trim();
  if (trimmed.startsWith('c_')) {
    const known = byId.get(trimmed);
    if (known) return known;
    const s = new Seed('trace-unknown-id', trimmed);
    const name = `${s.pick(CompanyStems)} ${s.pick(CompanySuffixes)}`;
    return companyFrom({ id: trimmed, name, domain: `${slugify(name).replace(/-/g, '')}-${trimmed.slice(2, 6)}.com` });
  }
  const domain = normaliseDomain(trimmed);
  const known = byDomain.get(domain);
  if (known) return known;
  return companyFrom({ id: traceCompanyId(domain), name: titleCase(domain.split('.')[0] ?? domain), domain });
}

/** Cursors are opaque to clients; inside they are the offset into the (filtered) directory. */
export function encodeCursor(offset: number): string {
  return Buffer.from(`offset:${offset}`, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): number | null {
  const match = /^offset:(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  return match ? Number(match[1]) : null;
}

/** One page of the directory, optionally filtered by `q` (name or domain contains it, case-insensitively). */
export function traceCompanyPage(offset: number, limit: number, q?: string) {
  const needle = q?.trim().toLowerCase();
  const matching = needle ? directory.filter((c) => c.name.toLowerCase().includes(needle) || c.domain.includes(needle)) : directory;
  const data = matching.slice(offset, offset + limit);
  const next = offset + data.length;
  return { data, next_cursor: next < matching.length ? encodeCursor(next) : null };
}

/** Distinct partners of a company, drawn from the directory (never the company itself). */
function partnersOf(companyId: string): Array<{ partner: TraceCompany; type: string; since: string }> {
  const s = new Seed('trace-partners', companyId);
  const count = s.int(4, 8);
  return s
    .distinctIndexes(count + 1, directory.length)
    .map((i) => directory[i]!)
    .filter((c) => c.id !== companyId)
    .slice(0, count)
    .map((partner) => ({ partner, type: s.pick(PartnershipTypes), since: s.dateBefore(1500) }));
}

/**
 * Partnerships of a company. Invariant, on purpose: the last entry repeats the first entry's partner
 * (the same company in a second kind of partnership), so every response holds one duplicated
 * `partner.id` and the gateway's "duplicates in one response are charged once" rule is exercised.
 */
export function tracePartnerships(identifier: string) {
  const company = traceCompany(identifier);
  const partners = partnersOf(company.id);
  const entries = partners.map((p) => ({ partner: companyRef(p.partner), type: p.type, status: 'active', since: p.since }));
  const first = partners[0]!;
  const otherType = PartnershipTypes[(PartnershipTypes.indexOf(first.type as (typeof PartnershipTypes)[number]) + 1) % PartnershipTypes.length]!;
  entries.push({ partner: companyRef(first.partner), type: otherType, status: 'active', since: first.since });
  return { company: companyRef(company), data: entries };
}

/**
 * The partnership graph around a company: the root is also the first node (the gateway's billing
 * excludes `root.id`). Depth 1: its partners; depth 2 also the first partners of its first three
 * partners. Nodes are distinct; edges point from a company to its partner.
 */
export function tracePartnershipGraph(identifier: string, depth: 1 | 2) {
  const root = traceCompany(identifier);
  const nodes = new Map<string, TraceCompanyRef>([[root.id, companyRef(root)]]);
  const edges: Array<{ from: string; to: string; type: string }> = [];
  const expand = (from: TraceCompanyRef, take: number) => {
    for (const p of partnersOf(from.id).slice(0, take)) {
      if (!nodes.has(p.partner.id)) nodes.set(p.partner.id, companyRef(p.partner));
      edges.push({ from: from.id, to: p.partner.id, type: p.type });
    }
  };
  expand(root, Number.MAX_SAFE_INTEGER);
  if (depth === 2) {
    for (const partner of [...nodes.values()].slice(1, 4)) expand(partner, 2);
  }
  return { root: companyRef(root), depth, nodes: [...nodes.values()], edges };
}

/** The unauthenticated teaser list: the first five companies, names and domains only. */
export function traceOpenCompanies() {
  return { data: directory.slice(0, 5).map(companyRef) };
}
