// The JSON body of an admin API request, read whole with a small cap: the API's bodies are a few bytes
// ({"state": "drain"}), so anything large is a mistake or an attack, answered 413 without being buffered.

import type { IncomingMessage } from 'node:http';

export const MAX_ADMIN_BODY_BYTES = 16 * 1024;

export type JsonBody =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly status: 400 | 413; readonly error: string };

export async function readJsonBody(req: IncomingMessage): Promise<JsonBody> {
  const chunks: Buffer[] = [];
  let size = 0;
  // Past the cap the rest is read and dropped, so the answer can still be written on the connection.
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= MAX_ADMIN_BODY_BYTES) chunks.push(chunk);
  }
  if (size > MAX_ADMIN_BODY_BYTES) {
    return { ok: false, status: 413, error: `body larger than ${MAX_ADMIN_BODY_BYTES} bytes` };
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, status: 400, error: `the body is not JSON: ${(err as Error).message}` };
  }
}
