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

/**
 * The ids an expression selects in a parsed JSON body, in document order. Strings are kept as they are and
 * finite numbers become their decimal string; missing values, nulls, booleans, objects and arrays are
 * skipped. Duplicates are kept: the caller decides how a repeated id is charged (once per response).
 */
export function readEntityIds(json: unknown, expression: string): string[] {
  const steps = parseEntityExpression(expression);
  if (typeof steps === 'string') throw new Error(`entity expression: ${steps}`);
  let values: unknown[] = [json];
  for (const step of steps) {
    const next: unknown[] = [];
    for (const value of values) {
      let v: unknown = value;
      if (step.property !== null) {
        if (!isRecord(v) || !Object.prototype.hasOwnProperty.call(v, step.property)) continue;
        v = v[step.property];
      }
      if (step.each) {
        if (Array.isArray(v)) next.push(...(v as unknown[]));
      } else {
        next.push(v);
      }
    }
    values = next;
  }
  const ids: string[] = [];
  for (const v of values) {
    if (typeof v === 'string' && v.length > 0) ids.push(v);
    else if (typeof v === 'number' && Number.isFinite(v)) ids.push(String(v));
  }
  return ids;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
