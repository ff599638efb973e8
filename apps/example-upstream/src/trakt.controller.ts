import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, Res } from '@nestjs/common';
import { Response } from 'express';
import { bodyObject, intQuery, invalidRequest, queryString } from './http-input';
import { traktCheckin, traktMedia, TraktSearchType, TraktSearchTypes, traktSearch, traktSyncHistory, traktTrending } from './trakt.catalog';

/**
 * Trakt's routes, at the root (Trakt has no base path). Lists answer with Trakt's pagination headers.
 * POSTs are lenient (any JSON object), so the 1-per-second POST limit can be tested with any body.
 */
@Controller()
export class TraktController {
  @Get('shows/trending')
  trending(@Query('page') page: unknown, @Query('limit') limit: unknown, @Res({ passthrough: true }) res: Response) {
    const result = traktTrending(intQuery(page, 'page', { fallback: 1, min: 1, max: 10_000 }), intQuery(limit, 'limit', { fallback: 10, min: 1, max: 100 }));
    res.setHeader('X-Pagination-Page', String(result.pagination.page));
    res.setHeader('X-Pagination-Limit', String(result.pagination.limit));
    res.setHeader('X-Pagination-Page-Count', String(result.pagination.pageCount));
    res.setHeader('X-Pagination-Item-Count', String(result.pagination.itemCount));
    return result.items;
  }

  @Get('shows/:id')
  show(@Param('id') id: string, @Query('extended') extended: unknown) {
    return traktMedia('show', id, queryString(extended) === 'full');
  }

  @Get('movies/:id')
  movie(@Param('id') id: string, @Query('extended') extended: unknown) {
    return traktMedia('movie', id, queryString(extended) === 'full');
  }

  /** `GET /search/movie,show?query=...`: every listed type must be one Trakt knows, else 400. */
  @Get('search/:type')
  search(@Param('type') type: string, @Query('query') query: unknown, @Query('limit') limit: unknown) {
    const types = type.split(',').map((t) => t.trim());
    const unknown = types.filter((t) => !(TraktSearchTypes as readonly string[]).includes(t));
    if (unknown.length > 0) throw invalidRequest(`type must be one or more of ${TraktSearchTypes.join(', ')} (got "${unknown.join(',')}")`);
    return traktSearch(types as TraktSearchType[], queryString(query) ?? '', intQuery(limit, 'limit', { fallback: 10, min: 1, max: 100 }));
  }

  @Post('sync/history')
  syncHistory(@Body() body: unknown) {
    return traktSyncHistory(bodyObject(body));
  }

  @Post('checkin')
  checkin(@Body() body: unknown) {
    return traktCheckin(bodyObject(body));
  }

  @Delete('checkin')
  @HttpCode(204)
  cancelCheckin(): void {}
}
