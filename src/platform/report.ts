// Which path each use of a Node internal takes in this process, for the one start-up log line that says so.

import { UPGRADE_PARSER } from './connection-adoption.js';
import { PARSER_RELEASE } from './http-parser-release.js';
import { SOCKET_IO_MODE } from './socket-io.js';
import { NODE_INTERNALS_ALLOWED } from './switches.js';

export interface PlatformReport {
  /** WSGATE_NODE_INTERNALS: 'off' forces every fallback below. */
  readonly nodeInternals: 'on' | 'off';
  /** Tunnel socket I/O: 'direct' (shared read buffer, writes to the descriptor) or 'stream' (socket-io.ts). */
  readonly socketIo: 'direct' | 'stream';
  /** Whole upgrade heads read by wsgate on its own server, or every head by node:http (connection-adoption.ts). */
  readonly upgradeParser: 'wsgate' | 'node';
  /** A refused connection taken from node:http's parser, or left to it (http-parser-release.ts). */
  readonly parserRelease: 'internal' | 'fallback';
}

export function platformReport(): PlatformReport {
  return {
    nodeInternals: NODE_INTERNALS_ALLOWED ? 'on' : 'off',
    socketIo: SOCKET_IO_MODE,
    upgradeParser: UPGRADE_PARSER,
    parserRelease: PARSER_RELEASE,
  };
}

/** One sentence for the log line. */
export function describePlatform(report: PlatformReport): string {
  return [
    report.socketIo === 'direct' ? 'tunnels use direct socket I/O' : 'tunnels use Node stream I/O',
    report.upgradeParser === 'wsgate'
      ? 'upgrade heads that arrive whole are read by wsgate, everything else by node:http'
      : 'every request head is read by node:http',
    report.parserRelease === 'internal'
      ? 'refused connections are taken from node:http'
      : "refused connections are left to node:http's parser",
  ].join('; ');
}
