// A strict reader for the request head wsgate sees most: a WebSocket upgrade that arrives whole in a connection's
// first read. It accepts a narrow subset of what node's parser (llhttp) accepts and returns undefined for anything
// else, which then goes to node:http as before: so it never needs to reject, only to decline, and it may be
// stricter than llhttp but never looser (test/handshake/upgrade-head.test.ts checks it against node's parser).
//
// Accepted: `GET <origin-form target> HTTP/1.1`, CRLF line ends, header names of token characters with the colon
// right after them, values of visible ASCII with inner spaces or tabs, each header name at most once (so the
// headers object is exactly what node builds, without its rules for joining repeats), no Content-Length or
// Transfer-Encoding, and the upgrade condition llhttp uses: a non-empty Upgrade and an `upgrade` token in Connection.

import type { IncomingHttpHeaders } from 'node:http';
import { TOKEN_CHAR } from './token.js';

/** The parts of node's IncomingMessage the upgrade path reads; an IncomingMessage is one. */
export interface UpgradeRequest {
  method?: string | undefined;
  url?: string | undefined;
  httpVersion: string;
  httpVersionMajor: number;
  httpVersionMinor: number;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
}

export interface ParsedUpgradeHead {
  readonly request: UpgradeRequest;
  /** Offset of the first byte after the head's blank line: what follows is the client's early frames. */
  readonly headEnd: number;
}

/**
 * Heads longer than this go to node's parser, which enforces the 16 KiB limit (431) exactly; a browser's upgrade
 * head is well under 2 KiB.
 */
export const MAX_FAST_HEAD_BYTES = 8 * 1024;
/** Also node's job beyond this many header lines (validateUpgrade's limit is 100 and answers 431). */
export const MAX_FAST_HEADER_LINES = 100;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const REQUEST_START = Buffer.from('GET /', 'latin1');
const VERSION_LINE = Buffer.from(' HTTP/1.1\r\n', 'latin1');

/** Whether `expected` stands at `at`, wholly before `limit`. */
function matchesAt(buf: Buffer, at: number, limit: number, expected: Buffer): boolean {
  if (at + expected.length > limit) return false;
  for (let j = 0; j < expected.length; j++) if (buf[at + j] !== expected[j]) return false;
  return true;
}

function byteTable(chars: string, ranges: readonly [number, number][] = []): Uint8Array {
  const table = new Uint8Array(256);
  for (const c of chars) table[c.charCodeAt(0)] = 1;
  for (const [from, to] of ranges) table.fill(1, from, to + 1);
  return table;
}

const DIGITS_AND_LETTERS: [number, number][] = [
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x61, 0x7a],
];
/** RFC 3986 pchar plus '/' and '?': unreserved, sub-delims, ':', '@', and '%' for percent-encoding. No fragment. */
const TARGET_CHAR = byteTable("-._~!$&'()*+,;=:@/?%", DIGITS_AND_LETTERS);
/** Visible ASCII: what a value may start and end with (obs-text and control bytes go to node's parser). */
const VALUE_CHAR = byteTable('', [[0x21, 0x7e]]);

/** Parses `buf` as a complete upgrade request head, or returns undefined to leave it to node's parser. */
export function parseUpgradeHead(buf: Buffer): ParsedUpgradeHead | undefined {
  const limit = Math.min(buf.length, MAX_FAST_HEAD_BYTES);
  if (!matchesAt(buf, 0, limit, REQUEST_START)) return undefined;
  let i = REQUEST_START.length - 1; // the target starts at its '/'
  const targetStart = i;
  while (i < limit && TARGET_CHAR[buf[i] as number] === 1) i++;
  const targetEnd = i;
  if (!matchesAt(buf, i, limit, VERSION_LINE)) return undefined;
  i += VERSION_LINE.length;

  const headers: IncomingHttpHeaders = Object.create(null);
  const rawHeaders: string[] = [];
  for (;;) {
    if (i + 1 >= limit) return undefined;
    if (buf[i] === CR) {
      if (buf[i + 1] !== LF) return undefined;
      i += 2;
      break;
    }
    if (rawHeaders.length >= MAX_FAST_HEADER_LINES * 2) return undefined;
    const nameStart = i;
    while (i < limit && TOKEN_CHAR[buf[i] as number] === 1) i++;
    if (i === nameStart || i >= limit || buf[i] !== COLON) return undefined;
    const name = buf.toString('latin1', nameStart, i);
    i++;
    while (i < limit && (buf[i] === SP || buf[i] === HTAB)) i++;
    const valueStart = i;
    let valueEnd = i;
    for (; i < limit; i++) {
      const b = buf[i] as number;
      if (VALUE_CHAR[b] === 1) valueEnd = i + 1;
      else if (b !== SP && b !== HTAB) break;
    }
    if (i + 1 >= limit || buf[i] !== CR || buf[i + 1] !== LF) return undefined;
    i += 2;
    const lower = name.toLowerCase();
    if (headers[lower] !== undefined || lower === 'content-length' || lower === 'transfer-encoding') return undefined;
    const value = buf.toString('latin1', valueStart, valueEnd);
    headers[lower] = value;
    rawHeaders.push(name, value);
  }
  // An empty Upgrade is no upgrade to llhttp (node emits 'request'): leave it to node:http as well.
  if (!headers.upgrade || !connectionUpgrade(headers.connection)) return undefined;
  const request: UpgradeRequest = {
    method: 'GET',
    url: buf.toString('latin1', targetStart, targetEnd),
    httpVersion: '1.1',
    httpVersionMajor: 1,
    httpVersionMinor: 1,
    headers,
    rawHeaders,
  };
  return { request, headEnd: i };
}

/**
 * llhttp's test: some comma-separated element of Connection is `upgrade`, any case, spaces and tabs around it.
 * Not validate.ts's hasToken, which also takes space-separated words ("keep-alive upgrade"), where llhttp does not.
 */
function connectionUpgrade(connection: string | undefined): boolean {
  if (connection === undefined) return false;
  for (const element of connection.split(',')) {
    if (element.trim().toLowerCase() === 'upgrade') return true;
  }
  return false;
}
