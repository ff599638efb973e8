import { applyDecorators, BadRequestException, Param, PipeTransform, ValidationError, ValidationPipe } from '@nestjs/common';
import { Transform } from 'class-transformer';
import { ValidateBy, ValidationOptions } from 'class-validator';
import { forbiddenCharacterProblem } from '@tollgate/contracts';

/**
 * Input checked at the edge, so nothing malformed reaches PostgreSQL (where a NUL byte, a lone surrogate or an
 * integer past bigint is an error, i.e. a 500). Every refusal is the same 400 body, naming each bad field:
 * `{"error":"invalid_request","message","fields":[{field,problem}]}`.
 */

/** The 400 for one bad field (a path or query parameter, a body field, a header). */
export function fieldError(field: string, problem: string): BadRequestException {
  return new BadRequestException({ error: 'invalid_request', message: `${field}: ${problem}`, fields: [{ field, problem }] });
}

function flatten(errors: ValidationError[], parent = ''): Array<{ field: string; problem: string }> {
  return errors.flatMap((e) => {
    const field = parent ? `${parent}.${e.property}` : e.property;
    const own = Object.values(e.constraints ?? {}).map((problem) => ({ field, problem }));
    return [...own, ...flatten(e.children ?? [], field)];
  });
}

/** DTO validation whose 400 names every bad field: `{"error":"invalid_request","message","fields":[{field,problem}]}`. */
export function fieldValidationPipe(): ValidationPipe {
  return new ValidationPipe({
    transform: true,
    whitelist: true,
    forbidNonWhitelisted: true,
    exceptionFactory: (errors) => {
      const fields = flatten(errors);
      return new BadRequestException({
        error: 'invalid_request',
        message: fields.map((f) => `${f.field}: ${f.problem}`).join('; '),
        fields,
      });
    },
  });
}

// ---- whole numbers ------------------------------------------------------------------------------------------

/**
 * The largest whole number the API takes anywhere: 2^53 - 1, the last one a JSON number (and a JS number) holds
 * exactly. Beyond it an offset or a sequence number is bad input (SPEC §8), never a PostgreSQL bigint overflow.
 */
export const MaxWholeNumber = Number.MAX_SAFE_INTEGER;

/** Why `value` is not a whole number in min..max, or null when it is one. */
export function wholeNumberProblem(value: unknown, min: number, max = MaxWholeNumber): string | null {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    return `must be a whole number from ${min} to ${max}`;
  }
  return null;
}

/** A JSON number that is a whole number in min..max (at most 2^53 - 1). */
export function IsWholeNumber(min: number, max = MaxWholeNumber, options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isWholeNumber',
      constraints: [min, max],
      validator: { validate: (v) => wholeNumberProblem(v, min, max) === null, defaultMessage: () => `must be a whole number from ${min} to ${max}` },
    },
    options,
  );
}

/**
 * A query parameter that is a whole number in min..max, written as decimal digits (an optional leading "-"): "1e3",
 * "0x10", " 5", "" or a repeated parameter are refused, not read as some other number.
 */
export function QueryWholeNumber(min: number, max = MaxWholeNumber): PropertyDecorator {
  return applyDecorators(
    Transform(({ value }: { value: unknown }) => (typeof value === 'string' && /^-?\d{1,400}$/.test(value) ? Number(value) : value)),
    IsWholeNumber(min, max),
  );
}

// ---- text ---------------------------------------------------------------------------------------------------

/**
 * Why `value` is not text of min..max characters, or null when it is. Text is well-formed Unicode without control
 * characters (the rule event ids and paths follow, libs/contracts): PostgreSQL refuses a NUL byte in text and
 * jsonb, a lone surrogate cannot be encoded as UTF-8, and a control character in a name or reason would reach the
 * operator's terminal (the CLI) as it is.
 */
export function textProblem(value: unknown, min: number, max: number): string | null {
  if (typeof value !== 'string') return 'must be a string';
  if (value.length < min || value.length > max) return `must be ${min}-${max} characters long (got ${value.length})`;
  const forbidden = forbiddenCharacterProblem(value);
  return forbidden ? `must be well-formed Unicode without control characters; it ${forbidden}` : null;
}

/** A string of min..max characters, well-formed Unicode, no control characters (see textProblem). */
export function IsText(min: number, max: number, options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isText',
      constraints: [min, max],
      validator: {
        validate: (v) => textProblem(v, min, max) === null,
        defaultMessage: (args) => textProblem(args?.value, min, max) ?? 'must be text',
      },
    },
    options,
  );
}

// ---- path parameters ------------------------------------------------------------------------------------------

/** The longest id a path may name: longer than any id the API gives out (org ids are at most 63 characters). */
export const MaxPathIdLength = 200;

/**
 * An id in the path (an org, a key): text of 1..200 characters (see textProblem), else a 400 naming the
 * parameter. A well-formed id that names nothing is left to the handler, which answers 404: malformed is the
 * caller's mistake in writing the request, unknown is a fact about the data.
 */
export class PathIdPipe implements PipeTransform<unknown, string> {
  constructor(private readonly name: string) {}

  transform(value: unknown): string {
    const problem = textProblem(value, 1, MaxPathIdLength);
    if (problem) throw fieldError(this.name, problem);
    return value as string;
  }
}

/** `@PathId('org') org: string`: the path parameter, checked by PathIdPipe. */
export function PathId(name: string): ParameterDecorator {
  return Param(name, new PathIdPipe(name));
}
