// The keys of issue 15: pools.NAME.sticky, routes[].http and timeouts.body — their defaults, normalised form and
// the mistakes a file is refused for (each naming the key).

import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';

const FILE = '/etc/wsgate/config.yaml';

function config(pool: string, extra = ''): string {
  return `listeners:
  - { name: public, address: 127.0.0.1, port: 8080 }
routes:
  - { name: chat, pool: chat }
pools:
  chat:
    backends: [ws://127.0.0.1:3001]
${pool}
${extra}`;
}

function problems(text: string): string[] {
  try {
    parseConfig(text, FILE, {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected the config to be rejected');
}

describe('pools.NAME.sticky', () => {
  it('absent: no cookie', () => {
    expect(parseConfig(config(''), FILE).pools.get('chat')?.sticky).toBeUndefined();
  });

  it('only a cookie name: a session cookie, SameSite=Lax, Secure on TLS listeners, no secret', () => {
    const c = parseConfig(config('    sticky: { cookie: WSGATE_AFFINITY }'), FILE);
    expect(c.pools.get('chat')?.sticky).toEqual({
      cookie: 'WSGATE_AFFINITY',
      maxAgeMs: 0,
      sameSite: 'Lax',
      secure: 'auto',
      secret: undefined,
    });
  });

  it('every key, the secret from the environment', () => {
    const text = config(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the config syntax under test
      '    sticky: { cookie: SRV, maxAge: 2h, sameSite: None, secure: true, secret: "${STICKY_SECRET}" }',
    );
    const c = parseConfig(text, FILE, { STICKY_SECRET: 'sixteen chars at least' });
    expect(c.pools.get('chat')?.sticky).toEqual({
      cookie: 'SRV',
      maxAgeMs: 7_200_000,
      sameSite: 'None',
      secure: true,
      secret: 'sixteen chars at least',
    });
  });

  it('refuses a name that is not a cookie name, a short secret, an unknown key and a bad SameSite', () => {
    const found = problems(
      config('    sticky: { cookie: "a b", secret: short, sameSite: lax, path: /x, secure: maybe }'),
    );
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^pools\.chat\.sticky\.cookie: must be a cookie name/),
        expect.stringMatching(/^pools\.chat\.sticky\.secret: use a secret of at least 16 characters/),
        expect.stringMatching(/^pools\.chat\.sticky\.sameSite: /),
        expect.stringMatching(/^pools\.chat\.sticky\.secure: /),
        expect.stringMatching(/^pools\.chat\.sticky\.path: unknown key `path`/),
      ]),
    );
  });

  it('refuses SameSite=None with secure: false (browsers drop such a cookie)', () => {
    expect(problems(config('    sticky: { cookie: SRV, sameSite: None, secure: false }'))).toEqual([
      'pools.chat.sticky.secure: sameSite "None" needs a Secure cookie (browsers drop it)',
    ]);
  });

  it('refuses hashing on the sticky cookie itself (absent on the first request, chosen by the client after)', () => {
    expect(problems(config('    hashKey: cookie:SRV\n    sticky: { cookie: SRV }'))).toEqual([
      'pools.chat.sticky.cookie: the hash key reads this cookie; hash on something the client sends on its first request',
    ]);
  });

  it('refuses one cookie name for two pools (each would refuse the other’s values)', () => {
    const text = `${config('    sticky: { cookie: SRV }')}
  game:
    backends: [ws://127.0.0.1:3002]
    sticky: { cookie: SRV }
`;
    expect(problems(text)).toEqual(['pools.game.sticky.cookie: cookie "SRV" is also the sticky cookie of pool "chat"']);
  });
});

describe('routes[].http and timeouts.body', () => {
  it('default: plain HTTP is proxied, bodies may pause 10 s', () => {
    const c = parseConfig(config(''), FILE);
    expect(c.routes[0]?.http).toBe('proxy');
    expect(c.timeouts.bodyMs).toBe(10_000);
  });

  it('http: refuse, and a body timeout in any duration unit', () => {
    const text = config('', 'timeouts: { body: 2500ms }').replace(
      '{ name: chat, pool: chat }',
      '{ name: chat, pool: chat, http: refuse }',
    );
    const c = parseConfig(text, FILE);
    expect(c.routes[0]?.http).toBe('refuse');
    expect(c.timeouts.bodyMs).toBe(2500);
  });

  it('refuses another http value and a zero body timeout', () => {
    const text = config('', 'timeouts: { body: 0 }').replace(
      '{ name: chat, pool: chat }',
      '{ name: chat, pool: chat, http: drop }',
    );
    expect(problems(text)).toEqual([
      expect.stringMatching(/^routes\[0\]\.http: /),
      'timeouts.body: must be more than 0',
    ]);
  });
});
