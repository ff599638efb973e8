import { progress } from './progress';

function sink(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, write: (s: string) => writes.push(s) } as unknown as NodeJS.WriteStream };
}

describe('progress', () => {
  it('prints plain lines with the rate and ETA when stderr is not a terminal, at most every 5 seconds', () => {
    let t = 0;
    const { writes, stream } = sink(false);
    const p = progress('replay', 'events', 1000, stream, () => t);
    t = 1000;
    p.update(100);
    t = 2000;
    p.update(200); // within 5 s of the last line: not printed
    t = 6000;
    p.update(600);
    p.finish();
    expect(writes).toEqual([
      'replay: 100/1000 events  100 events/s  ETA 9s\n',
      'replay: 600/1000 events  100 events/s  ETA 4s\n',
      'replay: 600/1000 events  100 events/s  ETA 4s\n',
    ]);
  });

  it('redraws one bar in place on a terminal and ends it with a newline', () => {
    let t = 0;
    const { writes, stream } = sink(true);
    const p = progress('audit', 'orgs', 10, stream, () => t);
    t = 500;
    p.update(5);
    t = 1000;
    p.update(10);
    p.finish();
    expect(writes[0]).toBe(`\raudit [${'#'.repeat(15)}${'.'.repeat(15)}] 5/10 orgs  10 orgs/s  ETA 1s\x1b[K`);
    expect(writes[writes.length - 1]).toBe(`\raudit [${'#'.repeat(30)}] 10/10 orgs  10 orgs/s\x1b[K\n`);
  });
});
