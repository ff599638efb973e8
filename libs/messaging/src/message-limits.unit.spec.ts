import { ConfigError } from '@tollgate/platform';
import { DefaultMaxMessageBytes, maxMessageBytesFromEnv } from './kafka-messaging';
import { messageRefusal } from './kafka-publisher';
import { MessageRefusedError, recordBatchBytesBound } from './messaging';

describe('KAFKA_MAX_MESSAGE_BYTES', () => {
  it('defaults to 1 MiB (the broker default message.max.bytes, rounded down) and reads a whole number of bytes', () => {
    expect(maxMessageBytesFromEnv({})).toBe(DefaultMaxMessageBytes);
    expect(DefaultMaxMessageBytes).toBe(1048576);
    expect(maxMessageBytesFromEnv({ KAFKA_MAX_MESSAGE_BYTES: '2097152' })).toBe(2097152);
  });

  it('refuses anything else, naming the variable', () => {
    for (const bad of ['1k', '-1', '1000', '1.5', '2000000000']) {
      expect(() => maxMessageBytesFromEnv({ KAFKA_MAX_MESSAGE_BYTES: bad })).toThrow(ConfigError);
      expect(() => maxMessageBytesFromEnv({ KAFKA_MAX_MESSAGE_BYTES: bad })).toThrow(/KAFKA_MAX_MESSAGE_BYTES/);
    }
  });
});

describe('which broker errors refuse a message for good', () => {
  it('a refusal for the messages size or content, itself or wrapped by kafkajs, is a MessageRefusedError', () => {
    const tooLarge = Object.assign(new Error('The request included a message larger than the max message size the server will accept'), { type: 'MESSAGE_TOO_LARGE', retriable: false });
    expect(messageRefusal(tooLarge)).toBeInstanceOf(MessageRefusedError);
    expect(messageRefusal(tooLarge)?.type).toBe('MESSAGE_TOO_LARGE');
    expect(messageRefusal(Object.assign(new Error('retries exceeded'), { cause: Object.assign(new Error('x'), { type: 'INVALID_RECORD' }) }))?.type).toBe('INVALID_RECORD');
    expect(messageRefusal(Object.assign(new Error('x'), { type: 'RECORD_LIST_TOO_LARGE' }))?.type).toBe('RECORD_LIST_TOO_LARGE');
  });

  it('the broker state (connections, leaders, sequences, a CRC failure in transit) is not: it is retried', () => {
    for (const type of ['NOT_LEADER_FOR_PARTITION', 'OUT_OF_ORDER_SEQUENCE_NUMBER', 'NOT_ENOUGH_REPLICAS', 'CORRUPT_MESSAGE', 'REQUEST_TIMED_OUT', 'TOPIC_AUTHORIZATION_FAILED']) {
      expect(messageRefusal(Object.assign(new Error(type), { type }))).toBeNull();
    }
    expect(messageRefusal(new Error('Connection error: connect ECONNREFUSED'))).toBeNull();
  });
});

describe('recordBatchBytesBound', () => {
  it('counts the batch header, every field at its widest varint, key, value and headers in UTF-8 bytes', () => {
    expect(recordBatchBytesBound([])).toBe(61);
    expect(recordBatchBytesBound([{ key: 'k', value: 'v' }])).toBe(61 + 36 + 2);
    expect(recordBatchBytesBound([{ key: 'k', value: 'é', headers: { h: 'x' } }])).toBe(61 + 36 + 1 + 2 + 10 + 2);
    expect(recordBatchBytesBound([{ key: 'k', value: Buffer.alloc(100) }, { key: 'k', value: 'v' }])).toBe(61 + 36 + 101 + 36 + 2);
  });
});
