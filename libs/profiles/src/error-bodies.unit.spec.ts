import { renderErrorBody } from './error-bodies';

describe('renderErrorBody', () => {
  it('given a value that is exactly a placeholder, then the number replaces it with its type (byte-exact to the trace seed)', () => {
    const template = {
      error: 'operational_rate_limit_exceeded',
      message: 'Too many requests. Please wait before retrying.',
      retry_after_seconds: '{retry_after}',
    };
    expect(JSON.stringify(renderErrorBody(template, { retry_after: 30 }))).toBe(
      '{"error":"operational_rate_limit_exceeded","message":"Too many requests. Please wait before retrying.","retry_after_seconds":30}',
    );
  });

  it('given requested and shortfall, then both stay numbers', () => {
    const template = { error: 'credit_exhausted', message: 'Insufficient credits to complete this request.', requested: '{requested}', shortfall: '{shortfall}' };
    expect(JSON.stringify(renderErrorBody(template, { requested: 50, shortfall: 12 }))).toBe(
      '{"error":"credit_exhausted","message":"Insufficient credits to complete this request.","requested":50,"shortfall":12}',
    );
  });

  it('given placeholders inside longer strings, then they are interpolated', () => {
    expect(renderErrorBody({ message: 'Retry after {retry_after} s ({retry_after}s)' }, { retry_after: 7 })).toEqual({ message: 'Retry after 7 s (7s)' });
  });

  it('given nested objects and lists, then they are rendered too', () => {
    expect(renderErrorBody({ detail: { wait: '{retry_after}', hints: ['{retry_after}', 'x'] } }, { retry_after: 3 })).toEqual({ detail: { wait: 3, hints: [3, 'x'] } });
  });

  it('given a placeholder without a value, then it is left as written', () => {
    expect(renderErrorBody({ a: '{shortfall}', b: 'need {shortfall}' }, {})).toEqual({ a: '{shortfall}', b: 'need {shortfall}' });
  });

  it('given non-string values, then they are copied unchanged', () => {
    expect(renderErrorBody({ code: 429, ok: false, none: null }, { retry_after: 1 })).toEqual({ code: 429, ok: false, none: null });
  });

  it('given a rendered body, then the template is not modified (it is reused for every response)', () => {
    const template = { retry_after: '{retry_after}', detail: { wait: '{retry_after}' } };
    const body = renderErrorBody(template, { retry_after: 9 });
    (body.detail as Record<string, unknown>).wait = 'changed';
    expect(template).toEqual({ retry_after: '{retry_after}', detail: { wait: '{retry_after}' } });
  });
});
