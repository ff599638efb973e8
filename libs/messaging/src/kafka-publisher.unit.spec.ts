import { Producer, ProducerBatch } from 'kafkajs';
import { SerialisedPublisher } from './kafka-publisher';
import { MessageRefusedError, OutgoingMessage, recordBatchBytesBound } from './messaging';

/**
 * SerialisedPublisher over an in-memory producer that acknowledges each send when the test says so: what it sends
 * together, that no two sends are ever in flight (an idempotent producer's rule), and that a call resolves only once
 * its own send was acknowledged. kafka-messaging.int.spec.ts and spooling-publisher.int.spec.ts run it on a broker.
 */
const turn = () => new Promise<void>((r) => setImmediate(r));
const msg = (n: number, bytes = 10): OutgoingMessage => ({ key: `k${n}`, value: 'x'.repeat(bytes) });

function fakeProducer(name: string) {
  const sends: Array<{ batch: ProducerBatch; ack: () => void; fail: (e: Error) => void }> = [];
  let flying = 0;
  let most = 0;
  let disconnected = false;
  const producer = {
    sendBatch: (batch: ProducerBatch) =>
      new Promise((resolve, reject) => {
        most = Math.max(most, ++flying);
        const done = <A>(f: (a: A) => void) => (a: A) => {
          flying--;
          f(a);
        };
        sends.push({ batch, ack: () => done(resolve)([]), fail: done(reject) });
      }),
    disconnect: async () => {
      disconnected = true;
    },
  } as unknown as Producer;
  const sent = () => sends.map((s) => (s.batch.topicMessages ?? []).map((t) => `${t.topic}:${t.messages.map((m) => String(m.key)).join(',')}`).join(' '));
  return { name, producer, sends, sent, most: () => most, disconnected: () => disconnected };
}

function tracked(p: Promise<void>) {
  const s = { state: 'pending' as 'pending' | 'acked' | 'failed', error: undefined as Error | undefined };
  p.then(
    () => (s.state = 'acked'),
    (e: Error) => Object.assign(s, { state: 'failed', error: e }),
  );
  return s;
}

