import { ConfigError, environmentSource, flag, hostPorts, oneOf, optionalUrl, optionalWhole, port, readConfig, text, url, whole } from './config';
import { adminToken, internalToken } from './env';
import { DevelopmentAdminToken, kafkaConfig, kafkaCrossCheck, KafkaEnv } from './shared-config';

describe('readConfig: the environment, typed and checked once', () => {
  const specs = {
    PORT: port(8080),
    POOL: whole(5, { min: 1, max: 100 }),
    LIMIT: optionalWhole({ min: 1 }),
    HOST: text('127.0.0.1'),
    FORMAT: oneOf(['json', 'text'] as const, 'json'),
    TIMING: flag(false),
    UPSTREAM: url('http://127.0.0.1:8090', ['http', 'https']),
    REDIS: optionalUrl(['redis']),
    BROKERS: hostPorts('127.0.0.1:9092'),
  };

  it('gives the defaults when nothing is set, and an empty value counts as unset', () => {
    for (const env of [{}, { PORT: '', POOL: '', HOST: '', FORMAT: '', TIMING: '', UPSTREAM: '', BROKERS: '' }]) {
      expect(readConfig(specs, env)).toEqual({
        PORT: 8080,
        POOL: 5,
        LIMIT: undefined,
        HOST: '127.0.0.1',
        FORMAT: 'json',
        TIMING: false,
        UPSTREAM: 'http://127.0.0.1:8090',
        REDIS: undefined,
        BROKERS: ['127.0.0.1:9092'],
      });
    }
  });

  it('reads good values', () => {
    const c = readConfig(specs, { PORT: '0', POOL: '100', LIMIT: '7', FORMAT: 'text', TIMING: '1', REDIS: 'redis://r:6379', BROKERS: 'a:9092, b:9093' });
    expect(c).toMatchObject({ PORT: 0, POOL: 100, LIMIT: 7, FORMAT: 'text', TIMING: true, REDIS: 'redis://r:6379', BROKERS: ['a:9092', 'b:9093'] });
    expect(readConfig(specs, { TIMING: 'true' }).TIMING).toBe(true);
    expect(readConfig(specs, { TIMING: '0' }).TIMING).toBe(false);
  });

  it.each([
    ['PORT', '80a', /^invalid configuration: PORT: must be a whole number from 0 to 65535 \(got "80a"\)$/],
    ['PORT', '65536', /PORT: must be a whole number from 0 to 65535/],
    ['POOL', '0', /POOL: must be a whole number from 1 to 100 \(got "0"\)/],
    ['POOL', '1.5', /POOL: must be a whole number/],
    ['LIMIT', '-1', /LIMIT: must be a whole number from 1/],
    ['FORMAT', 'yaml', /FORMAT: must be one of json, text \(got "yaml"\)/],
    ['TIMING', 'yes', /TIMING: must be true or false \(or 1 or 0\) \(got "yes"\)/],
    ['UPSTREAM', 'localhost:8090', /UPSTREAM: must be a http or https URL/],
    ['UPSTREAM', 'not a url', /UPSTREAM: must be a URL such as http:\/\/host:port/],
    ['REDIS', 'http://r:6379', /REDIS: must be a redis URL/],
    ['BROKERS', 'a:9092,b', /BROKERS: must be host:port\[,host:port\.\.\.\] \(got "a:9092,b"\)/],
  ])('refuses %s=%s, naming the variable', (name, value, message) => {
    expect(() => readConfig(specs, { [name]: value })).toThrow(ConfigError);
    expect(() => readConfig(specs, { [name]: value })).toThrow(message);
  });

  it('names every bad variable at once', () => {
    expect(() => readConfig(specs, { PORT: 'x', FORMAT: 'y' })).toThrow(/^invalid configuration: PORT: .*; FORMAT: must be one of/);
  });

  it('never repeats a password from a URL', () => {
    expect(() => readConfig({ DB: url('postgres://x', ['postgres']) }, { DB: 'mysql://u:s3cret@h/db' })).toThrow(/got "mysql:\/\/u:\*\*\*@h\/db"/);
  });

  it('checks across variables once each is valid on its own', () => {
    expect(() => readConfig(KafkaEnv, { KAFKA_MIN_INSYNC_REPLICAS: '2' }, kafkaCrossCheck)).toThrow(
      /^invalid configuration: KAFKA_MIN_INSYNC_REPLICAS: must not exceed KAFKA_REPLICATION_FACTOR \(2 > 1\)/,
    );
    expect(kafkaConfig(readConfig(KafkaEnv, { KAFKA_REPLICATION_FACTOR: '3', KAFKA_MIN_INSYNC_REPLICAS: '2' }, kafkaCrossCheck)).topicSettings).toEqual({
      replicationFactor: 3,
      minInsyncReplicas: 2,
      partitions: null,
    });
  });

  it('names the file node --env-file read', () => {
    expect(environmentSource(['--env-file=.env'])).toBe(' (environment, with .env read by node --env-file)');
    expect(environmentSource(['--env-file', 'prod.env'])).toContain('prod.env');
    expect(environmentSource([])).toBe('');
  });
});

describe('the tokens: required in production, a printed default in development', () => {
  it.each([
    ['TOLLGATE_ADMIN_TOKEN', adminToken, /^invalid configuration: TOLLGATE_ADMIN_TOKEN: must be set when NODE_ENV=production/],
    ['TOLLGATE_INTERNAL_TOKEN', internalToken, /^invalid configuration: TOLLGATE_INTERNAL_TOKEN: must be set when NODE_ENV=production/],
  ])('%s', (name, read, message) => {
    expect(() => read({ NODE_ENV: 'production' })).toThrow(message);
    expect(() => read({ NODE_ENV: 'production', [name]: '' })).toThrow(message);
    expect(read({ NODE_ENV: 'production', [name]: 'secret' })).toEqual({ token: 'secret', isDefault: false });
    expect(read({}).isDefault).toBe(true);
  });

  it('development falls back to the documented admin token', () => {
    expect(adminToken({ NODE_ENV: 'development' }).token).toBe(DevelopmentAdminToken);
  });
});
