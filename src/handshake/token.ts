// RFC 9110 §5.6.2 token characters (tchar), in one place: header names in the request-head reader (a byte table,
// for the hot path) and the header and cookie names a config may hash on (RFC 6265 cookie-name is a token too).

const TCHAR_SYMBOLS = "!#$%&'*+-.^_`|~";

/** 1 for each byte that is a tchar: DIGIT, ALPHA or one of TCHAR_SYMBOLS. */
export const TOKEN_CHAR: Uint8Array = (() => {
  const table = new Uint8Array(256);
  for (const c of TCHAR_SYMBOLS) table[c.charCodeAt(0)] = 1;
  table.fill(1, 0x30, 0x3a);
  table.fill(1, 0x41, 0x5b);
  table.fill(1, 0x61, 0x7b);
  return table;
})();

/** Whether `text` is a non-empty token. */
export function isToken(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0xff || TOKEN_CHAR[code] !== 1) return false;
  }
  return true;
}
