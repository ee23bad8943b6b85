/**
 * The recipes of docs/ci.md, run: the developer set-up in a real git repository, then each CI
 * recipe as a script in a clone at another path, with no TTY (stdin /dev/null, stdout and stderr
 * pipes), `CI=true`, a fresh HOME and XDG directories, no D-Bus session, and the token where the CI
 * system would put it. The built CLI is `vault` on PATH through a shim.
 *
 * How the recipes are found and read:
 * - Markers: the line `<!-- recipe: NAME -->` directly before a fenced block (invisible when
 *   rendered). NAME is `setup` (a ```sh block, run as it is), `github`, `github-key-file`,
 *   `github-agent`, `gitlab`, `gitlab-key-file` (```yaml blocks).
 * - GitHub: the items under `steps:` (or, in a fragment without `steps:`, the block's top-level list),
 *   in order. A step's commands are its `run:` (inline, or a `|` block), run in a subshell with the
 *   step's `env:` exported, as the runner gives each step its own shell and environment. Expressions
 *   `${{ secrets.VAULT_KEY }}` and `${{ runner.temp }}` are substituted. `NAME=VALUE` lines a step
 *   appends to `$GITHUB_ENV` are in the environment of every later step. A failed step skips the
 *   later ones, except those with `if: always()`, and the script exits with the first failure's code.
 *   Any other expression, `if:` condition or step key (`shell:`, `id:`, …) fails the test. `uses:`
 *   steps (checkout, setup-node) run no command here.
 * - GitLab: the items of `before_script:` then `script:` (inline, or `- |` blocks), one shell, as
 *   the runner runs them.
 * - Skip rule: a GitHub step with the comment `# ci-recipes: skip` on any of its lines, or a GitLab
 *   item with it on its line, is not run. Only steps that install sealvault or change the host
 *   (sysctl) carry it.
 * - A recipe that yields no command to run fails the test, so it cannot pass vacuously.
 *
 * The developer set-up stores the token with `gh secret set` / `glab variable set`; both are fakes
 * here that check their arguments and record stdin, and the recorded token is what the CI runs get.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeWorkspace, RELEASE_CLI, ROOT, type Workspace } from './helpers/cli.js';
import { greeter, makeNetns, type TestNetns, withHostsFile } from './helpers/netns.js';
import { IS_ROOT } from './helpers/users.js';

const CI_DOC = path.join(ROOT, 'docs', 'ci.md');
const SKIP = '# ci-recipes: skip';
/** 24 bytes, a multiple of 3: its base64 has no padding, so all of `base64`'s output is the form the masker knows. */
const SECRET = 'deploy-token-5c1e9a7f3b2';
if (Buffer.byteLength(SECRET) % 3 !== 0) throw new Error('SECRET must be a multiple of 3 bytes long');
const SECRET_B64 = Buffer.from(SECRET).toString('base64');
/** What the set-up recipe's grant lets deploy.sh reach (`--net deploy.example.com:443`): here a server of the test's own. */
const ENDPOINT_REPLY = 'deploy-endpoint-here';
const DEPLOY_SH = [
  '#!/bin/bash',
  'echo "deploying with a token of ${#DEPLOY_TOKEN} bytes"',
  'exec 3<>/dev/tcp/deploy.example.com/443 && read -r reply <&3 && echo "the deploy endpoint says: $reply"',
  'echo "raw: $DEPLOY_TOKEN"',
  'echo "base64: $(printf %s "$DEPLOY_TOKEN" | base64)"',
  'exit 0',
  '',
].join('\n');
const RUN_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------------------------------------
// Reading docs/ci.md

/** The body of the fenced block right after `<!-- recipe: NAME -->`, whose info string is `lang`. */
function recipeBlock(doc: string, name: string, lang: 'sh' | 'yaml'): string {
  const lines = doc.split('\n');
  const marker = lines.findIndex((l) => l.trim() === `<!-- recipe: ${name} -->`);
  if (marker < 0) throw new Error(`docs/ci.md has no <!-- recipe: ${name} --> marker`);
  if (lines.slice(marker + 1).some((l) => l.trim() === `<!-- recipe: ${name} -->`)) throw new Error(`docs/ci.md has two <!-- recipe: ${name} --> markers`);
  let open = marker + 1;
  while (open < lines.length && lines[open]?.trim() === '') open += 1;
  if (lines[open]?.trim() !== '```' + lang) throw new Error(`<!-- recipe: ${name} --> is not followed by a \`\`\`${lang} block`);
  const close = lines.findIndex((l, i) => i > open && l.trim() === '```');
  if (close < 0) throw new Error(`the block of recipe ${name} is not closed`);
  return lines.slice(open + 1, close).join('\n');
}

const indentOf = (line: string) => line.length - line.trimStart().length;
const blank = (line: string) => line.trim() === '';

