import { parseEntityExpression, readEntityIds } from './entity-ids';

describe('readEntityIds', () => {
  it('given a single record, then `id` reads its id', () => {
    expect(readEntityIds({ id: 'c_1', name: 'Acme' }, 'id')).toEqual({ ok: true, ids: ['c_1'] });
  });

  it('given a page, then `data[].id` reads every id in order', () => {
    expect(readEntityIds({ data: [{ id: 'c_1' }, { id: 'c_2' }, { id: 'c_3' }], next_cursor: null }, 'data[].id')).toEqual({ ok: true, ids: ['c_1', 'c_2', 'c_3'] });
  });

  it('given partnerships, then `data[].partner.id` reads the partner ids', () => {
    const body = { data: [{ partner: { id: 'c_7' }, kind: 'supplier' }, { partner: { id: 'c_9' } }] };
    expect(readEntityIds(body, 'data[].partner.id')).toEqual({ ok: true, ids: ['c_7', 'c_9'] });
  });

  it('given a graph, then `nodes[].id` and `root.id` read the nodes and the queried company', () => {
    const graph = { root: { id: 'c_1' }, nodes: [{ id: 'c_1' }, { id: 'c_2' }], edges: [] };
    expect(readEntityIds(graph, 'nodes[].id')).toEqual({ ok: true, ids: ['c_1', 'c_2'] });
    expect(readEntityIds(graph, 'root.id')).toEqual({ ok: true, ids: ['c_1'] });
  });

  it('given numeric ids, then they become decimal strings', () => {
    expect(readEntityIds({ data: [{ id: 42 }, { id: 7.5 }] }, 'data[].id')).toEqual({ ok: true, ids: ['42', '7.5'] });
  });

  it('given repeated ids, then all are returned: the caller charges a repeat once', () => {
    expect(readEntityIds({ data: [{ id: 'c_1' }, { id: 'c_1' }] }, 'data[].id')).toEqual({ ok: true, ids: ['c_1', 'c_1'] });
  });

  // Issue 18: a body of another shape was read as "no ids" and priced 0: the data went out free.
  it.each([
    [{}, 'data[].id', '$.data is missing'],
    [{ data: [{ id: 'c_1' }, {}] }, 'data[].id', '$.data[1].id is missing'],
    [{ data: [{ id: 'c_1' }, { id: null }] }, 'data[].id', '$.data[1].id is not an id'],
    [{ data: [{ id: '' }] }, 'data[].id', 'not an id'],
    [{ data: [{ id: true }] }, 'data[].id', 'not an id'],
    [{ data: [{ id: { nested: 'x' } }] }, 'data[].id', 'not an id'],
    [{ data: [{ id: ['c_9'] }] }, 'data[].id', 'not an id'],
    [{ data: ['c_8'] }, 'data[].id', '$.data[0] is not an object'],
    [{ data: { id: 'c_1' } }, 'data[].id', '$.data is not an array'],
    [[{ id: 'c_1' }], 'id', '$ is not an object'],
    ['c_1', 'id', '$ is not an object'],
    [null, 'root.id', '$ is not an object'],
    [{ data: [] }, 'id', '$.id is missing'],
    [{ id: 'x'.repeat(257) }, 'id', '257 characters'],
    [{ id: 'c\u0000' }, 'id', 'control character'],
  ])('given %j read with %s, then it is unpriceable: %s', (body, expression, problem) => {
    const r = readEntityIds(body, expression);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.problem).toContain(problem);
  });

  it('given an empty page, then it is priceable at no ids', () => {
    expect(readEntityIds({ data: [] }, 'data[].id')).toEqual({ ok: true, ids: [] });
  });

  it('given more ids than an event may carry, then it is unpriceable', () => {
    const r = readEntityIds({ data: Array.from({ length: 10_001 }, (_, i) => ({ id: `c_${i}` })) }, 'data[].id');
    expect(r.ok).toBe(false);
  });

  it('given a top-level array, then `[].id` reads its elements', () => {
    expect(readEntityIds([{ id: 'c_1' }, { id: 'c_2' }], '[].id')).toEqual({ ok: true, ids: ['c_1', 'c_2'] });
  });

  it('given an inherited property name, then it is not read from the prototype', () => {
    expect(readEntityIds({}, 'constructor')).toMatchObject({ ok: false });
  });

  it('given an invalid expression, then it throws', () => {
    expect(() => readEntityIds({}, 'data[0].id')).toThrow(/not an entity expression/);
  });
});

describe('parseEntityExpression', () => {
  it.each(['id', 'data[].id', 'data[].partner.id', 'nodes[].id', 'root.id', '[].id', 'company-id'])('given %s, then it is accepted', (e) => {
    expect(Array.isArray(parseEntityExpression(e))).toBe(true);
  });

  it.each(['', '.id', 'id.', 'data..id', 'data[0].id', 'data[]id', '$.id', 'data[][]'])('given "%s", then it is rejected with a reason', (e) => {
    expect(typeof parseEntityExpression(e)).toBe('string');
  });
});
