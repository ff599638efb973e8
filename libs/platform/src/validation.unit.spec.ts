import 'reflect-metadata';
import { BadRequestException } from '@nestjs/common';
import { IsOptional } from 'class-validator';
import { fieldValidationPipe, IsText, MaxWholeNumber, PathIdPipe, QueryWholeNumber, textProblem, wholeNumberProblem } from './validation';

class Page {
  @IsOptional()
  @QueryWholeNumber(0)
  offset?: number;
}

class Named {
  @IsText(1, 10)
  name!: string;
}

async function refusal(metatype: new () => object, value: unknown): Promise<unknown> {
  try {
    await fieldValidationPipe().transform(value, { type: 'query', metatype });
  } catch (e) {
    expect(e).toBeInstanceOf(BadRequestException);
    return (e as BadRequestException).getResponse();
  }
  throw new Error('expected a 400');
}

describe('whole numbers at the edge', () => {
  it('takes 0 to 2^53 - 1 and nothing a JSON number cannot hold exactly', () => {
    expect(wholeNumberProblem(0, 0)).toBeNull();
    expect(wholeNumberProblem(MaxWholeNumber, 0)).toBeNull();
    for (const bad of [2 ** 53, 1e20, -1, 1.5, NaN, Infinity, '5', null]) expect(wholeNumberProblem(bad, 0)).toMatch(/whole number from 0/);
  });

  it('reads a query parameter only as decimal digits', async () => {
    expect(await fieldValidationPipe().transform({ offset: '9007199254740991' }, { type: 'query', metatype: Page })).toEqual({ offset: MaxWholeNumber });
    for (const bad of ['100000000000000000000', '9223372036854775808', '1e20', '0x10', '1.5', ' 5', '+5', '', '-1', ['1', '2']]) {
      expect(await refusal(Page, { offset: bad })).toMatchObject({ error: 'invalid_request', fields: [{ field: 'offset', problem: `must be a whole number from 0 to ${MaxWholeNumber}` }] });
    }
  });
});

describe('text at the edge', () => {
  it('takes any script, emoji included', () => {
    expect(textProblem('merci 🎉 ü', 1, 20)).toBeNull();
  });

  it('refuses NUL bytes, control characters, lone surrogates, wrong lengths and non-strings, naming the problem', () => {
    expect(textProblem('a\u0000b', 1, 10)).toMatch(/NUL character \(U\+0000\) at index 1/);
    expect(textProblem('a\nb', 1, 10)).toMatch(/control character \(U\+000A\)/);
    expect(textProblem('\ud800', 1, 10)).toMatch(/unpaired surrogate/);
    expect(textProblem('\udc00x', 1, 10)).toMatch(/unpaired surrogate/);
    expect(textProblem('', 1, 10)).toMatch(/1-10 characters/);
    expect(textProblem(5, 1, 10)).toBe('must be a string');
  });

  it('names the body field that breaks the rule', async () => {
    expect(await refusal(Named, { name: 'x\u0000' })).toMatchObject({ fields: [{ field: 'name', problem: expect.stringContaining('NUL') }] });
  });

  it('refuses a malformed id in the path with a 400 naming the parameter, and passes a well-formed one on', () => {
    const pipe = new PathIdPipe('org');
    expect(pipe.transform('acme')).toBe('acme');
    for (const bad of ['\u0000', 'a\u0001', 'o'.repeat(201), '\ud800', '']) {
      try {
        pipe.transform(bad);
        throw new Error('expected a 400');
      } catch (e) {
        expect((e as BadRequestException).getResponse()).toMatchObject({ error: 'invalid_request', fields: [{ field: 'org' }] });
      }
    }
  });
});
