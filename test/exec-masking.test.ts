/**
 * Output masking through `vault exec`, end to end: a real child prints released secrets raw, split
 * across writes, and encoded; what reaches the CI log (our pipes) holds none of them, and all else
 * is unchanged. On a terminal the child keeps its tty and its output untouched. The masker's own
 * algorithm is tested in masking.test.ts.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, RELEASE_CLI, type Workspace } from './helpers/cli.js';
import { ptyRun } from './helpers/pty.js';

const TOKEN = 'tk_9f3A/b+c=d&e?f g%h-7c1e5b';
const PEM_LINES = ['-----BEGIN TEST KEY-----', 'MIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEwggE9AgEAAkEA', 'q7BFUpkGp3+Uj6wNtOi2PeaOHZLnVtZp0ZgE8Qp3', '-----END TEST KEY-----'];
const PEM = PEM_LINES.join('\n');
const SHORT = 'abc12';

/** Every form of the token the child prints, as the child computes it. */
const FORMS = {
  raw: TOKEN,
  base64: Buffer.from(TOKEN).toString('base64'),
  base64url: Buffer.from(TOKEN).toString('base64url'),
  url: encodeURIComponent(TOKEN),
  hex: Buffer.from(TOKEN).toString('hex'),
  HEX: Buffer.from(TOKEN).toString('hex').toUpperCase(),
};

/** Prints the secrets from its environment in every way the issue lists, to stdout and stderr. */
const PRINTER = `#!/usr/bin/env python3
import base64, json, os, sys, time, urllib.parse
t = os.environ['TOKEN']
pem = os.environ['PEM']
out = sys.stdout
def say(line, stream=out):
    stream.write(line + '\\n'); stream.flush()
say('start of output')
say('raw:' + t)
half = len(t) // 2
out.write('split:' + t[:half]); out.flush(); time.sleep(0.4)
out.write(t[half:] + ':end\\n'); out.flush()
for i in range(len(t)):
    out.write(t[i]); out.flush()
say(':bytewise')
say(json.dumps({'user': 'deploy', 'token': t}))
say('b64:' + base64.b64encode(t.encode()).decode())
say('b64url:' + base64.urlsafe_b64encode(t.encode()).decode().rstrip('='))
say('url:' + urllib.parse.quote(t, safe=''))
say('hex:' + t.encode().hex())
say('HEX:' + t.encode().hex().upper())
say('pem:' + pem)
for line in pem.split('\\n'):
    say('line: ' + line + ' (one line of the key)')
    time.sleep(0.05)
say('stderr:' + t, sys.stderr)
say('short:' + os.environ['SHORT'])
say('end of output')
`;

/** A fresh vault holding TOKEN (and `more`), and the program `file` with `body`, granted all of them. */
function vaultWithProgram(file: string, body: string, more: Record<string, string> = {}, minTier = 'hardened'): { ws: Workspace; script: string } {
  const ws = makeWorkspace();
  initWithToken(ws);
  const secrets = { TOKEN, ...more };
  for (const [name, value] of Object.entries(secrets)) put(ws, name, value);
  const script = path.join(ws.root, file);
  fs.writeFileSync(script, body, { mode: 0o755 });
  const allowed = ws.run(['allow', ...Object.keys(secrets), '--to', script, '--min-tier', minTier]);
  if (allowed.status !== 0) throw new Error(`vault allow failed: ${allowed.stderr}`);
  return { ws, script };
}

