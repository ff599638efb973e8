import { EventLimits, forbiddenCharacterAt } from '@tollgate/contracts';

/**
 * Entity expressions: where the billable ids sit in an upstream JSON body. A dotted path whose steps are a
 * property name (`id`, `partner`), a property holding an array to fan out over (`data[]`), or `[]` alone
 * when the value itself is an array. Examples: `id`, `data[].id`, `data[].partner.id`, `nodes[].id`, `root.id`.
 */
interface Step {
  property: string | null;
  each: boolean;
}

const stepPattern = /^([A-Za-z_][A-Za-z0-9_-]*)?(\[\])?$/;

/** The steps of an expression, or the reason it is not one. */
export function parseEntityExpression(expression: string): Step[] | string {
  if (expression.length === 0) return 'must not be empty';
  const steps: Step[] = [];
  for (const part of expression.split('.')) {
    const m = stepPattern.exec(part);
    if (!m || part.length === 0) {
      return `"${expression}" is not an entity expression: "${part}" must be a name, name[] or [] (e.g. data[].id)`;
    }
    steps.push({ property: m[1] ?? null, each: m[2] !== undefined });
  }
  return steps;
}

/** The ids a body is priced by, or why it can't be priced (its shape is not the one the route's expression reads). */
export type EntityReading = { ok: true; ids: string[] } | { ok: false; problem: string };

/**
 * The ids an expression selects in a parsed JSON body, in document order, read strictly: the body must have the
 * shape the expression describes, or it is unpriceable (answered 502, never handed out free). Every named
 * property must be there, every `[]` must be an array (it may be empty), and every id a non-empty string or a
 * finite number (which becomes its decimal string), at most `EventLimits.entityIdLength` characters with no
 * control character, so that the event carrying them is one metering accepts. Duplicates are kept: the caller
 * decides how a repeated id is charged (once per response).
 */
export function readEntityIds(json: unknown, expression: string): EntityReading {
  const steps = parseEntityExpression(expression);
  if (typeof steps === 'string') throw new Error(`entity expression: ${steps}`);
  // A priceable body (the paid path) is read without spelling out where each value sits; only a body that fails
  // is read again with paths, for the problem to name the place.
  const fast = read(json, steps, expression, false);
  return fast.ok ? fast : read(json, steps, expression, true);
}

function read(json: unknown, steps: Step[], expression: string, paths: boolean): EntityReading {
  let values: Array<{ at: string; value: unknown }> = [{ at: '$', value: json }];
  for (const step of steps) {
    const next: typeof values = [];
    for (const { at, value } of values) {
      let v: unknown = value;
      let here = at;
      if (step.property !== null) {
        if (paths) here = `${at}.${step.property}`;
        if (!isRecord(v)) return { ok: false, problem: `${at} is not an object (reading ${expression})` };
        if (!Object.prototype.hasOwnProperty.call(v, step.property)) return { ok: false, problem: `${here} is missing (reading ${expression})` };
        v = v[step.property];
      }
      if (step.each) {
        if (!Array.isArray(v)) return { ok: false, problem: `${here} is not an array (reading ${expression})` };
        (v as unknown[]).forEach((item, i) => next.push({ at: paths ? `${here}[${i}]` : here, value: item }));
      } else {
        next.push({ at: here, value: v });
      }
    }
    values = next;
  }
  if (values.length > EventLimits.entities) return { ok: false, problem: `${values.length} ids, over the ${EventLimits.entities} a call may be priced for` };
  const ids: string[] = [];
  for (const { at, value } of values) {
    const id = typeof value === 'string' ? value : typeof value === 'number' && Number.isFinite(value) ? String(value) : null;
    if (id === null || id.length === 0) return { ok: false, problem: `${at} is not an id (a non-empty string or a number): ${describe(value)}` };
    if (id.length > EventLimits.entityIdLength) return { ok: false, problem: `${at} is ${id.length} characters, over the ${EventLimits.entityIdLength} an id may have` };
    if (forbiddenCharacterAt(id) >= 0) return { ok: false, problem: `${at} holds a control character` };
    ids.push(id);
  }
  return { ok: true, ids };
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? 'an empty string' : typeof v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
