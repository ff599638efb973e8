import { INestApplication } from '@nestjs/common';
import { createExampleUpstream } from './example-upstream';

/**
 * The example upstream over real HTTP: what the gateway's end-to-end tests rely on (shapes carrying the
 * ids billing reads, determinism, the status and delay hooks, login and validation failures).
 */
describe('example upstream', () => {
  let app: INestApplication;
  let base: string;

  beforeAll(async () => {
    app = await createExampleUpstream(0, { logger: false });
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
  });

  type Answer = { status: number; headers: Headers; text: string; body: any };

  async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    const res = await fetch(base + path, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const isJson = res.headers.get('content-type')?.includes('application/json') ?? false;
    return { status: res.status, headers: res.headers, text, body: isJson && text ? JSON.parse(text) : null };
  }

  describe('health', () => {
    it('given the app is listening, when probed, then live and ready both answer 200 status ok', async () => {
      for (const path of ['/health/live', '/health/ready']) {
        const res = await call('GET', path);
        expect(res.status).toBe(200);
        expect(res.body.status).toBe('ok');
      }
    });

    it('given a status hook header, when probing readiness, then the hook is ignored so readiness cannot be faked', async () => {
      const res = await call('GET', '/health/ready', undefined, { 'x-upstream-status': '503' });
      expect(res.status).toBe(200);
    });
  });

  describe('trackyard (/api/external/v1)', () => {
    const ty = '/api/external/v1';

    it('given a query, when searching, then 200 with results that carry track ids and the same body every time', async () => {
      const first = await call('POST', `${ty}/search`, { query: 'upbeat music' });
      const second = await call('POST', `${ty}/search`, { query: 'upbeat music' });
      expect(first.status).toBe(200);
      expect(first.body.results.length).toBe(10);
      expect(first.body.results[0]).toEqual(
        expect.objectContaining({ track_id: expect.stringMatching(/^trk_[0-9a-f]{10}$/), title: expect.any(String), bpm: expect.any(Number), preview_url: expect.any(String) }),
      );
      expect(second.text).toBe(first.text);
    });

    it('given filters, when searching, then every result satisfies them', async () => {
      const filters = { has_vocals: false, min_bpm: 120, max_bpm: 140, energy_level: 'high' };
      const res = await call('POST', `${ty}/search`, { query: 'upbeat music', filters });
      expect(res.status).toBe(200);
      expect(res.body.results.length).toBeGreaterThan(0);
      for (const t of res.body.results) {
        expect(t.has_vocals).toBe(false);
        expect(t.bpm).toBeGreaterThanOrEqual(120);
        expect(t.bpm).toBeLessThanOrEqual(140);
        expect(t.energy_level).toBe('high');
      }
    });

    it('given no query, when searching, then 400 JSON "query is required" (a failure the gateway must not charge)', async () => {
      for (const body of [{ filters: {} }, { query: '' }, { query: 42 }]) {
        const res = await call('POST', `${ty}/search`, body);
        expect(res.status).toBe(400);
        expect(res.body).toEqual({ error: 'invalid_request', message: 'query is required' });
      }
    });

    it('given a track id from a search, when downloading it, then the download names the same track with a url', async () => {
      const search = await call('POST', `${ty}/search`, { query: 'calm piano' });
      const track = search.body.results[0];
      const res = await call('POST', `${ty}/download-track`, { track_id: track.track_id });
      expect(res.status).toBe(200);
      expect(res.body).toEqual(expect.objectContaining({ track_id: track.track_id, title: track.title, artist: track.artist, download_url: expect.stringContaining(track.track_id) }));
      expect(res.body.expires_at).toBe('2026-01-01T01:00:00Z');
    });

    it('given no track_id, when downloading, then 400 JSON', async () => {
      const res = await call('POST', `${ty}/download-track`, {});
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'invalid_request', message: 'track_id is required' });
    });
  });

  describe('beatpass (/api/v1)', () => {
    const bp = '/api/v1';

    it('given the general routes, when read, then each answers 200 JSON with data, the same body twice', async () => {
      for (const path of ['/tracks', '/tracks/7', '/artists', '/albums', '/search?q=night', '/genres']) {
        const first = await call('GET', bp + path);
        const second = await call('GET', bp + path);
        expect(first.status).toBe(200);
        expect(first.body).toHaveProperty('data');
        expect(second.text).toBe(first.text);
      }
    });

    it('given a track in the listing, when fetched by id, then it is the same record', async () => {
      const list = await call('GET', `${bp}/tracks?page=1&per_page=10`);
      expect(list.body.meta).toEqual({ page: 1, per_page: 10, total: 500, last_page: 50 });
      const seventh = list.body.data[6];
      expect((await call('GET', `${bp}/tracks/7`)).body.data).toEqual(seventh);
    });

    it('given the media routes, when read, then a stream answers audio bytes and an image answers SVG', async () => {
      const stream = await fetch(`${base}${bp}/tracks/7/stream`);
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toBe('audio/mpeg');
      const bytes = Buffer.from(await stream.arrayBuffer());
      expect(bytes.length).toBe(4096);
      expect(bytes.subarray(0, 3).toString('latin1')).toBe('ID3');
      const image = await call('GET', `${bp}/images/album-3`);
      expect(image.status).toBe(200);
      expect(image.headers.get('content-type')).toMatch(/^image\/svg\+xml/);
      expect(image.text).toMatch(/^<svg /);
    });

    it('given analytics, when plays are read, then daily counts on fixed dates sum to the total', async () => {
      const res = await call('GET', `${bp}/analytics/plays?track_id=7&days=7`);
      expect(res.status).toBe(200);
      expect(res.body.data.daily.map((d: { date: string }) => d.date)).toEqual(['2025-12-25', '2025-12-26', '2025-12-27', '2025-12-28', '2025-12-29', '2025-12-30', '2025-12-31']);
      expect(res.body.data.total_plays).toBe(res.body.data.daily.reduce((s: number, d: { plays: number }) => s + d.plays, 0));
    });

    it('given the write routes, when posted, then 201 with a record whose id depends only on the body', async () => {
      for (const path of ['/uploads', '/purchases', '/messages']) {
        const first = await call('POST', bp + path, { title: 'x', track_id: '7', to: 'artist-1', body: 'hi' });
        const second = await call('POST', bp + path, { body: 'hi', to: 'artist-1', track_id: '7', title: 'x' });
        expect(first.status).toBe(201);
        expect(first.body.data.id).toEqual(expect.any(String));
        expect(second.text).toBe(first.text);
      }
    });

    it('given demo/demo, when logging in, then 200 with a bearer token; given a wrong password, then 401 JSON', async () => {
      const ok = await call('POST', `${bp}/auth/login`, { username: 'demo', password: 'demo' });
      expect(ok.status).toBe(200);
      expect(ok.body).toEqual(expect.objectContaining({ access_token: expect.stringMatching(/^bp_tok_/), token_type: 'Bearer' }));
      const wrong = await call('POST', `${bp}/auth/login`, { username: 'demo', password: 'nope' });
      expect(wrong.status).toBe(401);
      expect(wrong.body).toEqual({ error: 'invalid_credentials', message: 'Invalid username or password.' });
      expect((await call('POST', `${bp}/auth/login`, {})).status).toBe(401);
    });
  });

  describe('trakt (/)', () => {
    it('given trending shows, when paged, then Trakt shapes and pagination headers', async () => {
      const res = await call('GET', '/shows/trending?page=2&limit=5');
      expect(res.status).toBe(200);
      expect(res.body).toHaveLength(5);
      expect(res.body[0]).toEqual({ watchers: expect.any(Number), show: { title: expect.any(String), year: expect.any(Number), ids: expect.objectContaining({ trakt: expect.any(Number), slug: expect.any(String) }) } });
      expect(res.headers.get('x-pagination-page')).toBe('2');
      expect(res.headers.get('x-pagination-item-count')).toBe('100');
      expect((await call('GET', '/shows/trending?page=2&limit=5')).text).toBe(res.text);
    });

    it('given a slug or a Trakt id, when a show or movie is read, then its ids carry that slug or id', async () => {
      const show = await call('GET', '/shows/breaking-bad');
      expect(show.status).toBe(200);
      expect(show.body).toEqual(expect.objectContaining({ title: 'Breaking Bad', ids: expect.objectContaining({ slug: 'breaking-bad' }) }));
      const movie = await call('GET', '/movies/12345?extended=full');
      expect(movie.body.ids.trakt).toBe(12345);
      expect(movie.body).toHaveProperty('overview');
    });

    it('given search types, when searching, then hits of those types; an unknown type is a 400', async () => {
      const res = await call('GET', '/search/movie,show?query=tron');
      expect(res.status).toBe(200);
      expect(res.body).toHaveLength(10);
      expect(res.body[0]).toEqual(expect.objectContaining({ type: 'movie', score: expect.any(Number), movie: expect.any(Object) }));
      expect(res.body[1]).toEqual(expect.objectContaining({ type: 'show', show: expect.any(Object) }));
      expect((await call('GET', '/search/spaceship?query=tron')).status).toBe(400);
    });

    it('given the write routes, when called, then history and checkin answer 201 and cancelling a checkin 204', async () => {
      const history = await call('POST', '/sync/history', { movies: [{ ids: { trakt: 1 } }], episodes: [{ ids: { trakt: 2 } }, { ids: { trakt: 3 } }] });
      expect(history.status).toBe(201);
      expect(history.body.added).toEqual({ movies: 1, episodes: 2 });
      const checkin = await call('POST', '/checkin', { movie: { ids: { trakt: 28 } } });
      expect(checkin.status).toBe(201);
      expect(checkin.body).toEqual(expect.objectContaining({ watched_at: '2026-01-01T00:00:00Z', movie: expect.any(Object) }));
      const cancel = await call('DELETE', '/checkin');
      expect(cancel.status).toBe(204);
      expect(cancel.text).toBe('');
    });
  });

  describe('trace (/v1)', () => {
    it('given a limit, when listing companies, then that many with ids, and the cursor pages on without overlap', async () => {
      const first = await call('GET', '/v1/companies?limit=3');
      expect(first.status).toBe(200);
      expect(first.body.data).toHaveLength(3);
      expect(first.body.data[0]).toEqual(expect.objectContaining({ id: expect.stringMatching(/^c_[0-9a-f]{12}$/), name: expect.any(String), domain: expect.any(String) }));
      const next = await call('GET', `/v1/companies?limit=3&cursor=${first.body.next_cursor}`);
      const both = await call('GET', '/v1/companies?limit=6');
      expect([...first.body.data, ...next.body.data]).toEqual(both.body.data);
      expect((await call('GET', '/v1/companies?limit=3')).text).toBe(first.text);
    });

    it('given no limit, when listing, then 10; given a limit above 100, then 100; a bad cursor is a 400', async () => {
      expect((await call('GET', '/v1/companies')).body.data).toHaveLength(10);
      expect((await call('GET', '/v1/companies?limit=500')).body.data).toHaveLength(100);
      expect((await call('GET', '/v1/companies?limit=0')).status).toBe(400);
      expect((await call('GET', '/v1/companies?cursor=garbage')).status).toBe(400);
    });

    it('given the last page, when listed, then next_cursor is null', async () => {
      const last = await call('GET', `/v1/companies?limit=100&cursor=${Buffer.from('offset:450').toString('base64url')}`);
      expect(last.body.data).toHaveLength(50);
      expect(last.body.next_cursor).toBeNull();
    });

    it('given a listed company, when looked up by id or by domain, then the same record', async () => {
      const listed = (await call('GET', '/v1/companies?limit=1')).body.data[0];
      expect((await call('GET', `/v1/companies/${listed.id}`)).body).toEqual(listed);
      expect((await call('GET', `/v1/companies/${listed.domain}`)).body).toEqual(listed);
    });

    it('given an unknown domain, when looked up, then an id derived from the domain, stable across calls', async () => {
      const a = await call('GET', '/v1/companies/example-widgets.com');
      expect(a.status).toBe(200);
      expect(a.body).toEqual(expect.objectContaining({ id: expect.stringMatching(/^c_[0-9a-f]{12}$/), domain: 'example-widgets.com', name: 'Example Widgets' }));
      expect((await call('GET', '/v1/companies/www.Example-Widgets.com')).body.id).toBe(a.body.id);
    });

    it('given partnerships, when read, then partners carry ids and exactly one partner id appears twice', async () => {
      const res = await call('GET', '/v1/companies/acme.com/partnerships');
      expect(res.status).toBe(200);
      const ids: string[] = res.body.data.map((p: { partner: { id: string } }) => p.partner.id);
      expect(ids.length).toBeGreaterThanOrEqual(5);
      expect(new Set(ids).size).toBe(ids.length - 1);
      expect(ids[ids.length - 1]).toBe(ids[0]);
      expect(res.body.data[0]).toEqual(expect.objectContaining({ type: expect.any(String), since: expect.any(String) }));
      expect((await call('GET', '/v1/companies/acme.com/partnerships')).text).toBe(res.text);
    });

    it('given a graph, when read, then the root is among distinct nodes and every edge joins two nodes', async () => {
      for (const depth of [1, 2]) {
        const res = await call('GET', `/v1/companies/acme.com/partnerships/graph?depth=${depth}`);
        expect(res.status).toBe(200);
        const nodeIds: string[] = res.body.nodes.map((n: { id: string }) => n.id);
        expect(nodeIds[0]).toBe(res.body.root.id);
        expect(new Set(nodeIds).size).toBe(nodeIds.length);
        for (const e of res.body.edges) {
          expect(nodeIds).toContain(e.from);
          expect(nodeIds).toContain(e.to);
        }
      }
      const one = (await call('GET', '/v1/companies/acme.com/partnerships/graph')).body.nodes.length;
      const two = (await call('GET', '/v1/companies/acme.com/partnerships/graph?depth=2')).body.nodes.length;
      expect(two).toBeGreaterThan(one);
    });

    it('given the open list, when read without credentials, then a short list of companies', async () => {
      const res = await call('GET', '/v1/open/companies');
      expect(res.status).toBe(200);
      expect(res.body.data).toHaveLength(5);
      expect(res.body.data[0]).toEqual({ id: expect.any(String), name: expect.any(String), domain: expect.any(String) });
    });
  });

  describe('test hooks', () => {
    it('given x-upstream-status, when any data route is called, then it answers that status with a JSON error', async () => {
      const res = await call('POST', '/api/external/v1/search', { query: 'x' }, { 'x-upstream-status': '503' });
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ error: 'upstream_test_status', message: expect.any(String), status: 503 });
      expect((await call('GET', '/v1/companies/acme.com', undefined, { 'x-upstream-status': '404' })).status).toBe(404);
      const noContent = await call('GET', '/shows/trending', undefined, { 'x-upstream-status': '204' });
      expect(noContent.status).toBe(204);
      expect(noContent.text).toBe('');
    });

    it('given x-upstream-delay-ms, when called, then the answer comes no sooner than asked', async () => {
      const started = performance.now();
      const res = await call('GET', '/api/v1/genres', undefined, { 'x-upstream-delay-ms': '300' });
      expect(res.status).toBe(200);
      expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    });

    it('given an unusable hook value, when called, then 400 naming the header rather than a silent happy path', async () => {
      const res = await call('GET', '/api/v1/genres', undefined, { 'x-upstream-status': 'teapot' });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_test_hook');
      expect(res.body.message).toContain('x-upstream-status');
    });
  });
});