describe('vault exec masks released secrets in what the child prints', () => {
  let ws: Workspace;
  let script: string;

  beforeEach(() => {
    ({ ws, script } = vaultWithProgram('printer.py', PRINTER, { PEM, SHORT }));
  });
  afterEach(() => ws.cleanup());

  const everyForm = (text: string) => [...Object.entries(FORMS), ...PEM_LINES.map((l, i) => [`pem line ${i}`, l] as const)].filter(([, form]) => text.includes(form)).map(([what]) => what);

  it('in CI (pipes, CI=true): no form of any secret reaches the log; everything else is unchanged', () => {
    const result = ws.run(['exec', '--', script], { env: { CI: 'true' } });
    expect(result.status, result.stderr).toBe(0);
    expect(everyForm(result.stdout + result.stderr), 'forms of a secret found in the output').toEqual([]);
    const lines = result.stdout.split('\n');
    expect(lines[0]).toBe('start of output');
    expect(lines[1]).toBe('raw:***');
    expect(lines[2]).toBe('split:***:end');
    expect(lines[3]).toBe('***:bytewise');
    expect(JSON.parse(lines[4]!)).toEqual({ user: 'deploy', token: '***' });
    for (const [i, prefix] of ['b64:', 'b64url:', 'url:', 'hex:', 'HEX:'].entries()) {
      expect(lines[5 + i]).toMatch(new RegExp(`^${prefix}\\*\\*\\*=*$`));
    }
    expect(lines[10]).toBe('pem:***');
    expect(lines.slice(11, 15)).toEqual(PEM_LINES.map(() => 'line: *** (one line of the key)'));
    expect(lines.slice(15)).toEqual([`short:${SHORT}`, 'end of output', '']);
    expect(result.stderr).toContain('stderr:***\n');
    // warned once, naming the secret too short to mask; never its value
    const warnings = result.stderr.split('\n').filter((l) => l.startsWith('vault: warning:'));
    expect(warnings).toEqual([expect.stringMatching(/^vault: warning: not masking SHORT in the output: shorter than 6 bytes/)]);
  });

  it('masks by default whenever output is not a terminal, and --mask=name names the secret', () => {
    const byDefault = ws.run(['exec', '--', script]);
    expect(byDefault.status, byDefault.stderr).toBe(0);
    expect(everyForm(byDefault.stdout + byDefault.stderr)).toEqual([]);
    expect(byDefault.stdout).toContain('raw:***\n');

    const named = ws.run(['exec', '--mask=name', '--', script]);
    expect(named.status, named.stderr).toBe(0);
    expect(everyForm(named.stdout + named.stderr)).toEqual([]);
    expect(named.stdout).toContain('raw:<TOKEN>\n');
    expect(named.stdout).toContain('pem:<PEM>\n');
  });

  it('--no-mask passes the output through byte for byte', () => {
    const result = ws.run(['exec', '--no-mask', '--', script], { env: { CI: 'true' } });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain(`raw:${TOKEN}\n`);
    expect(result.stdout).toContain(`split:${TOKEN}:end\n`);
    expect(result.stdout).toContain(`b64:${FORMS.base64}\n`);
    expect(result.stderr).not.toMatch(/warning/);
  });

  it('refuses a --mask style it does not know, with exit 2 and one line, running nothing', () => {
    const result = ws.run(['exec', '--mask=loud', '--', script]);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/^vault: --mask takes =stars or =name, not "loud"[^\n]*\n$/);
    expect(result.stdout).toBe('');
  });

  it('keeps exit codes and signals as without masking', () => {
    const exits = path.join(ws.root, 'exits.sh');
    fs.writeFileSync(exits, `#!/bin/sh\necho "token=$TOKEN"\n[ "$1" = term ] && kill -TERM $$\nexit 42\n`, { mode: 0o755 });
    expect(ws.run(['allow', 'TOKEN', '--to', exits]).status).toBe(0);
    const code = ws.run(['exec', '--', exits]);
    expect([code.status, code.stdout]).toEqual([42, 'token=***\n']);
    const signalled = ws.run(['exec', '--', exits, 'term']);
    expect([signalled.status, signalled.stdout]).toEqual([143, 'token=***\n']);
  });
});

describe('a reader that goes away', () => {
  it('ends an endless child with SIGPIPE (141), as without masking, instead of blocking it', () => {
    const { ws, script } = vaultWithProgram('loop.sh', '#!/bin/sh\nwhile :; do echo "line $TOKEN"; done\n');
    try {
      for (const mask of ['--mask', '--no-mask']) {
        const pipeline = `"${process.execPath}" "${RELEASE_CLI}" exec ${mask} -- "${script}" | head -n 2; echo "status=\${PIPESTATUS[0]}"`;
        const result = spawnSync('bash', ['-c', pipeline], { env: ws.env, cwd: ws.project, encoding: 'utf8', timeout: 30_000 });
        expect(result.error, `${mask}: the pipeline did not end`).toBeUndefined();
        const expected = mask === '--mask' ? 'line ***' : `line ${TOKEN}`;
        expect(result.stdout, mask).toBe(`${expected}\n${expected}\nstatus=141\n`);
      }
    } finally {
      ws.cleanup();
    }
  });

  it('`| head -1` twenty times in each tier: SIGPIPE (141) every time, never ECONNRESET', () => {
    const { ws, script } = vaultWithProgram('list.sh', '#!/bin/sh\ni=0; while :; do echo "item $i $TOKEN"; i=$((i+1)); done\n', {}, 'none');
    try {
      for (const tier of ['none', 'hardened', 'lockdown']) {
        const loop = `for i in $(seq 20); do "${process.execPath}" "${RELEASE_CLI}" exec --tier ${tier} -- "${script}" 2>>errors | head -1 >/dev/null; printf '%s ' "\${PIPESTATUS[0]}"; done`;
        const result = spawnSync('bash', ['-c', loop], { env: { ...ws.env, CI: 'true' }, cwd: ws.project, encoding: 'utf8', timeout: 120_000 });
        expect(result.stdout.trim().split(' '), tier).toEqual(Array(20).fill('141'));
      }
      expect(fs.existsSync(path.join(ws.project, 'errors')) ? fs.readFileSync(path.join(ws.project, 'errors'), 'utf8') : '').toBe('');
    } finally {
      ws.cleanup();
    }
  });
});

