// The environment switches that send wsgate's uses of Node internals to their public fallbacks, read once at start
// (docs/internals.md, "Node internals", lists each internal, its probe and its fallback).

/** WSGATE_NODE_INTERNALS=off: every module in src/platform/ takes its public fallback, whatever its probe says. */
export const NODE_INTERNALS_ALLOWED = process.env.WSGATE_NODE_INTERNALS !== 'off';

/** WSGATE_SOCKET_IO=stream: tunnel sockets use Node's stream I/O (src/platform/socket-io.ts). */
export const SOCKET_IO_FORCED_STREAM = process.env.WSGATE_SOCKET_IO === 'stream';

/** WSGATE_UPGRADE_PARSER=node: node:http accepts every connection and reads every head (connection-adoption.ts). */
export const UPGRADE_PARSER_FORCED_NODE = process.env.WSGATE_UPGRADE_PARSER === 'node';
