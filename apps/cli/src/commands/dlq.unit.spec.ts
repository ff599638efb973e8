import { parseArgs } from './dlq';

describe('npm run dlq arguments', () => {
  it('reads list and replay selections', () => {
    expect(parseArgs(['list'])).toEqual({ command: 'list', pending: false, json: false });
    expect(parseArgs(['list', '--json', '--pending'])).toEqual({ command: 'list', pending: true, json: true });
    expect(parseArgs(['replay', '--all'])).toEqual({ command: 'replay', selection: { pending: true } });
    expect(parseArgs(['replay', '--id', '7', '--id', '9'])).toEqual({ command: 'replay', selection: { ids: ['7', '9'], offsets: undefined, partition: undefined } });
    expect(parseArgs(['replay', '--offset', '42', '--partition', '3'])).toEqual({ command: 'replay', selection: { ids: undefined, offsets: ['42'], partition: 3 } });
  });

  it('says what is wrong with anything else', () => {
    expect(parseArgs([])).toBe('say list or replay');
    expect(parseArgs(['purge'])).toBe('unknown command "purge"');
    expect(parseArgs(['replay'])).toBe('say which dead letters: --all, --id ID or --offset N');
    expect(parseArgs(['replay', '--id'])).toBe('--id needs a whole number');
    expect(parseArgs(['replay', '--id', 'x'])).toBe('--id needs a whole number');
    expect(parseArgs(['replay', '--all', '--id', '1'])).toMatch(/^--all replays every pending dead letter/);
    expect(parseArgs(['replay', '--id', '1', '--partition', '0'])).toBe('--partition narrows --offset: give an --offset too');
    expect(parseArgs(['list', '--all'])).toBe('unknown argument "--all"');
  });
});
