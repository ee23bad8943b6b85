/**
 * Text from a file (a path, a name, a label) as it may be shown to a person: control characters
 * escaped, so that a granted path holding ESC[2K, CR or LF cannot erase or fake a row of what people
 * review (`vault policy`, refusals), nor a bidirectional override (U+202E) reorder the rest of a line
 * (Unicode TR9, "Explicit Directional Formatting Characters").
 */

/**
 * C0 and C1 controls, DEL, the line separators, and the bidirectional marks, embeddings, overrides
 * and isolates; with the backslash, whose doubling keeps an escape from being faked.
 */
// eslint-disable-next-line no-control-regex
const UNSHOWABLE_OR_BACKSLASH = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\\]/g;
/** The same less C0 and the backslash, which JSON.stringify escapes itself (and whose \n its indentation uses). */
const UNSHOWABLE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `\xHH` for a byte-sized code point, `\u{HHHH}` above; a backslash is doubled, so that the escape cannot be faked. */
export function printable(text: string): string {
  return text.replace(UNSHOWABLE_OR_BACKSLASH, (c) => {
    if (c === '\\') return '\\\\';
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}

/**
 * `value` as JSON for a person's terminal: JSON.stringify escapes C0 controls, but not DEL, the C1
 * controls (U+009B is a CSI on some terminals), the line separators or the bidirectional controls;
 * those become \u escapes too, so the text stays valid JSON.
 */
export function printableJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(UNSHOWABLE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
