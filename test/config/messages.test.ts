// Config problems in the reader's words: what to type instead, the key they probably meant, every missing file,
// and the offending line with a caret under the column.

import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  type ConfigIssue,
  formatIssue,
  formatIssueWithSource,
  parseConfig,
} from '../../src/config/load.js';
import { closestKey, editDistance, unknownKeyMessage } from '../../src/config/messages.js';
import { configSchema } from '../../src/config/schema.js';
import { keysAllowedAt } from '../../src/config/schema-walk.js';

const FILE = '/etc/wsgate/config.yaml';

const VALID = `listeners:
  - { name: public, address: 127.0.0.1, port: 8080 }
routes:
  - { name: chat, match: { path: /chat }, pool: chat }
pools:
  chat:
    hashKey: query:user
    backends: [ws://127.0.0.1:3001]
workers: 1
`;

function issuesOf(text: string): ConfigIssue[] {
  try {
    parseConfig(text, FILE, {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).issues];
  }
  throw new Error('expected the config to be rejected');
}

function onlyIssue(text: string): ConfigIssue {
  const issues = issuesOf(text);
  expect(issues.map(formatIssue)).toHaveLength(1);
  return issues[0] as ConfigIssue;
}

describe('what to type instead', () => {
  it('a number or `auto`, where a number or auto would do', () => {
    const issue = onlyIssue(VALID.replace('workers: 1', 'workers: two'));
    expect(formatIssue(issue)).toBe(`${FILE}:9:10: workers: must be a number or \`auto\``);
  });

  it('a number, a whole number, true or false, one of the choices', () => {
    expect(onlyIssue(VALID.replace('port: 8080', 'port: eighty')).message).toBe('must be a number');
    expect(onlyIssue(VALID.replace('port: 8080', 'port: 80.5')).message).toBe('must be a whole number');
    expect(onlyIssue(VALID.replace('port: 8080', 'port: 80800')).message).toBe('must be at most 65535');
    expect(onlyIssue(`${VALID}limits: { maxConnections: 0 }\n`).message).toBe('must be more than 0');
    expect(onlyIssue(`${VALID}log: { level: loud }\n`).message).toBe(
      'must be one of `trace`, `debug`, `info`, `warn`, `error`, `fatal` or `silent`',
    );
    const ws = VALID.replace(
      '    hashKey: query:user\n',
      '    hashKey: query:user\n    healthCheck: { websocket: yes }\n',
    );
    expect(onlyIssue(ws)).toMatchObject({ path: 'pools.chat.healthCheck.websocket', message: 'must be true or false' });
    expect(onlyIssue(`${VALID}timeouts: { idle: [1] }\n`).message).toBe(
      'must be a duration: 250ms, 5s, 2m, 1h, 1d, or a number of milliseconds',
    );
    expect(onlyIssue(VALID.replace('routes:\n  - {', 'routes:\n  - {pool: chat}\n  - {'))).toMatchObject({
      path: 'routes[0].name',
      message: 'is required',
    });
    expect(onlyIssue(`${VALID}admin: 8077\n`).message).toBe('must be a map of keys');
    expect(onlyIssue(VALID.replace('backends: [ws://127.0.0.1:3001]', 'backends: ws://127.0.0.1:3001')).message).toBe(
      'must be a list',
    );
  });

  it('a union branch that took the value says what is wrong inside it', () => {
    const url = onlyIssue(VALID.replace('[ws://127.0.0.1:3001]', '[{ url: http://127.0.0.1:3001 }]'));
    expect(url).toMatchObject({
      path: 'pools.chat.backends[0].url',
      message: '"http://127.0.0.1:3001" must use ws:// or wss://',
    });
    expect(onlyIssue(VALID.replace('workers: 1', 'workers: 0')).message).toBe('must be at least 1');
  });

  it('never in the validation library words', () => {
    const broken = [
      VALID.replace('workers: 1', 'workers: two'),
      VALID.replace('port: 8080', 'port: "8080"'),
      VALID.replace('hashKey: query:user', 'hashKey: 3'),
      `${VALID}listeners: {}\n`.replace(/^listeners:\n.*\n/, ''),
      `${VALID}shutdown: { acceptDelay: true }\n`,
      `${VALID}limits: { perConnection: { maxMessageBytes: [] } }\n`,
      VALID.replace('pools:\n  chat:', 'pools:\n  "bad name":'),
      `${VALID}admin: { token: short }\n`,
    ];
    for (const text of broken) {
      const messages = issuesOf(text).map((i) => i.message);
      expect(messages.length, text).toBeGreaterThan(0);
      for (const m of messages) expect(m).not.toMatch(/Invalid|expected|received|Too (small|big)|Unrecognized/);
    }
  });
});

