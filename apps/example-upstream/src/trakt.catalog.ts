import { canonicalJson, CatalogEpochMs, fnv1a, isoSeconds, Seed, slugify, titleCase } from './seed';
import { Adjectives, FirstNames, LastNames, Networks, Nouns, ShowGenres } from './words';

/**
 * Trakt's media database, in Trakt's own shapes (`{title, year, ids:{trakt, slug, ...}}`). A numeric id
 * is the Trakt id; anything else is a slug, whose Trakt id is derived from it (so the title comes from
 * the slug, and the numeric lookup of that id may name a different title: acceptable for a fake).
 */

export type TraktMediaKind = 'show' | 'movie';
export const TraktSearchTypes = ['movie', 'show', 'episode', 'person', 'list'] as const;
export type TraktSearchType = (typeof TraktSearchTypes)[number];

function idsFor(kind: string, trakt: number, slug: string) {
  const s = new Seed('trakt-ids', kind, trakt);
  return {
    trakt,
    slug,
    ...(kind === 'show' ? { tvdb: s.int(70_000, 450_000) } : {}),
    imdb: `tt${String(s.int(100_000, 9_999_999)).padStart(7, '0')}`,
    tmdb: s.int(1, 250_000),
  };
}

/** `extended=full` adds the descriptive fields, as Trakt's `?extended=full` does. */
export function traktMedia(kind: TraktMediaKind, idOrSlug: string, extended = false) {
  const numeric = /^\d+$/.test(idOrSlug);
  const trakt = numeric ? Number(idOrSlug) : 1 + (fnv1a(`${kind}:${idOrSlug}`) % 900_000);
  const s = new Seed('trakt-media', kind, trakt);
  const generated = `${s.pick(Adjectives)} ${s.pick(Nouns)}`;
  const title = numeric ? generated : titleCase(idOrSlug);
  const slug = numeric ? slugify(generated) : slugify(idOrSlug);
  const year = s.int(1985, 2025);
  const base = { title, year, ids: idsFor(kind, trakt, slug) };
  if (!extended) return base;
  return {
    ...base,
    overview: `${title} (${year}), a ${s.pick(ShowGenres)} story about ${s.pick(Nouns).toLowerCase()} and ${s.pick(Nouns).toLowerCase()}.`,
    runtime: kind === 'show' ? s.int(22, 60) : s.int(85, 170),
    genres: [s.pick(ShowGenres)],
    rating: Math.round(s.next() * 400 + 550) / 100,
    ...(kind === 'show'
      ? { network: s.pick(Networks), status: s.pick(['returning series', 'ended', 'canceled']), first_aired: isoSeconds(Date.UTC(year, s.int(0, 11), s.int(1, 28), 2)) }
      : { released: `${year}-${String(s.int(1, 12)).padStart(2, '0')}-${String(s.int(1, 28)).padStart(2, '0')}` }),
  };
}

/** The trending list is 100 fixed shows; watchers fall with rank. */
export const TraktTrendingSize = 100;

export function traktTrending(page: number, limit: number) {
  const first = (page - 1) * limit;
  const items = [];
  for (let rank = first; rank < Math.min(first + limit, TraktTrendingSize); rank++) {
    const trakt = 1 + (fnv1a(`trending:${rank}`) % 900_000);
    items.push({ watchers: Math.max(1, 5000 - rank * 47 - new Seed('trakt-watchers', rank).int(0, 40)), show: traktMedia('show', String(trakt)) });
  }
  return {
    items,
    pagination: { page, limit, pageCount: Math.ceil(TraktTrendingSize / limit), itemCount: TraktTrendingSize },
  };
}

function searchHit(type: TraktSearchType, s: Seed) {
  const trakt = s.int(1, 900_000);
  switch (type) {
    case 'movie':
      return { movie: traktMedia('movie', String(trakt)) };
    case 'show':
      return { show: traktMedia('show', String(trakt)) };
    case 'episode':
      return {
        episode: { season: s.int(1, 8), number: s.int(1, 12), title: `${s.pick(Adjectives)} ${s.pick(Nouns)}`, ids: { trakt: s.int(1, 9_000_000) } },
        show: traktMedia('show', String(trakt)),
      };
    case 'person': {
      const name = `${s.pick(FirstNames)} ${s.pick(LastNames)}`;
      return { person: { name, ids: { trakt, slug: slugify(name), imdb: `nm${String(s.int(1, 9_999_999)).padStart(7, '0')}`, tmdb: s.int(1, 4_000_000) } } };
    }
    case 'list': {
      const name = `${s.pick(Adjectives)} ${s.pick(Nouns)} picks`;
      return { list: { name, ids: { trakt, slug: slugify(name) }, item_count: s.int(5, 200) } };
    }
  }
}

/** Text search over the requested types (Trakt's `GET /search/movie,show?query=`), scores falling with rank. */
export function traktSearch(types: TraktSearchType[], query: string, limit: number) {
  const s = new Seed('trakt-search', types.join(','), query.trim().toLowerCase());
  return Array.from({ length: limit }, (_, i) => {
    const type = types[i % types.length]!;
    return { type, score: Math.round((1000 - i * 37.5) * 100) / 100, ...searchHit(type, s) };
  });
}

type SyncItems = { movies?: unknown; shows?: unknown; episodes?: unknown };

/** `POST /sync/history`: every movie and episode is "added"; a show adds a number of episodes derived from it. */
export function traktSyncHistory(body: SyncItems) {
  const list = (v: unknown) => (Array.isArray(v) ? v : []);
  const showEpisodes = list(body.shows).reduce<number>((sum, show) => sum + new Seed('trakt-sync-show', canonicalJson(show)).int(1, 24), 0);
  return {
    added: { movies: list(body.movies).length, episodes: list(body.episodes).length + showEpisodes },
    not_found: { movies: [], shows: [], seasons: [], episodes: [], people: [] },
  };
}

/** `POST /checkin`: a movie when the body names one, else an episode (a body naming neither checks in to a derived movie). */
export function traktCheckin(body: Record<string, unknown>) {
  const seedText = canonicalJson(body);
  const s = new Seed('trakt-checkin', seedText);
  const sharing = { twitter: false, mastodon: false, tumblr: false };
  const common = { id: s.int(1_000_000, 9_999_999), watched_at: isoSeconds(CatalogEpochMs), sharing };
  if (body.episode !== undefined && body.movie === undefined) {
    return {
      ...common,
      episode: { season: s.int(1, 8), number: s.int(1, 12), title: `${s.pick(Adjectives)} ${s.pick(Nouns)}`, ids: { trakt: s.int(1, 9_000_000) } },
      show: traktMedia('show', String(s.int(1, 900_000))),
    };
  }
  return { ...common, movie: traktMedia('movie', String(s.int(1, 900_000))) };
}
