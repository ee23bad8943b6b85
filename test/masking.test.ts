/**
 * The output masker on its own (src/sandbox/masking.ts): every form of a value, every way of cutting
 * the stream into chunks, and random streams against a plain reference that masks the whole output
 * at once, with patterns derived here independently (Node's own encoders where they fit). The run
 * through `vault exec` with a real child is in exec-masking.test.ts.
 */
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import {
  createMasker,
  disposePlan,
  type MaskPlan,
  maskingTransform,
  MIN_MASKED_LENGTH,
  type MaskStyle,
  planMasking,
  type SecretToMask,
} from '../src/sandbox/masking.js';

const TOKEN = 'tk_9f3A/b+c=d&e?f g%h-7c1e5b';
const PEM_LINES = ['-----BEGIN TEST KEY-----', 'MIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEwggE9AgEAAkEA', 'q7BFUpkGp3+Uj6wNtOi2PeaOHZLnVtZp0ZgE8Qp3', '-----END TEST KEY-----'];

const bytes = (value: string | Uint8Array) => (typeof value === 'string' ? Buffer.from(value) : Buffer.from(value));
const secret = (name: string, value: string | Uint8Array): SecretToMask => ({ name, value: bytes(value) });

/** Feeds the chunks through one masker and returns the whole output. */
function maskChunks(plan: MaskPlan, chunks: (string | Uint8Array)[]): Buffer {
  const masker = createMasker(plan);
  const out = chunks.map((chunk) => Buffer.from(masker.push(bytes(chunk))));
  out.push(Buffer.from(masker.end()));
  return Buffer.concat(out);
}

const maskText = (plan: MaskPlan, ...chunks: string[]) => maskChunks(plan, chunks).toString('utf8');

// ---------------------------------------------------------------------------------------------
// The reference: the patterns of a value, and masking a whole output at once.

/** Percent-encoding of the bytes outside `kept` (a regular expression for one character). */
function percent(value: Buffer, kept: RegExp, upper: boolean, spaceAsPlus: boolean): Buffer {
  const text = [...value]
    .map((byte) => {
      const c = String.fromCharCode(byte);
      if (kept.test(c)) return c;
      if (spaceAsPlus && c === ' ') return '+';
      const hex = byte.toString(16).padStart(2, '0');
      return `%${upper ? hex.toUpperCase() : hex}`;
    })
    .join('');
  return Buffer.from(text, 'latin1');
}

function json(value: Buffer): Buffer | undefined {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(value);
  } catch {
    return undefined;
  }
  const escaped = Buffer.from(JSON.stringify(text).slice(1, -1));
  return escaped.equals(value) ? undefined : escaped;
}

