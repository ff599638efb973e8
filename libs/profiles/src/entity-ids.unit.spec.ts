import { parseEntityExpression, readEntityIds } from './entity-ids';

describe('readEntityIds', () => {
  it('given a single record, then `id` reads its id', () => {
    expect(readEntityIds({ id: 'c_1', name: 'Acme' }, 'id')).toEqual(['c_1']);
  });

  it('given a page, then `data[].id` reads every id in order', () => {
    expect(readEntityIds({ data: [{ id: 'c_1' }, { id: 'c_2' }, { id: 'c_3' }], next_cursor: null }, 'data[].id')).toEqual(['c_1', 'c_2', 'c_3']);
  });

  it('given partnerships, then `data[].partner.id` reads the partner ids', () => {
    const body = { data: [{ partner: { id: 'c_7' }, kind: 'supplier' }, { partner: { id: 'c_9' } }] };
    expect(readEntityIds(body, 'data[].partner.id')).toEqual(['c_7', 'c_9']);
  });

  it('given a graph, then `nodes[].id` and `root.id` read the nodes and the queried company', () => {
    const graph = { root: { id: 'c_1' }, nodes: [{ id: 'c_1' }, { id: 'c_2' }], edges: [] };
    expect(readEntityIds(graph, 'nodes[].id')).toEqual(['c_1', 'c_2']);
    expect(readEntityIds(graph, 'root.id')).toEqual(['c_1']);
  });

  it('given numeric ids, then they become decimal strings', () => {
    expect(readEntityIds({ data: [{ id: 42 }, { id: 7.5 }] }, 'data[].id')).toEqual(['42', '7.5']);
  });

  it('given repeated ids, then all are returned: the caller charges a repeat once', () => {
    expect(readEntityIds({ data: [{ id: 'c_1' }, { id: 'c_1' }] }, 'data[].id')).toEqual(['c_1', 'c_1']);
  });

  it('given missing, null, empty, boolean or structured values, then they are skipped', () => {
    const body = { data: [{ id: 'c_1' }, {}, { id: null }, { id: '' }, { id: true }, { id: { nested: 'x' } }, { id: ['c_9'] }, 'c_8', null] };
    expect(readEntityIds(body, 'data[].id')).toEqual(['c_1']);
  });

  it('given a body of another shape, then nothing is read', () => {
    expect(readEntityIds({ data: { id: 'c_1' } }, 'data[].id')).toEqual([]);
    expect(readEntityIds([{ id: 'c_1' }], 'id')).toEqual([]);
    expect(readEntityIds('c_1', 'id')).toEqual([]);
    expect(readEntityIds(null, 'root.id')).toEqual([]);
  });

  it('given a top-level array, then `[].id` reads its elements', () => {
    expect(readEntityIds([{ id: 'c_1' }, { id: 'c_2' }], '[].id')).toEqual(['c_1', 'c_2']);
  });

  it('given an inherited property name, then it is not read from the prototype', () => {
    expect(readEntityIds({}, 'constructor')).toEqual([]);
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