describe('what a target does to its pipes', () => {
  it('reopens them: `echo x > /dev/stderr` and `tee /dev/stderr` work in a set -e script with masking on', () => {
    const { ws, script } = vaultWithProgram('reopen.sh', '#!/bin/sh\nset -e\necho "to-stderr $TOKEN" > /dev/stderr\necho x | tee /dev/stderr > /dev/null\necho done\n', {}, 'none');
    try {
      for (const tier of ['none', 'hardened', 'lockdown']) {
        const result = ws.run(['exec', '--tier', tier, '--', script], { env: { CI: 'true' } });
        expect(result.status, `${tier}: ${result.stderr}`).toBe(0);
        expect(result.stdout).toBe('done\n');
        expect(result.stderr).toBe('to-stderr ***\nx\n');
      }
    } finally {
      ws.cleanup();
    }
  });

  it('in tier none, vault returns when the target exits, not when a background child closes its output', () => {
    const { ws, script } = vaultWithProgram('background.sh', '#!/bin/sh\nsleep 20 &\necho "started $TOKEN"\nexit 3\n', {}, 'none');
    try {
      const started = Date.now();
      const result = ws.run(['exec', '--tier', 'none', '--', script], { env: { CI: 'true' } });
      expect(result.status).toBe(3);
      expect(result.stdout).toBe('started ***\n');
      expect(Date.now() - started, 'vault waited for the background sleep').toBeLessThan(15_000);
    } finally {
      ws.cleanup();
    }
  });

  it('--timeout ends the target (SIGTERM, then SIGKILL after --kill-after) with 124; a bad duration is exit 2', () => {
    const { ws, script } = vaultWithProgram('slow.sh', "#!/bin/sh\ntrap 'echo term' TERM\necho ready\nwhile :; do sleep 0.05; done\n");
    try {
      const result = ws.run(['exec', '--timeout', '0.3s', '--kill-after', '300ms', '--', script], { env: { CI: 'true' } });
      expect(result.status, result.stderr).toBe(124);
      expect(result.stdout).toBe('ready\nterm\n');
      for (const bad of ['0', 'soon', '-1s', '50d']) {
        const refused = ws.run(['exec', '--timeout', bad, '--', script]);
        expect(refused.status, bad).toBe(2);
        expect(refused.stderr).toMatch(/^vault: --timeout takes a duration such as 30s[^\n]*\n$/);
      }
    } finally {
      ws.cleanup();
    }
  });
});

describe('vault exec on a terminal', () => {
  let ws: Workspace;
  let script: string;

  beforeEach(() => {
    ({ ws, script } = vaultWithProgram('tty.sh', '#!/bin/sh\n[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo "tty: yes" || echo "tty: no"\necho "token=$TOKEN"\n'));
  });
  afterEach(() => ws.cleanup());

  const onPty = (args: string[], env: NodeJS.ProcessEnv = {}) => ptyRun(ws, [process.execPath, RELEASE_CLI, 'exec', ...args, '--', script], [], env);

  it('leaves masking off: the child keeps its terminal and its output', () => {
    const result = onPty([]);
    expect(result.timedOut).toBe(false);
    expect(result.status).toBe(0);
    expect(result.output).toBe(`tty: yes\ntoken=${TOKEN}\n`);
  });

  it('masks when asked (--mask) or when CI is set, and the child still has its terminal (a pty of its own)', () => {
    for (const [args, env] of [[['--mask'], {}], [[], { CI: 'true' }]] as const) {
      const result = onPty([...args], env);
      expect(result.status, result.output).toBe(0);
      expect(result.output).toBe('tty: yes\ntoken=***\n');
    }
  });
});

describe('masking an endless writer', () => {
  let ws: Workspace;
  afterEach(() => ws.cleanup());

  it('keeps memory flat while a child writes without newlines for seconds', async () => {
    // endless 'a's with no newline; the token now and then, which must still be masked
    const made = vaultWithProgram('endless.sh', '#!/bin/sh\nwhile :; do head -c 1048576 /dev/zero | tr "\\0" a; printf %s "$TOKEN"; done\n');
    ws = made.ws;
    const script = made.script;

    const child = ws.start(['exec', '--', script], { env: { CI: 'true' } });
    let bytes = 0;
    let tail = Buffer.alloc(0);
    let leaked = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      // look across chunk boundaries too
      const window = Buffer.concat([tail, chunk]);
      if (window.includes(TOKEN)) leaked = true;
      tail = window.subarray(Math.max(0, window.length - TOKEN.length));
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

    await sleep(2000);
    const early = { rss: rss(), bytes };
    await sleep(4000);
    const late = { rss: rss(), bytes };
    child.kill('SIGTERM');
    expect(await exited).toBe(143);

    expect(stderr).toBe('');
    expect(early.bytes, 'output flowed before the first sample').toBeGreaterThan(1 << 20);
    expect(late.bytes - early.bytes, 'output kept flowing').toBeGreaterThan(16 << 20);
    expect(late.rss - early.rss, `RSS went from ${early.rss} to ${late.rss} while ${late.bytes - early.bytes} bytes passed`).toBeLessThan(24 << 20);
    expect(leaked, 'the token appeared in the masked output').toBe(false);
  });
});

// python3 runs the printer: without it, these tests would prove nothing
describe('test prerequisites', () => {
  it('python3 is installed', () => {
    expect(spawnSync('python3', ['--version']).status).toBe(0);
  });
});
