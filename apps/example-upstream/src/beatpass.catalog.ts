import { addDays, canonicalJson, CatalogEpochMs, isoDate, isoSeconds, Seed, slugify, stableId } from './seed';
import { Adjectives, FirstNames, Genres, LastNames, MusicalKeys, Nouns } from './words';

/**
 * BeatPass's beat marketplace. Listings page through fixed id ranges (tracks 1..500, artists 1..120,
 * albums 1..200); every record is a function of its id, so `/tracks/7` equals the 7th entry of `/tracks`.
 * Ids outside the ranges (or not numeric) still answer, derived the same way.
 */

export const BeatpassCounts = { tracks: 500, artists: 120, albums: 200 } as const;

export function beatpassArtist(id: string) {
  const s = new Seed('beatpass-artist', id);
  const name = `${s.pick(FirstNames)} ${s.pick(LastNames)}`;
  return { id, name, slug: slugify(name), followers: s.int(10, 250_000), verified: s.bool(0.3), image_url: `/api/v1/images/artist-${id}` };
}

export function beatpassAlbum(id: string) {
  const s = new Seed('beatpass-album', id);
  const artistId = String(s.int(1, BeatpassCounts.artists));
  return {
    id,
    title: `${s.pick(Adjectives)} ${s.pick(Nouns)}`,
    artist: { id: artistId, name: beatpassArtist(artistId).name },
    track_count: s.int(4, 14),
    release_date: isoDate(Date.parse(s.dateBefore(2000))),
    cover_url: `/api/v1/images/album-${id}`,
  };
}

export function beatpassTrack(id: string) {
  const s = new Seed('beatpass-track', id);
  const artistId = String(s.int(1, BeatpassCounts.artists));
  const albumId = String(s.int(1, BeatpassCounts.albums));
  return {
    id,
    title: `${s.pick(Adjectives)} ${s.pick(Nouns)}`,
    artist: { id: artistId, name: beatpassArtist(artistId).name },
    album: { id: albumId, title: beatpassAlbum(albumId).title },
    genre: s.pick(Genres),
    bpm: s.int(70, 170),
    key: s.pick(MusicalKeys),
    duration_seconds: s.int(90, 240),
    price_cents: s.pick([1999, 2999, 4999, 9999]),
    plays: s.int(0, 1_000_000),
    stream_url: `/api/v1/tracks/${encodeURIComponent(id)}/stream`,
    created_at: s.dateBefore(900),
  };
}

export function beatpassPage<T>(total: number, page: number, perPage: number, item: (id: string) => T) {
  const first = (page - 1) * perPage + 1;
  const ids = Array.from({ length: Math.max(0, Math.min(perPage, total - first + 1)) }, (_, i) => String(first + i));
  return { data: ids.map(item), meta: { page, per_page: perPage, total, last_page: Math.ceil(total / perPage) } };
}

export function beatpassSearch(q: string) {
  const s = new Seed('beatpass-search', q.trim().toLowerCase());
  const ids = (n: number, size: number) => s.distinctIndexes(n, size).map((i) => String(i + 1));
  return {
    query: q,
    data: {
      tracks: ids(5, BeatpassCounts.tracks).map(beatpassTrack),
      artists: ids(3, BeatpassCounts.artists).map(beatpassArtist),
      albums: ids(3, BeatpassCounts.albums).map(beatpassAlbum),
    },
  };
}

export function beatpassGenres() {
  return {
    data: Genres.map((name) => ({ id: slugify(name), name, track_count: new Seed('beatpass-genre', name).int(20, 120) })),
  };
}

/**
 * Plays per day over the `days` days ending on the catalog epoch (fixed dates, never today), for one
 * track or, without one, for the whole account.
 */
export function beatpassPlays(trackId: string | undefined, days: number) {
  const s = new Seed('beatpass-plays', trackId ?? '*', days);
  const daily = Array.from({ length: days }, (_, i) => ({ date: isoDate(addDays(CatalogEpochMs, i - days)), plays: s.int(0, 500) }));
  return {
    data: {
      track_id: trackId ?? null,
      from: daily[0]?.date ?? isoDate(CatalogEpochMs),
      to: isoDate(addDays(CatalogEpochMs, -1)),
      total_plays: daily.reduce((sum, d) => sum + d.plays, 0),
      daily,
    },
  };
}

/** A few kilobytes of stand-in audio: an ID3 tag then bytes from the track's seed. Only the bytes matter. */
export function beatpassAudio(trackId: string): Buffer {
  const s = new Seed('beatpass-audio', trackId);
  const bytes = Buffer.alloc(4096);
  bytes.write('ID3', 0, 'latin1');
  for (let i = 3; i < bytes.length; i++) bytes[i] = s.int(0, 255);
  return bytes;
}

export function beatpassImageSvg(imageId: string): string {
  const s = new Seed('beatpass-image', imageId);
  const hue = s.int(0, 359);
  const label = imageId.replace(/[^A-Za-z0-9 _-]/g, '').slice(0, 24);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">` +
    `<rect width="256" height="256" fill="hsl(${hue},60%,45%)"/>` +
    `<circle cx="128" cy="128" r="${s.int(40, 110)}" fill="hsl(${(hue + 180) % 360},70%,65%)"/>` +
    `<text x="128" y="240" font-family="sans-serif" font-size="16" text-anchor="middle" fill="#fff">${label}</text></svg>`
  );
}

/** Write operations answer with a record whose id is derived from the body: resending the same body returns the same record. */
export function beatpassWrite(kind: 'upload' | 'purchase' | 'message', body: Record<string, unknown>) {
  const key = canonicalJson(body);
  const id = stableId(`${kind.slice(0, 3)}_`, ['beatpass', kind, key]);
  const createdAt = isoSeconds(CatalogEpochMs);
  const str = (name: string, fallback: string) => (typeof body[name] === 'string' ? (body[name] as string) : fallback);
  switch (kind) {
    case 'upload':
      return { data: { id, title: str('title', 'Untitled'), status: 'processing', created_at: createdAt } };
    case 'purchase': {
      const trackId = str('track_id', '1');
      return {
        data: { id, track_id: trackId, license: str('license', 'basic'), amount_cents: beatpassTrack(trackId).price_cents, currency: 'USD', status: 'completed', created_at: createdAt },
      };
    }
    case 'message':
      return { data: { id, to: str('to', 'support'), body: str('body', ''), status: 'sent', created_at: createdAt } };
  }
}

/** The one account the fake knows; SPEC §3: `demo`/`demo` logs in, anything else is a 401. */
export const BeatpassDemoUser = { username: 'demo', password: 'demo' } as const;

export function beatpassLoginSucceeded() {
  return {
    access_token: stableId('bp_tok_', ['beatpass-login', BeatpassDemoUser.username], 32),
    token_type: 'Bearer',
    expires_in: 3600,
    user: { id: '1', username: BeatpassDemoUser.username },
  };
}