function forms(value: Buffer): Buffer[] {
  const base64 = value.toString('base64').replace(/=+$/, '');
  const base64url = value.toString('base64url');
  const whole = Math.floor((value.length * 8) / 6);
  const list = [
    value,
    Buffer.from(base64),
    Buffer.from(base64.slice(0, whole)),
    Buffer.from(base64url),
    Buffer.from(base64url.slice(0, whole)),
    percent(value, /[A-Za-z0-9\-._~]/, true, false),
    percent(value, /[A-Za-z0-9\-._~]/, false, false),
    percent(value, /[A-Za-z0-9\-._~]/, true, true),
    percent(value, /[A-Za-z0-9\-._~]/, false, true),
    // as JavaScript's encodeURIComponent and URLSearchParams write it
    percent(value, /[A-Za-z0-9\-._~!'()*]/, true, false),
    percent(value, /[A-Za-z0-9*\-._]/, true, true),
    Buffer.from(value.toString('hex')),
    Buffer.from(value.toString('hex').toUpperCase()),
  ];
  const escaped = json(value);
  return escaped === undefined ? list : [...list, escaped];
}

function referencePatterns(value: Buffer): Buffer[] {
  const list = forms(value);
  const trimmed = /\r?\n$/.test(value.toString('latin1')) ? value.subarray(0, value.toString('latin1').replace(/\r?\n$/, '').length) : undefined;
  if (trimmed !== undefined && trimmed.length >= MIN_MASKED_LENGTH) list.push(...forms(trimmed));
  if (value.includes(0x0a)) {
    for (const text of value.toString('latin1').split('\n')) {
      const line = Buffer.from(text.replace(/\r$/, ''), 'latin1');
      if (line.length < MIN_MASKED_LENGTH) continue;
      list.push(line);
      const escaped = json(line);
      if (escaped !== undefined) list.push(escaped);
    }
  }
  return list.filter((p) => p.length >= MIN_MASKED_LENGTH);
}

/** Masks a whole output: every occurrence of every pattern; overlapping or touching ones become one run. */
function referenceMask(input: Buffer, secrets: SecretToMask[], style: MaskStyle): Buffer {
  const patterns = secrets
    .filter((s) => s.value.length >= MIN_MASKED_LENGTH)
    .flatMap((s) => referencePatterns(bytes(s.value)).map((pattern) => ({ pattern, name: s.name })));
  const found: { start: number; end: number; order: number; name: string }[] = [];
  patterns.forEach(({ pattern, name }, order) => {
    for (let at = input.indexOf(pattern); at !== -1; at = input.indexOf(pattern, at + 1)) {
      found.push({ start: at, end: at + pattern.length, order, name });
    }
  });
  // a run is named after its earliest start; there, the longest; of equal ones, the first listed
  found.sort((x, y) => x.start - y.start || y.end - x.end || x.order - y.order);
  const out: Buffer[] = [];
  let at = 0;
  let run: { start: number; end: number; name: string } | undefined;
  const close = () => {
    if (run === undefined) return;
    out.push(input.subarray(at, run.start), Buffer.from(style === 'name' ? `<${run.name}>` : '***'));
    at = run.end;
  };
  for (const f of found) {
    if (run !== undefined && f.start <= run.end) run.end = Math.max(run.end, f.end);
    else {
      close();
      run = { ...f };
    }
  }
  close();
  out.push(input.subarray(at));
  return Buffer.concat(out);
}

/** A small seeded generator, so that a failing random case can be replayed. */
function random(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (below: number) => Math.floor(next() * below);
  return { next, int, pick: <T>(list: readonly T[]) => list[int(list.length)]! };
}

// ---------------------------------------------------------------------------------------------

describe('masking a value as it is', () => {
  it('replaces the value and leaves every other byte as it was', () => {
    const plan = planMasking([secret('TOKEN', TOKEN)], 'stars');
    expect(maskText(plan, `start\ntoken=${TOKEN};\n\ttrailing ${TOKEN}`)).toBe('start\ntoken=***;\n\ttrailing ***');
    expect(maskText(plan, 'nothing secret here, not even tk_9f3A/b+c=d&e?f g%h-7c1e5')).toBe('nothing secret here, not even tk_9f3A/b+c=d&e?f g%h-7c1e5');
  });

  it("names the secret under style 'name'", () => {
    const plan = planMasking([secret('DB_PASSWORD', 'correct horse'), secret('API_KEY', 'sk-live-0123456789')], 'name');
    expect(maskText(plan, 'db=correct horse key=sk-live-0123456789.')).toBe('db=<DB_PASSWORD> key=<API_KEY>.');
  });

  it('catches the value split across two chunks at every byte position, and fed one byte at a time', () => {
    const plan = planMasking([secret('TOKEN', TOKEN)], 'stars');
    const text = `before ${TOKEN} after`;
    for (let cut = 0; cut <= text.length; cut += 1) {
      expect(maskText(plan, text.slice(0, cut), text.slice(cut)), `cut at ${cut}`).toBe('before *** after');
    }
    expect(maskText(plan, ...text)).toBe('before *** after');
    expect(maskText(plan, ...`${TOKEN}${TOKEN} and ${TOKEN}`)).toBe('*** and ***');
  });

  it('collapses overlapping and touching occurrences into one replacement, named after the earliest start', () => {
    const plan = planMasking([secret('A', 'alpha-123456'), secret('B', '123456-omega'), secret('LONG', 'alpha-123456-and-more')], 'name');
    expect(maskText(plan, '[alpha-123456-omega]')).toBe('[<A>]');
    expect(maskText(plan, '[123456-omegaalpha-123456]')).toBe('[<B>]');
    expect(maskText(plan, '[alpha-123456 123456-omega]')).toBe('[<A> <B>]');
    // two occurrences start at the same byte: the longer one names the run
    expect(maskText(plan, '[alpha-123456-and-more]')).toBe('[<LONG>]');
    // the same, with the shorter one complete a chunk before the longer one
    expect(maskText(plan, '[alpha-123456', '-and-more]')).toBe('[<LONG>]');
  });

  it('holds back only the bytes that could still begin a value', () => {
    const plan = planMasking([secret('TOKEN', TOKEN)], 'stars');
    const masker = createMasker(plan);
    expect(bytes(masker.push(bytes('a whole line\n'))).toString()).toBe('a whole line\n');
    expect(masker.held).toBe(0);
    expect(bytes(masker.push(bytes('then tk_9f'))).toString()).toBe('then ');
    expect(masker.held).toBe(5);
    expect(bytes(masker.push(bytes('ine\n'))).toString()).toBe('tk_9fine\n');
    expect(masker.held).toBe(0);
    expect(bytes(masker.push(bytes('tk_9'))).toString()).toBe('');
    expect(bytes(masker.end()).toString()).toBe('tk_9');
  });
});

describe('masking the forms a program prints a value in', () => {
  const plan = planMasking([secret('TOKEN', TOKEN)], 'stars');
  const value = bytes(TOKEN);

  it('base64 and base64url, padded or not, and at the start of longer encoded data', () => {
    const base64 = value.toString('base64');
    expect(maskText(plan, `b64:${base64}.`)).toBe(`b64:***${base64.replace(/^[^=]*/, '')}.`);
    expect(maskText(plan, `b64url:${value.toString('base64url')}.`)).toBe('b64url:***.');
    // where the two alphabets differ
    const symbols = planMasking([secret('SYMBOLS', 's3cr3t>>>???~~')], 'stars');
    const [standard, urlSafe] = [bytes('s3cr3t>>>???~~').toString('base64'), bytes('s3cr3t>>>???~~').toString('base64url')];
    expect(standard).toMatch(/\+.*\//);
    expect(maskText(symbols, `${standard} ${urlSafe}`)).toBe('***= ***');
    // the value followed by more data: all the characters the value alone decides are masked
    const longer = Buffer.concat([value, bytes('Xmore data')]).toString('base64');
    expect(maskText(plan, longer)).toBe(`***${longer.slice(Math.floor((value.length * 8) / 6))}`);
  });

  it('URL-encoded with upper- and lower-case escapes, and form-encoded', () => {
    const upper = encodeURIComponent(TOKEN);
    expect(upper).toMatch(/%2F/);
    expect(maskText(plan, `u=${upper}&v=1`)).toBe('u=***&v=1');
    expect(maskText(plan, `u=${upper.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase())}&v=1`)).toBe('u=***&v=1');
    expect(maskText(plan, `${new URLSearchParams({ u: TOKEN, v: '1' })}`)).toBe('u=***&v=1');
    expect(maskText(plan, `u=${upper.replace(/%20/g, '+').replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase())}&v=1`)).toBe('u=***&v=1');
  });

  it("URL-encoded by encoders that differ on !'()*~", () => {
    const value = "it's (a) *wild* ~value~!";
    const symbols = planMasking([secret('WILD', value)], 'stars');
    const strict = [...bytes(value)].map((b) => (/[A-Za-z0-9\-._~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase()}`)).join('');
    const encoded = [strict, strict.toLowerCase(), encodeURIComponent(value), `${new URLSearchParams({ v: value })}`.slice(2)];
    expect(new Set(encoded).size).toBe(4);
    expect(maskText(symbols, encoded.join(' '))).toBe('*** *** *** ***');
  });

  it('hex in lower and upper case', () => {
    expect(maskText(plan, `hex ${value.toString('hex')} HEX ${value.toString('hex').toUpperCase()}`)).toBe('hex *** HEX ***');
  });

  it('JSON-escaped, inside a JSON document', () => {
    const tricky = 'pa"ss\\word\twith "quotes"';
    const jsonPlan = planMasking([secret('PASSWORD', tricky)], 'name');
    const document = JSON.stringify({ user: 'deploy', password: tricky, nested: { again: [tricky] } });
    expect(document).not.toContain(tricky);
    expect(maskText(jsonPlan, document)).toBe('{"user":"deploy","password":"<PASSWORD>","nested":{"again":["<PASSWORD>"]}}');
  });

  it('a value stored with a final line break is also masked without it, in every form', () => {
    const withNewline = planMasking([secret('PW', 'hunter2-correct\n')], 'stars');
    expect(maskText(withNewline, 'pw=hunter2-correct;')).toBe('pw=***;');
    expect(maskText(withNewline, `pw=${bytes('hunter2-correct').toString('base64')}`)).toBe('pw=***');
    expect(maskText(withNewline, 'echo: hunter2-correct\n!')).toBe('echo: ***!');
  });
});

describe('masking a multi-line value', () => {
  const pem = PEM_LINES.join('\n');

  it('printed whole, or line by line with other text between the lines', () => {
    for (const [name, value] of [['LF', `${pem}\n`], ['CRLF', `${PEM_LINES.join('\r\n')}\r\n`]]) {
      const plan = planMasking([secret('KEY', value!)], 'stars');
      expect(maskText(plan, `key:\n${value}done\n`), name).toBe('key:\n***done\n');
      const lineByLine = PEM_LINES.map((line) => `line: ${line} (one line of the key)\n`).join('');
      const masked = maskChunks(plan, [...lineByLine]).toString();
      expect(masked, name).toBe('line: *** (one line of the key)\n'.repeat(PEM_LINES.length));
      for (const line of PEM_LINES) expect(masked).not.toContain(line);
    }
  });

  it('each line JSON-escaped', () => {
    const plan = planMasking([secret('CONFIG', 'user = "deploy"\npassword = "x\\y\\z"\n')], 'stars');
    expect(maskText(plan, JSON.stringify({ lines: ['user = "deploy"', 'password = "x\\y\\z"'] }))).toBe('{"lines":["***","***"]}');
  });

  it('leaves lines shorter than the minimum alone', () => {
    const plan = planMasking([secret('SHORTLINES', 'ab\ncdefgh\nij')], 'stars');
    expect(maskText(plan, 'ab ij cdefgh')).toBe('ab ij ***');
  });
});

describe('what is not masked', () => {
  it(`values under ${MIN_MASKED_LENGTH} bytes are left alone and reported`, () => {
    const plan = planMasking([secret('SHORT', 'abc12'), secret('EMPTY', ''), secret('LONG', 'abc123'), secret('ALSO_SHORT', '12345')], 'stars');
    expect(plan.tooShort).toEqual(['SHORT', 'EMPTY', 'ALSO_SHORT']);
    expect(maskText(plan, 'abc12 12345 YWJjMTI= abc123')).toBe('abc12 12345 YWJjMTI= ***');
  });

  it('a value over 64 KiB is masked as it is and in base64 only', () => {
    const value = Buffer.alloc(100_000, 'large file content, ');
    const plan = planMasking([{ name: 'BIG', value }], 'stars');
    const printed = Buffer.concat([bytes('<'), value, bytes('> '), bytes(value.toString('base64url')), bytes(' '), bytes(value.toString('hex').slice(0, 40))]);
    const chunks = Array.from({ length: Math.ceil(printed.length / 4096) }, (_, k) => printed.subarray(k * 4096, (k + 1) * 4096));
    expect(maskChunks(plan, chunks).toString()).toBe(`<***> *** ${value.toString('hex').slice(0, 40)}`);
  });

  it('with no secret to mask, the output passes through unchanged', () => {
    const plan = planMasking([], 'stars');
    expect(plan.patternCount).toBe(0);
    const masker = createMasker(plan);
    expect(bytes(masker.push(bytes('anything at all'))).toString()).toBe('anything at all');
    expect(masker.held).toBe(0);
  });
});

describe('bytes, not text', () => {
  it('masks values with bytes that are not UTF-8, among bytes that are not UTF-8, and their hex', () => {
    const value = Uint8Array.of(0x00, 0xff, 0xfe, 0x80, 0x41, 0xc3, 0x28, 0x0a, 0x7f);
    const plan = planMasking([{ name: 'BIN', value }], 'stars');
    const before = Uint8Array.of(0xc0, 0x80, 0xff, 0x00);
    const after = Uint8Array.of(0xed, 0xa0, 0x80, 0x0a);
    const stars = bytes('***');
    for (let cut = 0; cut <= value.length; cut += 1) {
      const out = maskChunks(plan, [Buffer.concat([before, value.subarray(0, cut)]), Buffer.concat([value.subarray(cut), after])]);
      expect(out.equals(Buffer.concat([before, stars, after])), `cut at ${cut}`).toBe(true);
    }
    expect(maskChunks(plan, [bytes(value).toString('hex')]).toString()).toBe('***');
  });

  it("does not keep the caller's value, nor change it", () => {
    const value = bytes('a-value-the-caller-wipes');
    const plan = planMasking([{ name: 'V', value }], 'stars');
    expect(value.toString()).toBe('a-value-the-caller-wipes');
    value.fill(0);
    expect(maskText(plan, 'x a-value-the-caller-wipes y')).toBe('x *** y');
  });

  it('shows nothing of the secrets when a plan or a masker is logged', async () => {
    const { inspect } = await import('node:util');
    const plan = planMasking([secret('TOKEN', TOKEN)], 'stars');
    const masker = createMasker(plan);
    masker.push(bytes('tk_9f3A/b+c'));
    for (const shown of [inspect(plan, { depth: 9, showHidden: true }), inspect(masker, { depth: 9, showHidden: true }), JSON.stringify(plan)]) {
      expect(shown).not.toMatch(/tk_9|Uint8Array|Int32Array/);
    }
  });

  it('keeps its own copy of the values: the caller may wipe them before the first output', () => {
    // vault exec wipes the released values right after the spawn; the automaton is built later
    const value = bytes(TOKEN);
    const plan = planMasking([{ name: 'TOKEN', value }], 'stars');
    value.fill(0);
    expect(maskText(plan, `a ${TOKEN} b`)).toBe('a *** b');
  });

  it('inspecting a plan before its automaton is built shows no value either', async () => {
    const { inspect } = await import('node:util');
    const plan = planMasking([secret('TOKEN', TOKEN)], 'stars');
    const shown = inspect(plan, { depth: 9, showHidden: true });
    expect(shown).toMatch(/patternCount: \[Getter\]/);
    expect(shown).not.toMatch(/tk_9|Uint8Array/);
    expect(JSON.stringify(plan)).not.toMatch(/tk_9/);
  });

  it('a disposed plan refuses to mask instead of passing output through', () => {
    const plan = planMasking([secret('TOKEN', TOKEN)], 'stars');
    const masker = createMasker(plan);
    expect(bytes(masker.push(bytes(`${TOKEN} `))).toString()).toBe('*** ');
    disposePlan(plan);
    expect(() => masker.push(bytes(TOKEN))).toThrow(/disposed/);
    expect(() => createMasker(plan).push(bytes(TOKEN))).toThrow(/disposed/);
    expect(() => createMasker({ tooShort: [], patternCount: 0, longestPattern: 0 })).toThrow(/planMasking/);
  });
});

describe('random output against the reference', () => {
  /** Values that overlap one another a lot, some of several lines, some not UTF-8. */
  function randomSecrets(rng: ReturnType<typeof random>): SecretToMask[] {
    const alphabets = ['ab', 'abc', 'abcdef0123 "\\/+=%', 'xyz\n'];
    const secrets: SecretToMask[] = [];
    for (let i = 1 + rng.int(5); i > 0; i -= 1) {
      const alphabet = rng.pick(alphabets);
      const more = (length: number) => bytes(Array.from({ length }, () => rng.pick([...alphabet])).join(''));
      let value = more(3 + rng.int(14));
      // often a longer or shorter version of another one, so that occurrences start together
      if (secrets.length > 0 && rng.int(3) === 0) {
        const other = bytes(rng.pick(secrets).value);
        value = rng.int(2) === 0 ? Buffer.concat([other, more(1 + rng.int(4))]) : other.subarray(0, Math.max(1, other.length - 1 - rng.int(4)));
      }
      if (rng.int(5) === 0) value[rng.int(value.length)] = 0x80 + rng.int(128);
      secrets.push({ name: `S${secrets.length}`, value });
    }
    return secrets;
  }

  function randomOutput(rng: ReturnType<typeof random>, secrets: SecretToMask[]): Buffer {
    const parts: Buffer[] = [];
    for (let k = rng.int(40); k >= 0; k -= 1) {
      const choice = rng.int(4);
      if (choice === 0 || secrets.length === 0) {
        parts.push(bytes(Array.from({ length: rng.int(12) }, () => rng.pick([...'abcxyz \n"\\'])).join('')));
      } else if (choice === 1) {
        parts.push(Buffer.from(Array.from({ length: rng.int(6) }, () => rng.int(256))));
      } else {
        const value = bytes(rng.pick(secrets).value);
        const form = rng.pick(referencePatterns(value).length > 0 ? referencePatterns(value) : [value]);
        // sometimes only part of a form, so that prefixes that never complete are held and released
        parts.push(choice === 2 ? form : form.subarray(0, rng.int(form.length + 1)));
      }
    }
    return Buffer.concat(parts);
  }

  function randomChunks(rng: ReturnType<typeof random>, input: Buffer): Buffer[] {
    const chunks: Buffer[] = [];
    for (let at = 0; at < input.length; ) {
      const size = rng.pick([0, 1, 1, 2, 3, 5, 8, 13, 64]);
      chunks.push(input.subarray(at, at + size));
      at += size;
    }
    return chunks;
  }

  it('gives the same output as masking the whole output at once, for any chunking, and leaves no pattern', () => {
    const seed = Date.now() % 100_000;
    const rng = random(seed);
    let maskedSomething = 0;
    for (let round = 0; round < 1500; round += 1) {
      const secrets = randomSecrets(rng);
      const style: MaskStyle = rng.int(2) === 0 ? 'stars' : 'name';
      const plan = planMasking(secrets, style);
      const input = randomOutput(rng, secrets);
      const expected = referenceMask(input, secrets, style);
      const context = `seed ${seed}, round ${round}`;
      expect(maskChunks(plan, randomChunks(rng, input)).equals(expected), context).toBe(true);
      expect(maskChunks(plan, [input]).equals(expected), context).toBe(true);
      if (!expected.equals(input)) maskedSomething += 1;
      // the replacements hold none of '*', '<', '>', which no secret here contains
      for (const s of secrets.filter((s) => s.value.length >= MIN_MASKED_LENGTH)) {
        for (const pattern of referencePatterns(bytes(s.value))) expect(expected.includes(pattern), context).toBe(false);
      }
    }
    expect(maskedSomething).toBeGreaterThan(500);
  });

  it('the reference itself masks what it should', () => {
    const secrets = [secret('A', 'abcabc'), secret('B', 'cabcab')];
    expect(referenceMask(bytes('x abcabcab y abcabc'), secrets, 'name').toString()).toBe('x <A> y <A>');
    expect(referenceMask(bytes('abcab'), secrets, 'stars').toString()).toBe('abcab');
  });
});

describe('bounded memory', () => {
  const MiB = 1 << 20;

  /** Feeds 50 MiB of 'a' in 64 KiB chunks; returns what came out, checking the held bytes after each chunk. */
  function endlessA(plan: MaskPlan, check: (out: Uint8Array) => void) {
    const chunk = new Uint8Array(64 * 1024).fill(0x61);
    const masker = createMasker(plan);
    let outBytes = 0;
    let mostHeld = 0;
    for (let fed = 0; fed < 50 * MiB; fed += chunk.length) {
      const out = masker.push(chunk);
      check(out);
      outBytes += out.length;
      mostHeld = Math.max(mostHeld, masker.held);
    }
    const rest = masker.end();
    check(rest);
    return { outBytes: outBytes + rest.length, mostHeld };
  }

  it('endless repetitions of a value come out as one replacement, holding nothing', () => {
    const plan = planMasking([secret('AS', 'aaaaaa')], 'stars');
    let text = '';
    const { outBytes, mostHeld } = endlessA(plan, (out) => (text += bytes(out).toString()));
    expect(text).toBe('***');
    expect(outBytes).toBe(3);
    expect(mostHeld).toBeLessThan(plan.longestPattern);
  });

  it('overlapping occurrences, forever: one replacement', () => {
    const plan = planMasking([secret('ABA', 'abaaba')], 'stars');
    const chunk = bytes('aba'.repeat(667));
    const masker = createMasker(plan);
    let out = '';
    let mostHeld = 0;
    for (let k = 0; k < 2000; k += 1) {
      out += bytes(masker.push(chunk)).toString();
      mostHeld = Math.max(mostHeld, masker.held);
    }
    out += bytes(masker.end()).toString();
    expect(out).toBe('***');
    expect(mostHeld).toBeLessThan(plan.longestPattern);
  });

  it('a value the output keeps almost matching holds fewer bytes than the value, and changes nothing', () => {
    for (const value of ['aaaaab', 'unrelated-secret-value']) {
      const plan = planMasking([secret('V', value)], 'stars');
      let allA = true;
      const { outBytes, mostHeld } = endlessA(plan, (out) => {
        if (out.some((byte) => byte !== 0x61)) allA = false;
      });
      expect(allA, value).toBe(true);
      expect(outBytes, value).toBe(50 * MiB);
      expect(mostHeld, value).toBeLessThan(plan.longestPattern);
      expect(mostHeld, value).toBe(value.startsWith('a') ? 5 : 0);
    }
  });
});

/** A Writable that keeps every chunk it is given. */
function collectingSink(): { sink: Writable; received: Buffer[] } {
  const received: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      received.push(chunk);
      done();
    },
  });
  return { sink, received };
}

describe('maskingTransform', () => {
  it('masks a stream through pipeline(), releasing the held tail at the end', async () => {
    const plan = planMasking([secret('TOKEN', TOKEN)], 'name');
    const { sink, received } = collectingSink();
    const text = `one ${TOKEN}\ntwo ${bytes(TOKEN).toString('hex')}\nends with tk_9`;
    await pipeline(Readable.from([...text].map((c) => bytes(c))), maskingTransform(plan), sink);
    expect(Buffer.concat(received).toString()).toBe('one <TOKEN>\ntwo <TOKEN>\nends with tk_9');
  });

  it('ends cleanly with no output when the target printed nothing, even after the plan is disposed', async () => {
    const plan = planMasking([secret('TOKEN', TOKEN)], 'stars');
    const { sink, received } = collectingSink();
    const transform = maskingTransform(plan);
    disposePlan(plan);
    await pipeline(Readable.from([]), transform, sink);
    expect(received).toEqual([]);
  });

  it('fails the pipeline rather than pass output unmasked once the plan is disposed', async () => {
    const plan = planMasking([secret('TOKEN', TOKEN)], 'stars');
    disposePlan(plan);
    const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
    await expect(pipeline(Readable.from([bytes(TOKEN)]), maskingTransform(plan), sink)).rejects.toThrow(/disposed/);
  });
});
