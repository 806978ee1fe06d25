// Sec-WebSocket-Accept (RFC 6455 §4.2.2): base64(SHA-1(key + GUID)).

import { hash } from 'node:crypto';

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptFor(key: string): string {
  // One-shot hash: no Hash object per handshake (createHash + update + digest cost several times more).
  return hash('sha1', key + WEBSOCKET_GUID, 'base64');
}