/** A plain or quoted YAML scalar without its trailing comment. */
function scalar(raw: string): string {
  const value = raw.trim();
  if (value.startsWith('"') || value.startsWith("'")) {
    const end = value.indexOf(value[0] as string, 1);
    if (end < 0) throw new Error(`unterminated quoted scalar: ${raw}`);
    const rest = value.slice(end + 1).trim();
    if (rest !== '' && !rest.startsWith('#')) throw new Error(`text after a quoted scalar: ${raw}`);
    return value.slice(1, end);
  }
  const comment = value.search(/\s#/);
  return (comment < 0 ? value : value.slice(0, comment)).trim();
}

const BLOCK_SCALAR = /^\|-?\s*(#.*)?$/;

/** The lines after `start` that are indented deeper than `parent` (or blank), and where they end. */
function nestedLines(lines: string[], start: number, parent: number): { lines: string[]; next: number } {
  let next = start;
  while (next < lines.length && (blank(lines[next] as string) || indentOf(lines[next] as string) > parent)) next += 1;
  const body = lines.slice(start, next);
  while (body.length > 0 && blank(body.at(-1) as string)) body.pop();
  return { lines: body, next };
}

/** A `|` block scalar whose key or item sits at indentation `parent`. */
function blockScalar(lines: string[], start: number, parent: number): { text: string; next: number } {
  const nested = nestedLines(lines, start, parent);
  const first = nested.lines.find((l) => !blank(l));
  if (first === undefined) throw new Error(`empty block scalar at line ${start}`);
  const indent = indentOf(first);
  return { text: `${nested.lines.map((l) => (blank(l) ? '' : l.slice(indent))).join('\n')}\n`, next: nested.next };
}

interface GithubStep {
  name: string;
  run: string | undefined;
  env: Record<string, string>;
  skip: boolean;
  /** `if: always()`: runs after a failed step too. */
  always: boolean;
}

const RUN_STEP_KEYS = new Set(['name', 'run', 'env', 'if']);
const USES_STEP_KEYS = new Set(['name', 'uses', 'with']);

function githubStep(item: string[]): GithubStep {
  const lines = [(item[0] as string).replace('- ', '  '), ...item.slice(1)];
  const keyIndent = indentOf(lines[0] as string);
  const step: GithubStep = { name: '', run: undefined, env: {}, skip: item.some((l) => l.includes(SKIP)), always: false };
  const keys = new Set<string>();
  for (let i = 0; i < lines.length; ) {
    const line = lines[i] as string;
    if (blank(line)) {
      i += 1;
      continue;
    }
    const match = /^(\s*)([A-Za-z_][\w-]*):(?:\s+(.*))?$/.exec(line);
    if (match === null || (match[1] as string).length !== keyIndent) throw new Error(`cannot read this line of a GitHub step: ${line}`);
    const key = match[2] as string;
    const value = (match[3] ?? '').trim();
    keys.add(key);
    if (key === 'run' && BLOCK_SCALAR.test(value)) {
      const block = blockScalar(lines, i + 1, keyIndent);
      step.run = block.text;
      i = block.next;
    } else if (value === '' || value.startsWith('#')) {
      const nested = nestedLines(lines, i + 1, keyIndent);
      if (key === 'env') {
        for (const entry of nested.lines.filter((l) => !blank(l))) {
          const pair = /^\s*([A-Za-z_][A-Za-z0-9_]*):\s+(.*)$/.exec(entry);
          if (pair === null) throw new Error(`cannot read this env entry: ${entry}`);
          step.env[pair[1] as string] = scalar(pair[2] as string);
        }
      }
      i = nested.next;
    } else {
      if (key === 'run') step.run = `${scalar(value)}\n`;
      if (key === 'name') step.name = scalar(value);
      if (key === 'if') {
        if (!/^(?:always\(\)|\$\{\{\s*always\(\)\s*\}\})$/.test(scalar(value))) throw new Error(`step "${step.name}" has if: ${value}, which this test does not model`);
        step.always = true;
      }
      i += 1;
    }
  }
  const allowed = keys.has('uses') ? USES_STEP_KEYS : RUN_STEP_KEYS;
  const unmodelled = [...keys].filter((k) => !allowed.has(k));
  if (!step.skip && unmodelled.length > 0) throw new Error(`step "${step.name}" uses ${unmodelled.join(', ')}, which this test does not model`);
  return step;
}

/** The steps of a GitHub workflow job, or of a fragment that is a list of steps. */
function githubSteps(block: string): GithubStep[] {
  const lines = block.split('\n');
  const stepsAt = lines.findIndex((l) => /^\s*steps:\s*$/.test(l));
  const stepsIndent = stepsAt < 0 ? -1 : indentOf(lines[stepsAt] as string);
  const items: string[][] = [];
  let itemIndent = -1;
  for (let i = stepsAt + 1; i < lines.length; i += 1) {
    const line = lines[i] as string;
    if (blank(line)) {
      items.at(-1)?.push(line);
      continue;
    }
    const indent = indentOf(line);
    if (indent <= stepsIndent) break;
    if (itemIndent < 0) itemIndent = indent;
    if (indent === itemIndent && line.trimStart().startsWith('- ')) items.push([line]);
    else if (indent > itemIndent && items.length > 0) items.at(-1)?.push(line);
    else throw new Error(`cannot read this line of the steps: ${line}`);
  }
  return items.map(githubStep);
}

interface GitlabItem {
  command: string;
  skip: boolean;
}

/** The `before_script:` then `script:` items of a GitLab job (or a fragment of one). */
function gitlabItems(block: string): GitlabItem[] {
  const lines = block.split('\n');
  for (const unmodelled of ['variables', 'after_script', 'default']) {
    if (lines.some((l) => new RegExp(`^\\s*${unmodelled}:`).test(l))) throw new Error(`the GitLab recipe uses ${unmodelled}:, which this test does not model`);
  }
  const items: GitlabItem[] = [];
  for (const key of ['before_script', 'script']) {
    const at = lines.findIndex((l) => new RegExp(`^\\s*${key}:`).test(l));
    if (at < 0) continue;
    const keyLine = lines[at] as string;
    if (!new RegExp(`^\\s*${key}:\\s*$`).test(keyLine)) throw new Error(`${key}: must be a list: ${keyLine}`);
    const list = nestedLines(lines, at + 1, indentOf(keyLine));
    for (let i = 0; i < list.lines.length; ) {
      const line = list.lines[i] as string;
      if (blank(line)) {
        i += 1;
        continue;
      }
      const item = /^(\s*)- (.*)$/.exec(line);
      if (item === null) throw new Error(`cannot read this ${key} item: ${line}`);
      const value = (item[2] as string).trim();
      if (BLOCK_SCALAR.test(value)) {
        const block = blockScalar(list.lines, i + 1, (item[1] as string).length);
        items.push({ command: block.text, skip: line.includes(SKIP) });
        i = block.next;
      } else {
        items.push({ command: `${scalar(value)}\n`, skip: line.includes(SKIP) });
        i += 1;
      }
    }
  }
  return items;
}

/** GitHub substitutes `${{ … }}` before the shell runs; only what the recipes need is known here. */
function expand(text: string, expressions: Record<string, string>): string {
  return text.replace(/\$\{\{\s*(.*?)\s*\}\}/g, (_, expression: string) => {
    const value = expressions[expression];
    if (value === undefined) throw new Error(`the recipe uses \${{ ${expression} }}, which this test does not model`);
    return value;
  });
}

const shellQuote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;
const regexQuote = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Before each step: what earlier steps appended to $GITHUB_ENV (when the job has one), as the runner
 * reads it. Only the `NAME=VALUE` form; the `NAME<<DELIMITER` form fails the run (exit 99).
 */
const LOAD_GITHUB_ENV = [
  'if [ -n "${GITHUB_ENV:-}" ] && [ -f "$GITHUB_ENV" ]; then',
  '  while IFS= read -r github_line || [ -n "$github_line" ]; do',
  '    case "$github_line" in',
  '      [A-Za-z_]*=*) export "${github_line%%=*}=${github_line#*=}" ;;',
  '      *) echo "ci-recipes: a GITHUB_ENV line this test does not model: $github_line" >&2; exit 99 ;;',
  '    esac',
  '  done < "$GITHUB_ENV"',
  'fi',
  '',
].join('\n');

/**
 * One script: each step in a subshell with its own environment and `set -euo pipefail`, as the runner
 * gives each step a shell of its own. A failing step skips the later steps but those with `if:
 * always()`, and the script exits with the first failing step's code.
 */
function githubScript(steps: GithubStep[], expressions: Record<string, string>): string {
  const runnable = steps.filter((s) => !s.skip && s.run !== undefined);
  if (runnable.length === 0) throw new Error('the GitHub recipe yields no command to run');
  const body = runnable
    .map((step) => {
      const exports = Object.entries(step.env).map(([name, value]) => `export ${name}=${shellQuote(expand(value, expressions))}\n`);
      const run = `set +e\n(\nset -euo pipefail\n${exports.join('')}${expand(step.run as string, expressions)})\n` +
        'github_rc=$?\nset -e\n[ "$github_rc" -eq 0 ] || [ "$github_failed" -ne 0 ] || github_failed=$github_rc\n';
      const guarded = step.always ? run : `if [ "$github_failed" -eq 0 ]; then\n${run}fi\n`;
      return `# step: ${step.name}\n${LOAD_GITHUB_ENV}${guarded}`;
    })
    .join('');
  return `github_failed=0\n${body}exit "$github_failed"\n`;
}

function gitlabScript(items: GitlabItem[]): string {
  const runnable = items.filter((i) => !i.skip);
  if (runnable.length === 0) throw new Error('the GitLab recipe yields no command to run');
  return runnable.map((i) => i.command).join('');
}

const isExec = (command: string) => /\bvault\b[^\n]*\sexec\s/.test(command);

// ---------------------------------------------------------------------------------------------
// Running

interface ScriptResult {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** `bash -euo pipefail` on `script`, with no TTY anywhere: stdin is /dev/null, stdout and stderr are pipes. */
/**
 * The recipes' deploy endpoint, deploy.example.com:443: a greeter in a network namespace of the
 * test's own, and a mount namespace's /etc/hosts that names it (never an outside address). Both
 * need root, which CI is; as another user the recipes are not run.
 */
let endpoint: { netns: TestNetns; server: ChildProcess; hosts: string } | undefined;

beforeAll(async () => {
  if (!IS_ROOT) return;
  const netns = makeNetns('c', 1);
  const server = (await greeter('0.0.0.0', ENDPOINT_REPLY, { netns: netns.name, port: 443 })).child;
  const hosts = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-hosts-')), 'hosts');
  fs.writeFileSync(hosts, `${fs.readFileSync('/etc/hosts', 'utf8')}\n${netns.listed} deploy.example.com\n`, { mode: 0o644 });
  endpoint = { netns, server, hosts };
}, 30_000);

afterAll(() => {
  endpoint?.server.kill('SIGKILL');
  endpoint?.netns.remove();
  if (endpoint !== undefined) fs.rmSync(path.dirname(endpoint.hosts), { recursive: true, force: true });
});

function runScript(script: string, cwd: string, env: NodeJS.ProcessEnv): ScriptResult {
  const started = Date.now();
  if (endpoint === undefined) throw new Error('the recipes need their deploy endpoint, which needs root');
  const [program, ...args] = withHostsFile(endpoint.hosts, ['bash', '--noprofile', '--norc', '-euo', 'pipefail', '-c', script]);
  const result = spawnSync(program!, args, {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: RUN_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  if (result.error !== undefined && (result.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw result.error;
  return { status: result.status, stdout: result.stdout.toString('utf8'), stderr: result.stderr.toString('utf8'), ms: Date.now() - started };
}

const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

interface AuditEntry {
  event: string;
  details: Record<string, unknown>;
}
interface Grant {
  secret: string;
  sha256: string;
  path: string;
  min_tier: string;
}

describe.skipIf(!IS_ROOT)('docs/ci.md recipes', () => {
  const doc = fs.readFileSync(CI_DOC, 'utf8');
  let ws: Workspace;
  let bin: string;
  let records: string;
  let repo: string;
  let token: string;
  let setup: ScriptResult;
  let clones = 0;

  const git = (cwd: string, ...args: string[]) => execGit(cwd, args);
  function execGit(cwd: string, args: string[]): string {
    const result = spawnSync('git', args, { cwd, env: devEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (result.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${result.stderr}`);
    return result.stdout;
  }

  /** The developer's shell: their own home, no CI variables. */
  function devEnv(): NodeJS.ProcessEnv {
    const { VAULT_DIR: _, ...env } = ws.env;
    return { ...env, PATH: `${bin}:${ws.env.PATH ?? '/usr/bin:/bin'}`, FAKE_CI_RECORDS: records, GIT_CONFIG_NOSYSTEM: '1' };
  }

  /** A fresh CI checkout at another path than the developer's repository, with a runner's own home. */
  function ciCheckout(): { clone: string; env: NodeJS.ProcessEnv; runnerTemp: string } {
    clones += 1;
    const ci = path.join(ws.root, `ci-${clones}`);
    const clone = path.join(ci, 'builds', 'project');
    const home = path.join(ci, 'home');
    const runnerTemp = path.join(ci, 'runner-temp');
    for (const dir of [path.dirname(clone), home, runnerTemp]) fs.mkdirSync(dir, { recursive: true });
    git(ws.root, 'clone', '-q', repo, clone);
    const env: NodeJS.ProcessEnv = {
      PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOME: home,
      XDG_STATE_HOME: path.join(home, '.local', 'state'),
      XDG_DATA_HOME: path.join(home, '.local', 'share'),
      XDG_CONFIG_HOME: path.join(home, '.config'),
      XDG_CACHE_HOME: path.join(home, '.cache'),
      LANG: 'C.UTF-8',
      CI: 'true',
    };
    return { clone, env, runnerTemp };
  }

  /** The runner's variables; GITHUB_ENV a new empty file (the runner's file commands directory). */
  const githubEnv = (c: ReturnType<typeof ciCheckout>) => {
    const githubEnvFile = path.join(path.dirname(c.runnerTemp), 'github-env');
    fs.writeFileSync(githubEnvFile, '');
    return { ...c.env, GITHUB_ACTIONS: 'true', RUNNER_TEMP: c.runnerTemp, GITHUB_WORKSPACE: c.clone, GITHUB_ENV: githubEnvFile };
  };
  const gitlabEnv = (c: ReturnType<typeof ciCheckout>) => ({ ...c.env, GITLAB_CI: 'true', CI_PROJECT_DIR: c.clone });

  /** `vault` in the clone, as the CI user. */
  const vaultIn = (c: ReturnType<typeof ciCheckout>, args: string[], env: NodeJS.ProcessEnv = {}) =>
    ws.run(['--vault', path.join(c.clone, '.vault'), ...args], { cwd: c.clone, env: { ...c.env, VAULT_DIR: undefined, ...env } });

  beforeAll(() => {
    ws = makeWorkspace();
    bin = path.join(ws.root, 'bin');
    records = path.join(ws.root, 'ci-records');
    fs.mkdirSync(bin);
    fs.mkdirSync(records);
    fs.writeFileSync(path.join(bin, 'vault'), `#!/bin/sh\nexec ${shellQuote(process.execPath)} ${shellQuote(RELEASE_CLI)} "$@"\n`, { mode: 0o755 });
    fs.writeFileSync(
      path.join(bin, 'gh'),
      '#!/bin/sh\n# fake gh: `gh secret set NAME`, value on stdin\n' +
        '[ "$#" -eq 3 ] && [ "$1" = secret ] && [ "$2" = set ] || { echo "fake gh: unexpected arguments: $*" >&2; exit 2; }\n' +
        'cat > "$FAKE_CI_RECORDS/gh-$3"\n',
      { mode: 0o755 },
    );
    fs.writeFileSync(
      path.join(bin, 'glab'),
      '#!/bin/sh\n# fake glab: `glab variable set NAME [FLAGS]`, value on stdin\n' +
        '[ "$#" -ge 3 ] && [ "$1" = variable ] && [ "$2" = set ] || { echo "fake glab: unexpected arguments: $*" >&2; exit 2; }\n' +
        'name=$3; shift 3\nprintf "%s\\n" "$*" > "$FAKE_CI_RECORDS/glab-$name.flags"\ncat > "$FAKE_CI_RECORDS/glab-$name"\n',
      { mode: 0o755 },
    );

    repo = path.join(ws.root, 'dev', 'project');
    fs.mkdirSync(repo, { recursive: true });
    git(repo, '-c', 'init.defaultBranch=main', 'init', '-q');
    git(repo, 'config', 'user.name', 'Developer');
    git(repo, 'config', 'user.email', 'developer@example.invalid');
    git(repo, 'config', 'commit.gpgsign', 'false');
    fs.writeFileSync(path.join(repo, 'deploy.sh'), DEPLOY_SH, { mode: 0o755 });

    setup = runScript(recipeBlock(doc, 'setup', 'sh'), repo, { ...devEnv(), DEPLOY_TOKEN: SECRET });
    if (setup.status !== 0) throw new Error(`the set-up recipe failed (${setup.status}): ${setup.stderr}`);
    token = fs.readFileSync(path.join(records, 'gh-VAULT_KEY'), 'utf8');
  });
  afterAll(() => ws?.cleanup());

  it('set-up: the token is alone on stdout, the secret is sealed and granted by hash, the vault is committed', () => {
    expect(setup.stdout).toBe('');
    expect(token).toMatch(/^svt1_[A-Za-z0-9_-]{43}$/);
    expect(fs.readFileSync(path.join(records, 'glab-VAULT_KEY'), 'utf8')).toBe(token);
    expect(fs.readFileSync(path.join(records, 'glab-VAULT_KEY.flags'), 'utf8')).toBe('--masked --protected\n');
    const tracked = git(repo, 'ls-files', '-s').trim().split('\n');
    expect(tracked.find((l) => l.endsWith('\tdeploy.sh'))).toMatch(/^100755 /);
    const files = tracked.map((l) => l.split('\t')[1]);
    for (const file of ['.vault/vault.json', '.vault/policy.json', '.vault/secrets/DEPLOY_TOKEN.json']) {
      expect(files).toContain(file);
    }
    // the audit log: one entry file each for init, put and allow (docs/FORMAT.md, "audit/")
    const entry = expect.stringMatching(/^\.vault\/audit\/[0-9a-f]{64}\.json$/);
    expect(files.filter((f) => f?.startsWith('.vault/audit'))).toEqual([entry, entry, entry]);
    expect(git(repo, 'status', '--porcelain')).toBe('');
    for (const file of files) expect(fs.readFileSync(path.join(repo, file as string)).includes(SECRET), file).toBe(false);
  });

  const RECIPES = [
    { recipe: 'github', script: (c: ReturnType<typeof ciCheckout>) => githubScript(githubSteps(recipeBlock(doc, 'github', 'yaml')), { 'secrets.VAULT_KEY': token, 'runner.temp': c.runnerTemp }), env: githubEnv },
    { recipe: 'gitlab', script: () => gitlabScript(gitlabItems(recipeBlock(doc, 'gitlab', 'yaml'))), env: (c: ReturnType<typeof ciCheckout>) => ({ ...gitlabEnv(c), VAULT_KEY: token }) },
  ];

  it.each(RECIPES)('$recipe: the recipe runs in a clone elsewhere; deploy.sh gets DEPLOY_TOKEN in lockdown, its output masked, the run audited', ({ recipe, script, env }) => {
    if (recipe === 'github') expect(recipeBlock(doc, 'github', 'yaml')).toMatch(/^\s*runs-on: ubuntu-24\.04\s*$/m);
    const c = ciCheckout();
    const commands = script(c);
    expect(commands).toMatch(/\bvault doctor\b/);
    expect(commands.split('\n').filter(isExec)).toHaveLength(1);
    expect(commands).not.toMatch(/install\.sh|sysctl/);
    const result = runScript(commands, c.clone, env(c));
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^tier lockdown: available/m);
    expect(result.stdout).toMatch(/^lockdown network --net HOST:PORT\S*: available$/m);
    expect(result.stdout).toContain(`deploying with a token of ${Buffer.byteLength(SECRET)} bytes\n`);
    expect(result.stdout).toContain(`the deploy endpoint says: ${ENDPOINT_REPLY}\n`);

    // the grant was made for the developer's path; the clone's deploy.sh matches it by hash; the run
    // is in the CI user's run log (docs/FORMAT.md, "Run log"), so the checkout is left as it was
    const deploy = path.join(c.clone, 'deploy.sh');
    expect(git(c.clone, 'status', '--porcelain', '--ignored')).toBe('');
    const entries = vaultIn(c, ['audit', '--runs', '--json']).stdout.trim().split('\n')
      .map((l) => JSON.parse(l) as AuditEntry);
    const release = entries.filter((e) => e.event === 'release');
    expect(release).toHaveLength(1);
    expect(release[0]?.details).toMatchObject({ tier: 'lockdown', secrets: ['DEPLOY_TOKEN'], sha256: sha256(deploy) });
    expect(String(release[0]?.details.path)).toBe(fs.realpathSync(deploy));
    expect(entries.filter((e) => e.event === 'exit').map((e) => e.details)).toEqual([{ run: release[0]?.details.run, exit: 0 }]);
    const policy = vaultIn(c, ['policy', '--json'], { VAULT_KEY: token });
    expect(policy.status, policy.stderr).toBe(0);
    const grants = (JSON.parse(policy.stdout) as { grants: Grant[] }).grants;
    expect(grants).toEqual([expect.objectContaining({ secret: 'DEPLOY_TOKEN', sha256: sha256(deploy), path: fs.realpathSync(path.join(repo, 'deploy.sh')), min_tier: 'lockdown' })]);

    // masking: on, because CI is set and the output goes to pipes
    const output = result.stdout + result.stderr;
    expect(output.includes(SECRET), 'the raw secret is in the CI output').toBe(false);
    expect(output.includes(SECRET_B64), 'the base64 of the secret is in the CI output').toBe(false);
    expect(result.stdout).toContain('raw: ***\n');
    expect(result.stdout).toContain('base64: ***\n');
  });

  it.each([
    {
      recipe: 'github-key-file',
      prepare: (c: ReturnType<typeof ciCheckout>) => {
        const steps = githubSteps(recipeBlock(doc, 'github-key-file', 'yaml'));
        const execStep = steps.find((s) => s.run !== undefined && isExec(s.run));
        // the exec step gets the file, not the token
        expect(execStep?.env).toEqual({ VAULT_KEY_FILE: '${{ runner.temp }}/vault-key' });
        return { script: githubScript(steps, { 'secrets.VAULT_KEY': token, 'runner.temp': c.runnerTemp }), env: githubEnv(c), keyFile: path.join(c.runnerTemp, 'vault-key') };
      },
    },
    {
      recipe: 'gitlab-key-file',
      prepare: (c: ReturnType<typeof ciCheckout>) => {
        // a File variable, as the runner may write it: readable by group and others
        const keyFile = path.join(c.runnerTemp, 'VAULT_KEY_FILE');
        fs.writeFileSync(keyFile, token);
        fs.chmodSync(keyFile, 0o666);
        return { script: gitlabScript(gitlabItems(recipeBlock(doc, 'gitlab-key-file', 'yaml'))), env: { ...gitlabEnv(c), VAULT_KEY_FILE: keyFile }, keyFile };
      },
    },
  ])('$recipe: the token reaches vault as a 0600 file, never in its environment', ({ prepare }) => {
    const c = ciCheckout();
    const { script, env, keyFile } = prepare(c);
    expect(env).not.toHaveProperty('VAULT_KEY');
    const result = runScript(script, c.clone, env);
    expect(result.status, result.stderr).toBe(0);
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(result.stdout).toContain(`deploying with a token of ${Buffer.byteLength(SECRET)} bytes\n`);
    expect((result.stdout + result.stderr).includes(SECRET), 'the raw secret is in the CI output').toBe(false);
    expect(result.stdout).toContain('raw: ***\n');
  });

  // ---------------------------------------------------------------------------------------------
  // github-agent: one `vault agent` for the job, the exec steps its clients

  /** Whether `pid` runs (a zombie, which nobody may reap here, does not). */
  function running(pid: number): boolean {
    try {
      return !/^\d+ \(.*\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  }

  /** Waits, bounded, until `pid` no longer runs. */
  async function ended(pid: number, ms = 10_000): Promise<boolean> {
    for (const end = Date.now() + ms; running(pid); ) {
      if (Date.now() > end) return false;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return true;
  }

  /** The agents this clone's vault has started (their `agent-start` entries), and the CI user's whole run log of it. */
  function auditOf(c: ReturnType<typeof ciCheckout>): { entries: AuditEntry[]; agents: number[] } {
    const audit = vaultIn(c, ['audit', '--runs', '--json']);
    expect(audit.status, audit.stderr).toBe(0);
    const entries = audit.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEntry);
    return { entries, agents: entries.filter((e) => e.event === 'agent-start').map((e) => Number(e.details.pid)) };
  }

  /** Ends an agent the recipe left running (a failed test): only a `vault … agent start` process, by its pid. */
  async function endAgent(pid: number): Promise<void> {
    if (!running(pid) || !fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('\0agent\0start\0')) return;
    process.kill(pid, 'SIGTERM');
    if (!(await ended(pid))) process.kill(pid, 'SIGKILL');
  }

  const agentSteps = () => githubSteps(recipeBlock(doc, 'github-agent', 'yaml'));
  const isAgentStart = (s: GithubStep) => s.run !== undefined && /\bvault\b[^\n]*\sagent start\s/.test(s.run);
  const isAgentStop = (s: GithubStep) => s.run !== undefined && /\bvault agent stop\b/.test(s.run);

  it('github-agent: the first step starts one agent with the token, each exec step runs deploy.sh through it without the token, the last stops it', async () => {
    const steps = agentSteps();
    const execs = steps.filter((s) => s.run !== undefined && isExec(s.run));
    expect(steps.filter(isAgentStart)).toEqual([steps[0]]);
    expect(execs.length).toBeGreaterThanOrEqual(2);
    expect(steps.filter(isAgentStop)).toEqual([steps.at(-1)]);
    expect(steps.at(-1)?.always).toBe(true);
    // the token reaches the start step alone
    for (const step of steps) expect(step.env).toEqual(step === steps[0] ? { VAULT_KEY: '${{ secrets.VAULT_KEY }}' } : {});

    const c = ciCheckout();
    const env = githubEnv(c);
    const expressions = { 'secrets.VAULT_KEY': token, 'runner.temp': c.runnerTemp };
    const socket = path.join(c.runnerTemp, 'vault-agent', 'agent.sock');
    // the job as the runner runs it, looked at before its last step (`if: always()`, so run in any case)
    let agents: number[] = [];
    let job: ScriptResult | undefined;
    let stop: ScriptResult;
    try {
      job = runScript(githubScript(steps.filter((s) => !s.always), expressions), c.clone, env);
      agents = auditOf(c).agents;
      expect(job.status, job.stderr).toBe(0);
      expect(agents).toHaveLength(1);
      const pid = agents[0] as number;
      expect(running(pid)).toBe(true);
      expect(job.stderr).toContain(`vault: agent started (pid ${pid}) at ${socket}; \`vault agent stop\` ends it\n`);
      expect(fs.readFileSync(env.GITHUB_ENV, 'utf8')).toBe(`VAULT_AGENT_SOCK=${socket}\n`);
      // the agent let go of the step's output (else the runner would wait for it) and of its session
      for (const fd of [0, 1, 2]) expect(fs.readlinkSync(`/proc/${pid}/fd/${fd}`)).toBe('/dev/null');
      expect(fs.statSync(socket).isSocket()).toBe(true);
      expect(fs.statSync(socket).mode & 0o777).toBe(0o600);
      expect(fs.statSync(path.dirname(socket)).mode & 0o777).toBe(0o700);
    } finally {
      stop = runScript(githubScript(steps.filter((s) => s.always), expressions), c.clone, env);
      for (const pid of agents) if (!(await ended(pid))) await endAgent(pid);
    }
    expect(stop.status, stop.stderr).toBe(0);
    expect(stop.stdout).toMatch(new RegExp(`^stopping; agent pid ${agents[0]} at ${regexQuote(socket)}: .*, ${execs.length} request\\(s\\) served since `));
    expect(fs.existsSync(socket)).toBe(false);

    // each exec step: deploy.sh ran, in lockdown, its output masked, audited with the client that asked
    const output = (job?.stdout ?? '') + (job?.stderr ?? '');
    expect(output.split(`deploying with a token of ${Buffer.byteLength(SECRET)} bytes\n`)).toHaveLength(execs.length + 1);
    expect(output.includes(SECRET), 'the raw secret is in the CI output').toBe(false);
    expect(output.includes(SECRET_B64), 'the base64 of the secret is in the CI output').toBe(false);
    expect(job?.stdout.split('raw: ***\n')).toHaveLength(execs.length + 1);
    const { entries } = auditOf(c);
    const releases = entries.filter((e) => e.event === 'release');
    expect(releases).toHaveLength(execs.length);
    const me = { uid: process.getuid?.(), user: os.userInfo().username };
    for (const release of releases) {
      expect(release.details).toMatchObject({ tier: 'lockdown', secrets: ['DEPLOY_TOKEN'], sha256: sha256(path.join(c.clone, 'deploy.sh')), client: me });
    }
    expect(entries.filter((e) => e.event === 'exit').map((e) => e.details)).toEqual(releases.map((r) => ({ run: r.details.run, exit: 0 })));
  });

  it.each([
    {
      why: 'a deploy.sh changed since its grant: the first exec step fails (125), the second is skipped, the agent is stopped',
      prepare: (c: ReturnType<typeof ciCheckout>) => fs.appendFileSync(path.join(c.clone, 'deploy.sh'), '# changed\n'),
      vaultKey: () => token,
      status: 125,
      stderr: /^vault: no secret is granted to [^\n]*deploy\.sh \(sha256 /m,
      agentStarted: true,
    },
    {
      why: 'no token (a secret GitHub passes as empty): the start step fails (8), the exec steps are skipped, the stop step finds no agent (3)',
      prepare: () => undefined,
      vaultKey: () => '',
      status: 8,
      stderr: /^vault: cannot unlock the vault: [^\n]*\n[^]*^vault: no agent answers at /m,
      agentStarted: false,
    },
  ])('github-agent: $why', async ({ prepare, vaultKey, status, stderr, agentStarted }) => {
    const c = ciCheckout();
    prepare(c);
    const env = githubEnv(c);
    let agents: number[] = [];
    let job: ScriptResult;
    try {
      job = runScript(githubScript(agentSteps(), { 'secrets.VAULT_KEY': vaultKey(), 'runner.temp': c.runnerTemp }), c.clone, env);
      agents = auditOf(c).agents;
    } finally {
      for (const pid of agents) if (!(await ended(pid))) await endAgent(pid);
    }
    expect(job.status, job.stderr).toBe(status);
    expect(job.stderr).toMatch(stderr);
    expect(job.stdout).not.toContain('deploying');
    expect(agents).toHaveLength(agentStarted ? 1 : 0);
    if (agentStarted) expect(job.stdout).toMatch(new RegExp(`^stopping; agent pid ${agents[0]} at `, 'm'));
    expect(fs.existsSync(path.join(c.runnerTemp, 'vault-agent', 'agent.sock'))).toBe(false);
  });

  it.each([
    { recipe: 'github', commands: (c: ReturnType<typeof ciCheckout>) => githubScript(githubSteps(recipeBlock(doc, 'github', 'yaml')).filter((s) => s.run !== undefined && isExec(s.run)), { 'secrets.VAULT_KEY': '', 'runner.temp': c.runnerTemp }), env: githubEnv },
    { recipe: 'gitlab', commands: () => gitlabScript(gitlabItems(recipeBlock(doc, 'gitlab', 'yaml')).filter((i) => isExec(i.command))), env: gitlabEnv },
  ])('$recipe: without a token (a secret GitHub passes as empty, a variable GitLab leaves unset) the exec step fails at once with 125 and one line', ({ commands, env }) => {
    const c = ciCheckout();
    const ciEnv = env(c);
    expect(ciEnv).not.toHaveProperty('VAULT_KEY');
    const result = runScript(commands(c), c.clone, ciEnv);
    expect(result.status, result.stderr).toBe(125);
    expect(result.stderr).toMatch(/^vault: cannot unlock the vault: [^\n]*VAULT_KEY[^\n]*keychain[^\n]*passphrase[^\n]*\n$/);
    expect(result.stdout).not.toContain('deploying');
    expect(result.ms).toBeLessThan(20_000);
  });
});