describe('SerialisedPublisher: one send in flight, calls coalesced', () => {
  it('with KAFKA_LINGER_MS, waits that long for a send to fill: calls of several turns go together', async () => {
    const p = fakeProducer('p1');
    const pub = new SerialisedPublisher(p.producer, () => Promise.reject(new Error('not needed')), 1024 * 1024, 30);
    const a = tracked(pub.publish('t1', [msg(1)]));
    await turn();
    await new Promise((r) => setTimeout(r, 5));
    const b = tracked(pub.publish('t1', [msg(2)]));
    await turn();
    expect(p.sends).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 40));
    expect(p.sent()).toEqual(['t1:k1,k2']);
    p.sends[0]!.ack();
    await turn();
    expect([a.state, b.state]).toEqual(['acked', 'acked']);
  });

  it('sends the calls of one turn together; calls made while it is in flight wait, then go in one send; each resolves on its own ack', async () => {
    const p = fakeProducer('p1');
    const pub = new SerialisedPublisher(p.producer, () => Promise.reject(new Error('not needed')), 1024 * 1024);
    const a = tracked(pub.publish('t1', [msg(1)]));
    const b = tracked(pub.publish('t2', [msg(2)]));
    await turn();
    expect(p.sent()).toEqual(['t1:k1 t2:k2']);
    const c = tracked(pub.publish('t1', [msg(3)]));
    const d = tracked(pub.publish('t1', [msg(4), msg(5)]));
    await turn();
    await turn();
    // Never two sends in flight: c and d wait for the first ack.
    expect(p.sends).toHaveLength(1);
    expect([a.state, c.state]).toEqual(['pending', 'pending']);
    p.sends[0]!.ack();
    await turn();
    expect([a.state, b.state, c.state, d.state]).toEqual(['acked', 'acked', 'pending', 'pending']);
    expect(p.sent()).toEqual(['t1:k1 t2:k2', 't1:k3,k4,k5']);
    expect(p.sends[1]!.batch.acks).toBe(-1);
    p.sends[1]!.ack();
    await turn();
    expect([c.state, d.state]).toEqual(['acked', 'acked']);
    expect(p.most()).toBe(1);
  });

  it('keeps a send within maxBatchBytes: calls beyond it wait for the next send, one too large alone still goes alone', async () => {
    const p = fakeProducer('p1');
    const one = recordBatchBytesBound([msg(0, 100)]);
    const pub = new SerialisedPublisher(p.producer, () => Promise.reject(new Error('not needed')), 2 * one);
    const calls = [pub.publish('t', [msg(1, 100)]), pub.publish('t', [msg(2, 100)]), pub.publish('t', [msg(3, 100)]), pub.publish('t', [msg(4, 500)]), pub.publish('t', [msg(5, 100)])];
    for (let i = 0; i < 4; i++) {
      await turn();
      p.sends[i]!.ack();
    }
    await Promise.all(calls);
    expect(p.sent()).toEqual(['t:k1,k2', 't:k3', 't:k4', 't:k5']);
    expect(p.most()).toBe(1);
  });

  it('a failed send fails its own calls only, with the broker error; the next send goes on', async () => {
    const p = fakeProducer('p1');
    const pub = new SerialisedPublisher(p.producer, () => Promise.reject(new Error('not needed')), 1024 * 1024);
    const a = tracked(pub.publish('t', [msg(1)]));
    await turn();
    const b = tracked(pub.publish('t', [msg(2)]));
    p.sends[0]!.fail(new Error('NOT_LEADER_FOR_PARTITION'));
    await turn();
    expect(a).toMatchObject({ state: 'failed', error: new Error('NOT_LEADER_FOR_PARTITION') });
    expect(b.state).toBe('pending');
    p.sends[1]!.ack();
    await turn();
    expect(b.state).toBe('acked');
  });

  it('after a refusal of several messages for their content, replaces the producer before the next send; the calls get MessageRefusedError', async () => {
    const first = fakeProducer('p1');
    const second = fakeProducer('p2');
    let connects = 0;
    const pub = new SerialisedPublisher(first.producer, async () => (connects++, second.producer), 1024 * 1024);
    const a = tracked(pub.publish('t', [msg(1), msg(2)]));
    await turn();
    const b = tracked(pub.publish('t', [msg(3)]));
    first.sends[0]!.fail(Object.assign(new Error('too large'), { type: 'MESSAGE_TOO_LARGE' }));
    await turn();
    await turn();
    expect(a.state).toBe('failed');
    expect(a.error).toBeInstanceOf(MessageRefusedError);
    expect(first.disconnected()).toBe(true);
    expect(connects).toBe(1);
    // The next send goes on the new producer, and only once the old one is gone.
    expect(first.sends).toHaveLength(1);
    expect(second.sent()).toEqual(['t:k3']);
    second.sends[0]!.ack();
    await turn();
    expect(b.state).toBe('acked');
  });

  it('close sends what was published before it and waits for the acks, then disconnects; a later publish is refused', async () => {
    const p = fakeProducer('p1');
    const pub = new SerialisedPublisher(p.producer, () => Promise.reject(new Error('not needed')), 1024 * 1024);
    const a = tracked(pub.publish('t', [msg(1)]));
    await turn();
    const b = tracked(pub.publish('t', [msg(2)]));
    let closed = false;
    const closing = pub.close().then(() => (closed = true));
    await expect(pub.publish('t', [msg(3)])).rejects.toThrow('publisher is closed');
    p.sends[0]!.ack();
    await turn();
    expect(closed).toBe(false);
    expect(p.disconnected()).toBe(false);
    p.sends[1]!.ack();
    await closing;
    expect([a.state, b.state]).toEqual(['acked', 'acked']);
    expect(p.sent()).toEqual(['t:k1', 't:k2']);
    expect(p.disconnected()).toBe(true);
  });
});
