/**
 * Text from a file (a path, a name, a label) as it may be shown to a person: control characters
 * escaped, so that a granted path holding ESC[2K, CR or LF cannot erase or fake a row of what people
 * review (`vault policy`, refusals). `vault audit` shows details as JSON, which escapes them too.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\\\u2028\u2029]/g, (c) => (c === '\\' ? '\\\\' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

/**
 * `value` as JSON for a person's terminal: JSON.stringify escapes C0 controls but not DEL, the C1
 * controls (U+009B is a CSI on some terminals) or the Unicode line separators; those become \u
 * escapes too, so the text stays valid JSON.
 */
export function printableJson(value: unknown, indent?: number): string {
  // eslint-disable-next-line no-control-regex
  return JSON.stringify(value, null, indent).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
