// log.redact: the request target a log line shows.

import { describe, expect, it } from 'vitest';
import { LOGGED_PATH_CHARS, targetForLog } from '../../src/observe/redact.js';

const ALL = { query: true, cookie: true, authorization: true };
const NONE = { query: false, cookie: false, authorization: false };

describe('targetForLog', () => {
  it('replaces every query value by "…", keeping the names and the path', () => {
    expect(targetForLog('/chat?token=eyJhbGciOi.x.y&room=7', ALL)).toBe('/chat?token=…&room=…');
    expect(targetForLog('/chat?access_token=abc', ALL)).toBe('/chat?access_token=…');
  });

  it('keeps names without a value, empty parts and a path without a query', () => {
    expect(targetForLog('/chat?debug&x=&&y=1', ALL)).toBe('/chat?debug&x=…&&y=…');
    expect(targetForLog('/chat', ALL)).toBe('/chat');
    expect(targetForLog('/chat?', ALL)).toBe('/chat?');
  });

  it('redacts absolute-form targets too', () => {
    expect(targetForLog('http://example.com/ws?key=s3cret', ALL)).toBe('http://example.com/ws?key=…');
  });

  it('a value with "=" in it is hidden whole', () => {
    expect(targetForLog('/x?sig=a=b=c', ALL)).toBe('/x?sig=…');
  });

  it('without query redaction the target is kept as it came (cut to the log length)', () => {
    expect(targetForLog('/chat?token=abc', NONE)).toBe('/chat?token=abc');
    expect(targetForLog(`/${'a'.repeat(500)}`, NONE)).toHaveLength(LOGGED_PATH_CHARS);
  });

  it('cuts long targets after redaction, so a value never shows even in part', () => {
    const long = `/p?${Array.from({ length: 200 }, (_, i) => `k${i}=secretvalue${i}`).join('&')}`;
    const shown = targetForLog(long, ALL);
    expect(shown.length).toBeLessThanOrEqual(LOGGED_PATH_CHARS);
    expect(shown).not.toContain('secret');
    expect(targetForLog(`/p?t=${'s'.repeat(10_000)}`, ALL)).toBe('/p?t=…');
  });
});
