import { CatalogEpochMs, Seed, isoSeconds, stableId } from './seed';
import { Adjectives, EnergyLevels, FirstNames, Genres, LastNames, Moods, MusicalKeys, Nouns } from './words';

/** Trackyard's music search: every field of a track is a function of its `track_id`. */

export interface TrackyardTrack {
  track_id: string;
  title: string;
  artist: string;
  genre: string;
  mood: string;
  bpm: number;
  energy_level: (typeof EnergyLevels)[number];
  has_vocals: boolean;
  key: string;
  duration_seconds: number;
  preview_url: string;
}

/** The filters of the seed's example (`has_vocals`, `min_bpm`, `max_bpm`, `energy_level`) plus `genre`, `mood`. */
export interface TrackyardFilters {
  has_vocals?: boolean;
  min_bpm?: number;
  max_bpm?: number;
  energy_level?: string;
  genre?: string;
  mood?: string;
}

const CdnBase = 'https://cdn.example-upstream.test/trackyard';

export function trackyardTrack(trackId: string): TrackyardTrack {
  const s = new Seed('trackyard-track', trackId);
  return {
    track_id: trackId,
    title: `${s.pick(Adjectives)} ${s.pick(Nouns)}`,
    artist: `${s.pick(FirstNames)} ${s.pick(LastNames)}`,
    genre: s.pick(Genres),
    mood: s.pick(Moods),
    bpm: s.int(60, 180),
    energy_level: s.pick(EnergyLevels),
    has_vocals: s.bool(0.4),
    key: s.pick(MusicalKeys),
    duration_seconds: s.int(45, 300),
    preview_url: `${CdnBase}/previews/${encodeURIComponent(trackId)}.mp3`,
  };
}

function matches(track: TrackyardTrack, f: TrackyardFilters): boolean {
  if (f.has_vocals !== undefined && track.has_vocals !== f.has_vocals) return false;
  if (f.min_bpm !== undefined && track.bpm < f.min_bpm) return false;
  if (f.max_bpm !== undefined && track.bpm > f.max_bpm) return false;
  if (f.energy_level !== undefined && track.energy_level !== f.energy_level.toLowerCase()) return false;
  if (f.genre !== undefined && track.genre.toLowerCase() !== f.genre.toLowerCase()) return false;
  if (f.mood !== undefined && track.mood !== f.mood.toLowerCase()) return false;
  return true;
}

/** Candidates scanned per search: enough that narrow filters still find tracks, bounded so a search stays cheap. */
const MaxCandidates = 2000;

/**
 * Search results: candidate ids derived from the normalised query, kept when their (id-derived)
 * attributes satisfy the filters, so a result and a later `/download-track` of it always agree. Filters
 * that nothing satisfies give an empty list, as a real catalogue would.
 */
export function trackyardSearch(query: string, filters: TrackyardFilters, limit: number) {
  const normalised = query.trim().toLowerCase();
  const results: Array<TrackyardTrack & { relevance_score: number }> = [];
  for (let i = 0; i < MaxCandidates && results.length < limit; i++) {
    const track = trackyardTrack(stableId('trk_', ['trackyard', normalised, i], 10));
    if (!matches(track, filters)) continue;
    results.push({ ...track, relevance_score: Math.round((0.99 - results.length * 0.03) * 100) / 100 });
  }
  return { query, filters, results, total: results.length };
}

/** A signed-looking download link; the "signature" is a hash, the expiry a fixed hour after the catalog epoch. */
export function trackyardDownload(trackId: string) {
  const track = trackyardTrack(trackId);
  return {
    track_id: trackId,
    title: track.title,
    artist: track.artist,
    format: 'mp3',
    bitrate_kbps: 320,
    duration_seconds: track.duration_seconds,
    file_size_bytes: track.duration_seconds * 40_000,
    download_url: `${CdnBase}/downloads/${encodeURIComponent(trackId)}.mp3?signature=${stableId('', ['trackyard-download', trackId], 24)}`,
    expires_at: isoSeconds(CatalogEpochMs + 3_600_000),
  };
}
