/**
 * Masks released secret values in the target's output, so that `vault exec` in CI does not print
 * them into a log. Every occurrence of a value, or of one of its forms (patternsOf: base64,
 * base64url, percent-encodings, hex, JSON-escaped, each line of a multi-line value), is replaced by
 * `***` or `<NAME>`; every other byte of the output is left as it was.
 *
 * Overlapping and touching occurrences form one covered run, replaced once: "SECRETSECRET" prints
 * as one `***`. Under style 'name' a run is named after its earliest-starting occurrence (of those
 * starting there, the longest). A stream masker's output is exactly what masking the whole stream at
 * once would give, however the stream is cut into chunks.
 *
 * Streaming. An Aho–Corasick automaton over bytes reads each chunk once. After a chunk, the
 * automaton's state tells how long the longest suffix read so far is that could still grow into a
 * pattern (`holdBack`); no later occurrence can start before that suffix, so everything before it
 * is final and goes out at once, and only that suffix (shorter than the longest pattern) is held.
 * A covered run that reaches into the held bytes goes out whole, as its one replacement, and the
 * masker remembers where it ended: an occurrence that overlaps or touches it later continues it and
 * adds nothing to the output. So memory stays flat for endless output, endless repetitions of a
 * value included.
 *
 * Not caught: other encodings (base32, base64 of the value at another offset inside longer data,
 * JSON escapes other than JSON.stringify's such as \u for non-ASCII or \/), pieces of a value
 * shorter than a whole line of it, and for values over 64 KiB, all but the value and its base64.
 */
import { isUtf8 } from 'node:buffer';
import { Transform } from 'node:stream';

/** Shorter secrets, lines and forms are not masked: they would mask ordinary output everywhere. */
export const MIN_MASKED_LENGTH = 6;

export type MaskStyle = 'stars' | 'name';

export interface SecretToMask {
  name: string;
  /** The caller's, who may wipe it once planMasking returns: the plan keeps a copy until it is built or disposed. */
  value: Uint8Array;
}

/**
 * The patterns of a set of secrets, shared by the maskers of stdout and stderr. The automaton is
 * built when the first output byte needs it (or patternCount/longestPattern are read): a target that
 * prints nothing never pays for it. Until then the plan holds copies of the values, which
 * disposePlan zero-fills like the automaton.
 */
export interface MaskPlan {
  /** Names of the secrets left unmasked because their value is shorter than MIN_MASKED_LENGTH. */
  readonly tooShort: readonly string[];
  /** Distinct byte strings looked for (builds the automaton). */
  readonly patternCount: number;
  /** Builds the automaton. */
  readonly longestPattern: number;
}

export interface StreamMasker {
  /** Masks the next chunk of the stream; returns the output that is final, possibly empty. */
  push(chunk: Uint8Array): Uint8Array;
  /** The stream ended: returns the rest of the output. The masker takes no more input. */
  end(): Uint8Array;
  /** Input bytes received but not yet accounted for in the output (always under longestPattern). */
  readonly held: number;
  /** Zero-fills the held bytes. */
  dispose(): void;
}

/** Everything built from a secret value is zero-filled once it is no longer needed. */
function zeroFill(...arrays: (Uint8Array | Int32Array)[]): void {
  for (const array of arrays) array.fill(0);
}

// ---------------------------------------------------------------------------------------------
// Patterns: the forms of a value that are looked for. All are built straight into bytes (never a
// JavaScript string, which could not be wiped) and wiped once the automaton holds them.

const ascii = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));
const LOWER_HEX = ascii('0123456789abcdef');
const UPPER_HEX = ascii('0123456789ABCDEF');
const BASE64 = ascii('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/');
const BASE64URL = ascii('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_');
const LINE_FEED = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const SPACE = 0x20;

