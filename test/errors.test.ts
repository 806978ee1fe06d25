// The catalogue's endings after the 101 keep the values operators read: the `reason` of the close log line, the
// metric label, the initiator, and the close codes and reasons each peer hears (dashboards and alerts match them).

import { describe, expect, it } from 'vitest';
import { Endings, logReasonOf } from '../src/errors.js';

type Row = [logReason: string, label: string, initiator: string, toClient: string, toBackend: string];

const close = (code: number, reason: string) => (code === 0 ? '-' : `${code} ${reason}`);

const VIOLATION_KINDS = [
  'unmasked_client_frame',
  'masked_server_frame',
  'reserved_opcode',
  'control_too_long',
  'control_fragmented',
  'unexpected_continuation',
  'data_inside_message',
  'length_top_bit',
  'rsv_without_extension',
  'non_minimal_length',
  'invalid_close_payload',
];

const EXPECTED: Record<keyof typeof Endings, Row> = {
  SHUTDOWN: ['server shutting down', '', 'proxy', '1001 server shutting down', '1001 server shutting down'],
  ROUTE_REMOVED: ['route removed', '', 'proxy', '1001 route removed', '1001 route removed'],
  IDLE_TIMEOUT: ['idle timeout', '', 'proxy', '1001 idle timeout', '1001 idle timeout'],
  CLIENT_KEEPALIVE_TIMEOUT: [
    'keepalive timeout',
    'client',
    'proxy',
    '1001 keepalive timeout',
    '1001 keepalive timeout',
  ],
  BACKEND_KEEPALIVE_TIMEOUT: [
    'backend keepalive timeout',
    'backend',
    'proxy',
    '1011 backend keepalive timeout',
    '1001 backend keepalive timeout',
  ],
  REBALANCE: ['reconnect', '', 'proxy', '1012 reconnect', '1001 reconnect'],
  BACKEND_UNHEALTHY: ['backend unhealthy', '', 'proxy', '1014 backend unhealthy', '1001 backend unhealthy'],
  BACKEND_DISABLED: ['backend disabled', '', 'proxy', '1012 backend disabled', '1001 backend disabled'],
  MAX_LIFETIME: ['max lifetime', 'max_lifetime', 'proxy', '1001 max lifetime', '1001 max lifetime'],
  TOKEN_EXPIRED: ['token expired', 'token_expired', 'proxy', '1008 token expired', '1001 token expired'],
  ...(Object.fromEntries(
    VIOLATION_KINDS.map((kind) => [
      kind.toUpperCase(),
      [`violation:${kind}`, kind, 'proxy', `1002 protocol error: ${kind}`, '1011 client closed by proxy'],
    ]),
  ) as Record<string, Row>),
  FRAME_TOO_BIG: [
    'violation:frame_too_big',
    'frame_too_big',
    'proxy',
    '1009 protocol error: frame_too_big',
    '1011 client closed by proxy',
  ],
  MAX_MESSAGE_BYTES: [
    'message_too_big',
    'max_message_bytes',
    'proxy',
    '1009 message too big',
    '1000 client closed by proxy',
  ],
  ...(Object.fromEntries(
    ['max_frames_per_message', 'messages_per_second', 'bytes_per_second', 'control_frames_per_second'].map((name) => [
      name.toUpperCase(),
      [`limit:${name}`, name, 'proxy', `1008 limit exceeded: ${name}`, '1000 client closed by proxy'],
    ]),
  ) as Record<string, Row>),
  CLIENT_GONE: ['client_closed', '', 'client', '-', '1001 client went away'],
  CLIENT_ERROR: ['client_error', '', 'client', '-', '1001 client went away'],
  BACKEND_GONE: ['backend_closed', '', 'backend', '1014 backend connection lost', '-'],
  BACKEND_ERROR: ['backend_error', '', 'backend', '1014 backend connection lost', '-'],
  CLIENT_CLOSE_FRAME: ['client_close_frame', '', 'client', '-', '-'],
  BACKEND_CLOSE_FRAME: ['backend_close_frame', '', 'backend', '-', '-'],
  CLOSE_DEADLINE: ['close_deadline', '', 'proxy', '-', '-'],
  CLOSE_REPLY_TIMEOUT: ['close_reply_timeout', '', 'proxy', '-', '-'],
  DRAIN_DEADLINE: ['drain_deadline', '', 'proxy', '-', '-'],
} as Record<keyof typeof Endings, Row>;

describe('Endings', () => {
  it('keep the log reasons, labels, initiators and close frames of each ending', () => {
    const actual = Object.fromEntries(
      Object.entries(Endings).map(([name, e]) => [
        name,
        [e.logReason, e.label, e.initiator, close(e.closeCode, e.reason), close(e.backendCloseCode, e.backendReason)],
      ]),
    );
    expect(actual).toEqual(EXPECTED);
  });

  it('an ending with a detail logs it after a colon: client_error:ECONNRESET', () => {
    expect(logReasonOf(Endings.CLIENT_ERROR, 'ECONNRESET')).toBe('client_error:ECONNRESET');
    expect(logReasonOf(Endings.BACKEND_GONE, undefined)).toBe('backend_closed');
  });

  it('every reason fits a close frame (RFC 6455 §5.5: at most 123 bytes after the code)', () => {
    for (const e of Object.values(Endings)) {
      expect(Buffer.byteLength(e.reason)).toBeLessThanOrEqual(123);
      expect(Buffer.byteLength(e.backendReason)).toBeLessThanOrEqual(123);
    }
  });
});