describe('unknown keys', () => {
  it('did you mean the allowed key at that path (edit distance, case ignored)', () => {
    const issue = onlyIssue(VALID.replace('    hashKey: query:user', '    hashkey: query:user'));
    expect(formatIssue(issue)).toBe(
      `${FILE}:7:5: pools.chat.hashkey: unknown key \`hashkey\`; did you mean \`hashKey\`?`,
    );
    // The key they meant is then missing too, and said so: both lines, at their own places.
    expect(issuesOf(VALID.replace('routes:', 'route:')).map(formatIssue)).toEqual([
      `${FILE}:1:1: routes: is required`,
      `${FILE}:3:1: route: unknown key \`route\`; did you mean \`routes\`?`,
    ]);
    const check = VALID.replace('    hashKey: query:user\n', '    hashKey: query:user\n    helthCheck: {}\n');
    expect(onlyIssue(check).message).toBe('unknown key `helthCheck`; did you mean `healthCheck`?');
  });

  it('without a close key, lists what is allowed there', () => {
    const issue = onlyIssue(VALID.replace('    hashKey: query:user\n', '    hashKey: query:user\n    frobnicate: 1\n'));
    expect(issue.message).toBe(
      'unknown key `frobnicate`; allowed here: `backends`, `balanceFactor`, `discovery`, `hashKey`, `healthCheck`, `outlier`, `panicThreshold`, `proxyProtocol`, `rebalance`, `sticky`, `tls`',
    );
  });

  it('knows the keys of every object, through lists, maps, unions and defaults', () => {
    expect(keysAllowedAt(configSchema, [])).toContain('workersAccept');
    expect(keysAllowedAt(configSchema, ['pools', 'any-name', 'backends', 0]).sort()).toEqual(['url', 'weight']);
    expect(keysAllowedAt(configSchema, ['listeners', 3, 'tls', 'sni', 'a.example'])).toEqual(['cert', 'key']);
    expect(keysAllowedAt(configSchema, ['routes', 0, 'limits', 'perConnection', 'backendToClient'])).toContain(
      'maxMessageBytes',
    );
    expect(keysAllowedAt(configSchema, ['workers'])).toEqual([]);
  });

  it('edit distance counts a transposition as one edit; slips only', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('pool', 'polo')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(closestKey('pol', ['pool', 'name'])).toBe('pool');
    expect(closestKey('xyz', ['pool', 'name'])).toBeUndefined();
    expect(closestKey('maxconnectionsperip', ['maxConnections', 'maxConnectionsPerIp'])).toBe('maxConnectionsPerIp');
    expect(unknownKeyMessage('x', [])).toBe('unknown key `x`');
  });
});

describe('files', () => {
  it('every missing TLS file is reported at its own key', () => {
    const text = VALID.replace(
      '  - { name: public, address: 127.0.0.1, port: 8080 }',
      '  - { name: public, address: 127.0.0.1, port: 8080 }\n  - { name: tls, port: 8443, tls: { cert: ./no.crt, key: ./no.key } }',
    );
    expect(issuesOf(text).map(formatIssue)).toEqual([
      `${FILE}:3:43: listeners[1].tls.cert: cannot read TLS file /etc/wsgate/no.crt: does not exist`,
      `${FILE}:3:58: listeners[1].tls.key: cannot read TLS file /etc/wsgate/no.key: does not exist`,
    ]);
  });
});

describe('the offending line, with a caret under the column', () => {
  it('underlines the key or value', () => {
    const issue = onlyIssue(VALID.replace('workers: 1', 'workers: two'));
    expect(formatIssueWithSource(issue)).toBe(
      [`${FILE}:9:10: workers: must be a number or \`auto\``, '   |', ' 9 | workers: two', '   |          ^^^'].join(
        '\n',
      ),
    );
    const key = onlyIssue(VALID.replace('    hashKey: query:user', '    hashkey: query:user'));
    expect(formatIssueWithSource(key).split('\n').slice(2)).toEqual([
      ' 7 |     hashkey: query:user',
      '   |     ^^^^^^^',
    ]);
    // The caret sits under the column, whatever the width of the line number.
    const wide = formatIssueWithSource({ ...key, line: 1234 }).split('\n');
    expect(wide[3]?.indexOf('^')).toBe(wide[2]?.indexOf('hashkey'));
  });

  it('a caret in a line indented with tabs lines up with the tabs', () => {
    const issue: ConfigIssue = {
      file: FILE,
      line: 12,
      column: 3,
      path: 'x',
      message: 'm',
      source: '\t\tbad',
      width: 3,
    };
    expect(formatIssueWithSource(issue).split('\n').at(-1)).toBe('    | \t\t^^^');
  });

  it('the error message itself stays one line per issue (logs, POST /reload answers)', () => {
    try {
      parseConfig(VALID.replace('workers: 1', 'workers: two').replace('routes:', 'route:'), FILE, {});
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message.split('\n')).toEqual([
        'invalid configuration:',
        `${FILE}:1:1: routes: is required`,
        `${FILE}:9:10: workers: must be a number or \`auto\``,
        `${FILE}:3:1: route: unknown key \`route\`; did you mean \`routes\`?`,
      ]);
    }
  });
});
