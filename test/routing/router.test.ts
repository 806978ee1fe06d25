import { describe, expect, it } from 'vitest';
import { isSuspiciousPath, Router, type RouteSpec } from '../../src/routing/router.js';

interface TestRoute extends RouteSpec {
  readonly pool: string;
}

const route = (name: string, pathPrefix: string, host?: string): TestRoute =>
  host === undefined ? { name, pathPrefix, pool: `${name}-pool` } : { name, pathPrefix, host, pool: `${name}-pool` };

const nameOf = (router: Router<TestRoute>, host: string | undefined, target: string): string | undefined =>
  router.match(host, target)?.name;

describe('Router path prefixes', () => {
  const router = new Router([route('chat', '/chat'), route('api', '/api/'), route('admin', '/admin')]);

  it.each([
    ['/chat', 'chat'],
    ['/chat/x', 'chat'],
    ['/chat?room=1', 'chat'],
    ['/chat/', 'chat'],
    ['/chatty', undefined],
    ['/cha', undefined],
    ['/Chat', undefined],
    ['/api/', 'api'],
    ['/api/v1', 'api'],
    ['/api', undefined],
    ['/apix', undefined],
    ['/', undefined],
    ['?/chat', undefined],
  ])('%s → %s', (target, expected) => {
    expect(nameOf(router, 'example.com', target)).toBe(expected);
  });

  it('routes on the raw path: no dot-segment or percent-decoding normalisation', () => {
    expect(nameOf(router, undefined, '/chat/../admin')).toBe('chat');
    expect(nameOf(router, undefined, '/%63hat')).toBeUndefined();
    expect(nameOf(router, undefined, '/chat%2f..%2fadmin')).toBeUndefined();
  });

  it("lets '/' match everything, and the first match in config order win", () => {
    const ordered = new Router([route('chat', '/chat'), route('all', '/'), route('late', '/late')]);
    expect(nameOf(ordered, 'x', '/chat/1')).toBe('chat');
    expect(nameOf(ordered, 'x', '/late')).toBe('all');
    expect(nameOf(ordered, 'x', '/')).toBe('all');
    expect(nameOf(ordered, 'x', '/anything?q')).toBe('all');
  });

  it('returns the caller’s own route object', () => {
    const chat = route('chat', '/chat');
    expect(new Router([chat]).match('h', '/chat')).toBe(chat);
  });

  it('returns undefined with no routes', () => {
    expect(new Router<TestRoute>([]).match('h', '/')).toBeUndefined();
  });
});

describe('Router hosts', () => {
  const router = new Router([
    route('exact', '/', 'Example.COM'),
    route('wild', '/', '*.example.com'),
    route('v6', '/', '[::1]'),
    route('other', '/only'),
  ]);

  it.each([
    ['example.com', 'exact'],
    ['EXAMPLE.com', 'exact'],
    ['example.com:8080', 'exact'],
    ['example.com.', 'exact'],
    ['example.com.:443', 'exact'],
    ['a.example.com', 'wild'],
    ['A.B.Example.Com:9000', 'wild'],
    ['[::1]:8080', 'v6'],
    ['[::1]', 'v6'],
    ['notexample.com', undefined],
    ['.example.com', undefined],
    ['example.org', undefined],
    ['example.com.evil', undefined],
    ['[::1', undefined],
    ['', undefined],
    [undefined, undefined],
  ])('%s → %s', (host, expected) => {
    expect(nameOf(router, host, '/')).toBe(expected);
  });

  it('matches host-less routes for any host, including none', () => {
    expect(nameOf(router, undefined, '/only')).toBe('other');
    expect(nameOf(router, 'unknown.test', '/only')).toBe('other');
    expect(nameOf(router, '[broken', '/only')).toBe('other');
  });

  it('needs both host and path to match', () => {
    const both = new Router([route('a', '/a', 'a.test'), route('b', '/b', 'a.test'), route('c', '/a')]);
    expect(nameOf(both, 'a.test', '/b')).toBe('b');
    expect(nameOf(both, 'b.test', '/a')).toBe('c');
    expect(nameOf(both, 'b.test', '/b')).toBeUndefined();
  });

  it('accepts an unbracketed IPv6 route host', () => {
    expect(nameOf(new Router([route('v6', '/', '::1')]), '[::1]:80', '/')).toBe('v6');
  });

  it('rejects malformed route definitions', () => {
    expect(() => new Router([route('x', 'chat')])).toThrow(/pathPrefix/);
    expect(() => new Router([route('x', '/', 'a.*.com')])).toThrow(/host/);
    expect(() => new Router([route('x', '/', '*')])).toThrow(/host/);
    expect(() => new Router([route('x', '/', '*.')])).toThrow(/host/);
    expect(() => new Router([route('x', '/', '')])).toThrow(/host/);
  });
});

describe('isSuspiciousPath', () => {
  it.each([
    '/chat/../admin',
    '/chat/./x',
    '/..',
    '/.',
    '/chat/..',
    '..',
    '/chat/%2e%2e/admin',
    '/chat/%2E%2E/admin',
    '/chat/.%2e/admin',
    '/chat/%2e./admin',
    '/chat/%2e/admin',
    '/chat%2f..%2fadmin',
    '/chat%2Fadmin',
    '/chat%5cadmin',
    '/chat\\..\\admin',
    '/chat\\admin',
    '/chat/..?x=1',
    '/chat/..;/admin',
    '/chat/.;x/y',
    '/chat/%41',
    '/%61dmin',
    '/chat/%7E',
    '/chat/%2d',
  ])('%s is suspicious', (target) => {
    expect(isSuspiciousPath(target)).toBe(true);
  });

  it.each([
    '/',
    '/chat',
    '/chat/x',
    '/chat/...',
    '/chat/..x',
    '/chat/x..',
    '/chat/.well-known',
    '/chat/a.b',
    '/chat/%2e%2e%2e',
    '/chat/%2ex',
    '/chat/%25',
    '/chat/%2',
    '/chat?next=/../admin',
    '/chat?p=%2f..%5c',
    '/chat?p=%41',
    '/chat/%20x',
    '/chat/%C3%A9',
    '/chat/a;b',
  ])('%s is fine', (target) => {
    expect(isSuspiciousPath(target)).toBe(false);
  });
});
