import { Body, Controller, Get, Header, HttpCode, Param, Post, Query, StreamableFile, UnauthorizedException } from '@nestjs/common';
import {
  BeatpassCounts,
  BeatpassDemoUser,
  beatpassAlbum,
  beatpassArtist,
  beatpassAudio,
  beatpassGenres,
  beatpassImageSvg,
  beatpassLoginSucceeded,
  beatpassPage,
  beatpassPlays,
  beatpassSearch,
  beatpassTrack,
  beatpassWrite,
} from './beatpass.catalog';
import { bodyObject, intQuery, queryString } from './http-input';

type PageQuery = { page?: unknown; per_page?: unknown };

function page(query: PageQuery) {
  return {
    page: intQuery(query.page, 'page', { fallback: 1, min: 1, max: 10_000 }),
    perPage: intQuery(query.per_page, 'per_page', { fallback: 20, min: 1, max: 100 }),
  };
}

/**
 * BeatPass's routes under `/api/v1`, grouped by the rate-limit category the profile gives them
 * (general, media, analytics, write, auth). Writes are lenient: any JSON object is accepted and
 * missing fields take defaults, so limit tests need no fixtures.
 */
@Controller('api/v1')
export class BeatpassController {
  // --- general ---

  @Get('tracks')
  tracks(@Query() query: PageQuery) {
    const { page: p, perPage } = page(query);
    return beatpassPage(BeatpassCounts.tracks, p, perPage, beatpassTrack);
  }

  @Get('tracks/:id')
  track(@Param('id') id: string) {
    return { data: beatpassTrack(id) };
  }

  @Get('artists')
  artists(@Query() query: PageQuery) {
    const { page: p, perPage } = page(query);
    return beatpassPage(BeatpassCounts.artists, p, perPage, beatpassArtist);
  }

  @Get('albums')
  albums(@Query() query: PageQuery) {
    const { page: p, perPage } = page(query);
    return beatpassPage(BeatpassCounts.albums, p, perPage, beatpassAlbum);
  }

  @Get('search')
  search(@Query('q') q: unknown, @Query('query') query: unknown) {
    return beatpassSearch(queryString(q) ?? queryString(query) ?? '');
  }

  @Get('genres')
  genres() {
    return beatpassGenres();
  }

  // --- media ---

  @Get('tracks/:id/stream')
  stream(@Param('id') id: string) {
    return new StreamableFile(beatpassAudio(id), { type: 'audio/mpeg' });
  }

  @Get('images/:id')
  @Header('Content-Type', 'image/svg+xml')
  image(@Param('id') id: string) {
    return beatpassImageSvg(id);
  }

  // --- analytics ---

  @Get('analytics/plays')
  plays(@Query('track_id') trackId: unknown, @Query('days') days: unknown) {
    return beatpassPlays(queryString(trackId) || undefined, intQuery(days, 'days', { fallback: 7, min: 1, max: 90 }));
  }

  // --- write (201) ---

  @Post('uploads')
  upload(@Body() body: unknown) {
    return beatpassWrite('upload', bodyObject(body));
  }

  @Post('purchases')
  purchase(@Body() body: unknown) {
    return beatpassWrite('purchase', bodyObject(body));
  }

  @Post('messages')
  message(@Body() body: unknown) {
    return beatpassWrite('message', bodyObject(body));
  }

  // --- auth ---

  /** 200 with a token for demo/demo; anything else (a missing field included) is the 401 the gateway's lockout counts. */
  @Post('auth/login')
  @HttpCode(200)
  login(@Body() body: unknown) {
    const { username, password } = bodyObject(body);
    if (username !== BeatpassDemoUser.username || password !== BeatpassDemoUser.password) {
      throw new UnauthorizedException({ error: 'invalid_credentials', message: 'Invalid username or password.' });
    }
    return beatpassLoginSucceeded();
  }
}