function hexForm(value: Uint8Array, digits: Uint8Array): Uint8Array {
  const out = new Uint8Array(value.length * 2);
  value.forEach((byte, i) => {
    out[2 * i] = digits[byte >> 4]!;
    out[2 * i + 1] = digits[byte & 15]!;
  });
  return out;
}

/**
 * Base64 without padding. With `wholeCharacters`, only the characters that the value alone
 * determines: the last one of the unpadded form also carries bits of whatever follows the value, so
 * without it the pattern also matches where the value was encoded followed by more data.
 */
function base64Form(value: Uint8Array, alphabet: Uint8Array, wholeCharacters: boolean): Uint8Array {
  const bits = value.length * 8;
  const out = new Uint8Array(wholeCharacters ? Math.floor(bits / 6) : Math.ceil(bits / 6));
  for (let k = 0; k < out.length; k += 1) {
    const bit = k * 6;
    const pair = ((value[bit >> 3] ?? 0) << 8) | (value[(bit >> 3) + 1] ?? 0);
    out[k] = alphabet[(pair >> (10 - (bit & 7))) & 63]!;
  }
  return out;
}

const isAlphanumeric = (byte: number) => (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
const keptBy = (others: string) => {
  const set = new Set(ascii(others));
  return (byte: number) => isAlphanumeric(byte) || set.has(byte);
};
/** What percent-encoding leaves as it is: RFC 3986, JavaScript's encodeURIComponent, URLSearchParams. */
const UNRESERVED = keptBy('-._~');
const URI_COMPONENT = keptBy("-._~!'()*");
const WHATWG_FORM = keptBy('*-._');

/** Percent-encoding of every byte that `kept` refuses; in form encoding a space is '+'. */
function percentForm(value: Uint8Array, digits: Uint8Array, kept: (byte: number) => boolean, spaceAsPlus: boolean): Uint8Array {
  const plain = (byte: number) => kept(byte) || (spaceAsPlus && byte === SPACE);
  const out = new Uint8Array(value.reduce((sum, byte) => sum + (plain(byte) ? 1 : 3), 0));
  let at = 0;
  for (const byte of value) {
    if (plain(byte)) {
      out[at++] = byte === SPACE ? 0x2b : byte;
    } else {
      out[at++] = 0x25;
      out[at++] = digits[byte >> 4]!;
      out[at++] = digits[byte & 15]!;
    }
  }
  return out;
}

const JSON_SHORT_ESCAPES = new Map([[0x08, 0x62], [0x09, 0x74], [0x0a, 0x6e], [0x0c, 0x66], [0x0d, 0x72], [0x22, 0x22], [0x5c, 0x5c]]);
const jsonEscapeLength = (byte: number) => (JSON_SHORT_ESCAPES.has(byte) ? 2 : byte < 0x20 ? 6 : 1);

/**
 * The value as JSON.stringify writes it inside a string, without the quotes: what a program that
 * logs a JSON object shows. Undefined where that is the value itself, or where the value is not
 * UTF-8 (JSON would not carry those bytes as they are).
 */
function jsonForm(value: Uint8Array): Uint8Array | undefined {
  if (!isUtf8(value)) return undefined;
  const length = value.reduce((sum, byte) => sum + jsonEscapeLength(byte), 0);
  if (length === value.length) return undefined;
  const out = new Uint8Array(length);
  let at = 0;
  for (const byte of value) {
    const short = JSON_SHORT_ESCAPES.get(byte);
    if (short !== undefined) {
      out[at++] = 0x5c;
      out[at++] = short;
    } else if (byte < 0x20) {
      out.set([0x5c, 0x75, 0x30, 0x30, LOWER_HEX[byte >> 4]!, LOWER_HEX[byte & 15]!], at);
      at += 6;
    } else {
      out[at++] = byte;
    }
  }
  return out;
}

/** `value` with each LF as CR LF, as a pty's output processing writes it. */
function onTerminal(value: Uint8Array): Uint8Array {
  const count = value.reduce((n, byte) => n + (byte === LINE_FEED ? 1 : 0), 0);
  const out = new Uint8Array(value.length + count);
  let at = 0;
  for (const byte of value) {
    if (byte === LINE_FEED) out[at++] = CARRIAGE_RETURN;
    out[at++] = byte;
  }
  return out;
}

function withoutLineEnd(line: Uint8Array): Uint8Array {
  return line.at(-1) === CARRIAGE_RETURN ? line.subarray(0, -1) : line;
}

/**
 * Over this size a value is looked for only as it is and in base64: the automaton costs about 25
 * bytes per byte of pattern, and the percent, hex and JSON forms of a large binary value would be
 * twenty times its size, for forms nobody prints a large file in.
 */
const LARGE_VALUE = 64 * 1024;

/** The value and its encodings; forms that come out the same are looked for once. */
function encodedForms(value: Uint8Array): Uint8Array[] {
  const forms = [
    new Uint8Array(value), // a copy: slice() of a Buffer would be a view of the caller's bytes
    base64Form(value, BASE64, false),
    base64Form(value, BASE64, true),
    base64Form(value, BASE64URL, false),
    base64Form(value, BASE64URL, true),
  ];
  if (value.length > LARGE_VALUE) return forms;
  forms.push(
    percentForm(value, UPPER_HEX, UNRESERVED, false),
    percentForm(value, LOWER_HEX, UNRESERVED, false),
    percentForm(value, UPPER_HEX, UNRESERVED, true),
    percentForm(value, LOWER_HEX, UNRESERVED, true),
    percentForm(value, UPPER_HEX, URI_COMPONENT, false),
    percentForm(value, UPPER_HEX, WHATWG_FORM, true),
    hexForm(value, LOWER_HEX),
    hexForm(value, UPPER_HEX),
  );
  const json = jsonForm(value);
  if (json !== undefined) forms.push(json);
  return forms;
}

/**
 * Every form of one value: the value and its encodings; the same for the value without a final
 * line break (`echo secret | vault put` stores one, and programs print the value trimmed); and for
 * a value of several lines, each line on its own and JSON-escaped, since programs print line by line.
 */
function patternsOf(value: Uint8Array): Uint8Array[] {
  const patterns = encodedForms(value);
  if (value.at(-1) === LINE_FEED) {
    const trimmed = withoutLineEnd(value.subarray(0, -1));
    if (trimmed.length >= MIN_MASKED_LENGTH) patterns.push(...encodedForms(trimmed));
  }
  // a terminal (the target's pty, termios(3) ONLCR) turns each LF into CR LF: the whole value as it
  // arrives from there, else a line shorter than MIN_MASKED_LENGTH would show between two masks
  if (value.includes(LINE_FEED) && !value.includes(CARRIAGE_RETURN)) {
    const crlf = onTerminal(value);
    patterns.push(crlf);
    if (crlf.at(-1) === LINE_FEED) patterns.push(crlf.subarray(0, -2));
  }
  if (value.includes(LINE_FEED)) {
    let start = 0;
    while (start <= value.length) {
      const stop = value.indexOf(LINE_FEED, start);
      const line = withoutLineEnd(value.subarray(start, stop === -1 ? value.length : stop));
      if (line.length >= MIN_MASKED_LENGTH) {
        patterns.push(new Uint8Array(line));
        const json = jsonForm(line);
        if (json !== undefined) patterns.push(json);
      }
      if (stop === -1) break;
      start = stop + 1;
    }
  }
  return patterns.filter((pattern) => pattern.length >= MIN_MASKED_LENGTH);
}

// ---------------------------------------------------------------------------------------------
// The automaton. States near the root, where ordinary output spends nearly all its time, and
// states where patterns branch have a dense row of 256 transitions, each resolved in advance: one
// table lookup per byte. The unbranched tails of patterns (most states) keep only their one edge
// and a failure link: about 25 bytes per state instead of 1 KiB, which a secret of a few KiB needs.

/** States this deep or shallower get a dense row whether they branch or not. */
const DENSE_DEPTH = 8;

interface Automaton {
  /** Rows of 256 codes: a code >= 0 is the row offset of a dense state with no match; else ~state. */
  dense: Int32Array;
  rowOf: Int32Array; // -1 for an unbranched tail state
  stateOfRow: Int32Array;
  firstChild: Int32Array; // 0: none (the root is nobody's child)
  edgeByte: Uint8Array; // the byte of the edge into this state
  fail: Int32Array;
  /** Length of the longest pattern that ends here, 0 for none, and the secret it belongs to. */
  matchLength: Int32Array;
  matchSecret: Int32Array;
  /** Length of the longest suffix read so far that is a proper prefix of some pattern. */
  holdBack: Int32Array;
}

/** The state after reading `byte` in `state`. */
function step(a: Automaton, state: number, byte: number): number {
  for (let s = state; ; s = a.fail[s]!) {
    const row = a.rowOf[s]!;
    if (row >= 0) {
      const code = a.dense[(row << 8) + byte]!;
      return code >= 0 ? a.stateOfRow[code >> 8]! : ~code;
    }
    const child = a.firstChild[s]!;
    if (child !== 0 && a.edgeByte[child] === byte) return child;
  }
}

function buildAutomaton(patterns: { bytes: Uint8Array; secret: number }[]): { automaton: Automaton; patternCount: number } {
  const capacity = 1 + patterns.reduce((sum, p) => sum + p.bytes.length, 0);
  const firstChild = new Int32Array(capacity);
  const nextSibling = new Int32Array(capacity);
  const edgeByte = new Uint8Array(capacity);
  const depth = new Int32Array(capacity);
  const matchLength = new Int32Array(capacity);
  const matchSecret = new Int32Array(capacity);
  let states = 1;
  let patternCount = 0;
  for (const { bytes, secret } of patterns) {
    let state = 0;
    for (const byte of bytes) {
      let child = firstChild[state]!;
      while (child !== 0 && edgeByte[child] !== byte) child = nextSibling[child]!;
      if (child === 0) {
        child = states++;
        edgeByte[child] = byte;
        depth[child] = depth[state]! + 1;
        nextSibling[child] = firstChild[state]!;
        firstChild[state] = child;
      }
      state = child;
    }
    if (matchLength[state] === 0) {
      // the first secret to claim a byte string names it
      matchLength[state] = bytes.length;
      matchSecret[state] = secret;
      patternCount += 1;
    }
  }

  const rowOf = new Int32Array(states).fill(-1);
  let rows = 0;
  for (let s = 0; s < states; s += 1) {
    const child = firstChild[s]!;
    if (s === 0 || depth[s]! <= DENSE_DEPTH || (child !== 0 && nextSibling[child] !== 0)) rowOf[s] = rows++;
  }
  const stateOfRow = new Int32Array(rows);
  for (let s = 0; s < states; s += 1) if (rowOf[s]! >= 0) stateOfRow[rowOf[s]!] = s;

  const a: Automaton = {
    dense: new Int32Array(rows * 256),
    rowOf,
    stateOfRow,
    firstChild: firstChild.slice(0, states),
    edgeByte: edgeByte.slice(0, states),
    fail: new Int32Array(states),
    matchLength: matchLength.slice(0, states),
    matchSecret: matchSecret.slice(0, states),
    holdBack: new Int32Array(states),
  };
  const code = (s: number) => (a.rowOf[s]! >= 0 && a.matchLength[s] === 0 ? a.rowOf[s]! << 8 : ~s);

  // Breadth first, so that a state's failure target (shallower) is complete before the state is.
  // A child's failure link, match and hold-back are set when its parent is taken from the queue,
  // before the parent's row needs them.
  const queue = new Int32Array(states);
  let head = 0;
  let tail = 1;
  while (head < tail) {
    const s = queue[head++]!;
    for (let c = a.firstChild[s]!; c !== 0; c = nextSibling[c]!) {
      const f = s === 0 ? 0 : step(a, a.fail[s]!, a.edgeByte[c]!);
      a.fail[c] = f;
      if (a.matchLength[c] === 0) {
        a.matchLength[c] = a.matchLength[f]!;
        a.matchSecret[c] = a.matchSecret[f]!;
      }
      a.holdBack[c] = a.firstChild[c] !== 0 ? depth[c]! : a.holdBack[f]!;
      queue[tail++] = c;
    }
    const row = a.rowOf[s]!;
    if (row < 0) continue;
    const offset = row << 8;
    // Every byte goes where it goes from the failure state, whose row (shallower, so complete) says
    // exactly that; only a failure state without a row of its own needs each byte walked. The root's
    // row stays all zeros: every byte leads back to the root, whose code is 0.
    const failRow = s === 0 ? -1 : a.rowOf[a.fail[s]!]!;
    if (failRow >= 0) a.dense.copyWithin(offset, failRow << 8, (failRow << 8) + 256);
    else if (s !== 0) for (let byte = 0; byte < 256; byte += 1) a.dense[offset + byte] = code(step(a, a.fail[s]!, byte));
    for (let c = a.firstChild[s]!; c !== 0; c = nextSibling[c]!) a.dense[offset + a.edgeByte[c]!] = code(c);
  }
  zeroFill(firstChild, nextSibling, edgeByte, depth, matchLength, matchSecret);
  return { automaton: a, patternCount };
}

// ---------------------------------------------------------------------------------------------

/** What a plan holds from the secrets, kept off the plan object so that logging a plan shows none of it. */
interface PlanInternals {
  /** Copies of the values to mask, each with its replacement's index, until the automaton is built. */
  pending: { value: Uint8Array; secret: number }[];
  replacements: Uint8Array[];
  built: { automaton: Automaton; patternCount: number; longestPattern: number } | undefined;
  disposed: boolean;
}

const internals = new WeakMap<MaskPlan, PlanInternals>();

function internalsOf(plan: MaskPlan): PlanInternals {
  const found = internals.get(plan);
  if (found === undefined) throw new TypeError('not a plan from planMasking');
  return found;
}

/** The plan's automaton, built from its pending values on first use; the copies are wiped then. */
function builtPlan(own: PlanInternals): NonNullable<PlanInternals['built']> {
  // a disposed plan matches nothing: refuse rather than pass the output through unmasked
  if (own.disposed) throw new Error('the masking plan was disposed');
  if (own.built !== undefined) return own.built;
  const patterns = own.pending.flatMap(({ value, secret }) => patternsOf(value).map((bytes) => ({ bytes, secret })));
  try {
    const { automaton, patternCount } = buildAutomaton(patterns);
    const longestPattern = patterns.reduce((most, p) => Math.max(most, p.bytes.length), 0);
    own.built = { automaton, patternCount, longestPattern };
    return own.built;
  } catch (error) {
    own.disposed = true; // the copies are gone: a second try would build an automaton that matches nothing
    throw error;
  } finally {
    zeroFill(...patterns.map((p) => p.bytes), ...own.pending.map((p) => p.value));
    own.pending = [];
  }
}

export function planMasking(secrets: readonly SecretToMask[], style: MaskStyle): MaskPlan {
  const encoder = new TextEncoder();
  const tooShort: string[] = [];
  const own: PlanInternals = { pending: [], replacements: [], built: undefined, disposed: false };
  for (const { name, value } of secrets) {
    if (value.length < MIN_MASKED_LENGTH) {
      tooShort.push(name);
      continue;
    }
    const secret = own.replacements.push(encoder.encode(style === 'name' ? `<${name}>` : '***')) - 1;
    own.pending.push({ value: Uint8Array.from(value), secret }); // not .slice(): on a Buffer that is a view
  }
  const plan: MaskPlan = Object.freeze({
    tooShort: Object.freeze(tooShort),
    get patternCount() {
      return builtPlan(own).patternCount;
    },
    get longestPattern() {
      return builtPlan(own).longestPattern;
    },
  });
  internals.set(plan, own);
  return plan;
}

/** Zero-fills everything the plan built or copied from the secret values; its maskers refuse to run after. */
export function disposePlan(plan: MaskPlan): void {
  const own = internalsOf(plan);
  own.disposed = true;
  zeroFill(...own.pending.map((p) => p.value));
  own.pending = [];
  if (own.built !== undefined) zeroFill(...Object.values(own.built.automaton));
}

/** Its state is in # fields, so that inspecting a masker shows neither the automaton nor held bytes. */
class Masker implements StreamMasker {
  readonly #plan: PlanInternals;
  readonly #automaton: Automaton;
  #state = 0;
  /** Stream positions count input bytes from the first one pushed. */
  #consumed = 0;
  /** Input before this position is accounted for in the output; from it to `consumed` is held. */
  #emitted = 0;
  #heldBytes: Uint8Array;
  /** Where the last covered run already replaced in the output ended; -1 before the first. */
  #lastRunEnd = -1;
  /** Covered runs not yet output, as (start, end, secret) triples: in order, apart, not touching. */
  readonly #runs: number[] = [];
  #ended = false;

  constructor(plan: PlanInternals) {
    const built = builtPlan(plan);
    this.#plan = plan;
    this.#automaton = built.automaton;
    this.#heldBytes = new Uint8Array(Math.max(built.longestPattern, 1));
  }

  get held(): number {
    return this.#consumed - this.#emitted;
  }

  push(chunk: Uint8Array): Uint8Array {
    this.#checkUsable();
    const base = this.#consumed;
    this.#scan(chunk, base);
    this.#consumed += chunk.length;
    return this.#emit(chunk, base, this.#consumed - this.#automaton.holdBack[this.#state]!);
  }

  end(): Uint8Array {
    this.#checkUsable();
    const out = this.#emit(new Uint8Array(0), this.#consumed, this.#consumed);
    this.#ended = true;
    return out;
  }

  dispose(): void {
    this.#ended = true;
    zeroFill(this.#heldBytes);
  }

  #checkUsable(): void {
    if (this.#plan.disposed) throw new Error('the masking plan was disposed');
    if (this.#ended) throw new Error('the masked stream has ended');
  }

  #scan(chunk: Uint8Array, base: number): void {
    const a = this.#automaton;
    const dense = a.dense;
    const n = chunk.length;
    let state = this.#state;
    let i = 0;
    while (i < n) {
      const row = a.rowOf[state]!;
      if (row >= 0) {
        let code = row << 8;
        // the hot loop: one lookup per byte, until a match or an unbranched tail
        while (i < n) {
          code = dense[code + chunk[i]!]!;
          i += 1;
          if (code < 0) break;
        }
        if (code >= 0) {
          state = a.stateOfRow[code >> 8]!;
          break;
        }
        state = ~code;
      } else {
        state = step(a, state, chunk[i]!);
        i += 1;
      }
      const length = a.matchLength[state]!;
      if (length !== 0) this.#cover(base + i - length, base + i, a.matchSecret[state]!);
    }
    this.#state = state;
  }

  /** Records an occurrence; occurrences arrive in order of their end. */
  #cover(start: number, end: number, secret: number): void {
    const runs = this.#runs;
    const last = runs.length - 3;
    if (last >= 0 && runs[last]! <= start && runs[last + 1]! >= start) {
      // the common case, a run growing (a repeated value, overlapping occurrences); a longer
      // occurrence from the run's very start names it
      runs[last + 1] = end;
      if (runs[last] === start) runs[last + 2] = secret;
      return;
    }
    let from = start;
    let who = secret;
    while (runs.length > 0 && runs[runs.length - 2]! >= from) {
      // the newest run overlaps or touches this occurrence: merge; the earlier start names the run
      const runStart = runs[runs.length - 3]!;
      if (runStart < from) {
        from = runStart;
        who = runs[runs.length - 1]!;
      }
      runs.length -= 3;
    }
    runs.push(from, end, who);
  }

  /** Outputs the input before `limit` (or further, to the end of a run that reaches past it) and holds the rest. */
  #emit(chunk: Uint8Array, base: number, limit: number): Uint8Array {
    const runs = this.#runs;
    let cut = Math.max(limit, this.#emitted);
    let count = 0;
    let replacementBytes = 0;
    for (; count * 3 < runs.length; count += 1) {
      const [start, end, secret] = [runs[count * 3]!, runs[count * 3 + 1]!, runs[count * 3 + 2]!];
      if (end > cut) {
        if (start >= cut) break;
        cut = end; // never cut through a run
      }
      replacementBytes += this.#plan.replacements[secret]!.length;
    }

    const out = Buffer.allocUnsafe(cut - this.#emitted + replacementBytes);
    let written = 0;
    let at = this.#emitted;
    for (let k = 0; k < count; k += 1) {
      const [start, end, secret] = [runs[k * 3]!, runs[k * 3 + 1]!, runs[k * 3 + 2]!];
      if (start > at) written = this.#copyInput(chunk, base, at, start, out, written);
      if (start > this.#lastRunEnd) {
        const replacement = this.#plan.replacements[secret]!;
        out.set(replacement, written);
        written += replacement.length;
      } // else it continues the run the output ended in, which is replaced already
      this.#lastRunEnd = end;
      at = Math.max(at, end);
    }
    if (cut > at) written = this.#copyInput(chunk, base, at, cut, out, written);
    runs.splice(0, count * 3);

    // hold the input from `cut` on
    const held = this.#heldBytes;
    const before = base - this.#emitted;
    if (cut < base) {
      held.copyWithin(0, cut - this.#emitted, before);
      held.set(chunk, base - cut);
    } else {
      held.set(chunk.subarray(cut - base), 0);
    }
    this.#emitted = cut;
    held.fill(0, this.held, Math.max(before, this.held));
    return out.subarray(0, written);
  }

  /** Copies input [from, to) from the held bytes and the chunk that follows them. */
  #copyInput(chunk: Uint8Array, base: number, from: number, to: number, out: Uint8Array, at: number): number {
    let written = at;
    if (from < base) {
      const stop = Math.min(to, base);
      out.set(this.#heldBytes.subarray(from - this.#emitted, stop - this.#emitted), written);
      written += stop - from;
    }
    const start = Math.max(from, base);
    if (to > start) {
      out.set(chunk.subarray(start - base, to - base), written);
      written += to - start;
    }
    return written;
  }
}

/** One masker per output stream; all of a run's maskers share the plan. */
export function createMasker(plan: MaskPlan): StreamMasker {
  return new Masker(internalsOf(plan));
}

/**
 * A Transform for `pipeline(child.stdout, maskingTransform(plan), process.stdout)`; it keeps
 * backpressure. Its masker, and so the plan's automaton, is made on the first chunk.
 */
export function maskingTransform(plan: MaskPlan): Transform {
  const own = internalsOf(plan);
  let masker: Masker | undefined;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      try {
        masker ??= new Masker(own);
        const out = masker.push(chunk);
        if (out.length > 0) this.push(out);
        done();
      } catch (error) {
        done(error as Error);
      }
    },
    flush(done) {
      try {
        // no chunk came: there is nothing held, and nothing to build the automaton for
        const out = masker === undefined ? new Uint8Array(0) : masker.end();
        if (out.length > 0) this.push(out);
        done();
      } catch (error) {
        done(error as Error);
      }
    },
    destroy(error, done) {
      masker?.dispose();
      done(error);
    },
  });
}
