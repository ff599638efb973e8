import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { bodyObject, invalidRequest, isJsonObject, JsonObject } from './http-input';
import { TrackyardFilters, trackyardDownload, trackyardSearch } from './trackyard.catalog';

const DefaultResults = 10;
const MaxResults = 50;

/** Trackyard's data routes under `/api/external/v1` (SPEC §3). `/me` and `/usage` are Tollgate's own. */
@Controller('api/external/v1')
export class TrackyardController {
  /** Body `{"query", "filters"?, "limit"?}`; 400 without a non-empty string query (the gateway must not charge it). */
  @Post('search')
  @HttpCode(200)
  search(@Body() body: unknown) {
    const input = bodyObject(body);
    if (typeof input.query !== 'string' || input.query.trim() === '') throw invalidRequest('query is required');
    const limit = input.limit === undefined ? DefaultResults : input.limit;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1) throw invalidRequest('limit must be a whole number of at least 1');
    return trackyardSearch(input.query, parseFilters(input.filters), Math.min(limit, MaxResults));
  }

  @Post('download-track')
  @HttpCode(200)
  downloadTrack(@Body() body: unknown) {
    const input = bodyObject(body);
    if (typeof input.track_id !== 'string' || input.track_id.trim() === '') throw invalidRequest('track_id is required');
    return trackyardDownload(input.track_id);
  }
}

function parseFilters(raw: unknown): TrackyardFilters {
  if (raw === undefined || raw === null) return {};
  if (!isJsonObject(raw)) throw invalidRequest('filters must be an object');
  const f: JsonObject = raw;
  const filters: TrackyardFilters = {};
  if (f.has_vocals !== undefined) {
    if (typeof f.has_vocals !== 'boolean') throw invalidRequest('filters.has_vocals must be true or false');
    filters.has_vocals = f.has_vocals;
  }
  for (const name of ['min_bpm', 'max_bpm'] as const) {
    const v = f[name];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidRequest(`filters.${name} must be a number`);
    filters[name] = v;
  }
  for (const name of ['energy_level', 'genre', 'mood'] as const) {
    const v = f[name];
    if (v === undefined) continue;
    if (typeof v !== 'string') throw invalidRequest(`filters.${name} must be a string`);
    filters[name] = v;
  }
  return filters;
}
