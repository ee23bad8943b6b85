/**
 * `vault demo`: a tour of the real commands on a throwaway vault in a temporary directory. It runs
 * this same `vault` as a subprocess for every step, so what it shows is what a user would see.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VaultError } from '../vault/errors.js';
import { shellQuote } from '../vault/policy.js';

const DEMO_VALUE = 'demo-value-that-never-comes-back';

/** What the child reports about its world: never the value, only that it arrived. */
const DEMO_SCRIPT = `#!/bin/sh
echo "  inside: my PID is $$; PID 1 is $(cat /proc/1/comm), the sandbox's reaper"
echo "  inside: processes I can see: $(ls /proc | grep -c '^[0-9]')"
echo "  inside: /tmp is private: $(ls -A /tmp | grep -vc '^.vault-secrets$') entries"
echo "  inside: network interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')(no route out)"
echo "  inside: DEMO_API_KEY arrived, \${#DEMO_API_KEY} bytes"
`;

/** The files below `dir` whose bytes contain `needle`. */
function filesContaining(dir: string, needle: Buffer): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return filesContaining(full, needle);
    return entry.isFile() && fs.readFileSync(full).includes(needle) ? [full] : [];
  });
}

export async function runDemo(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sealvault-demo-'));
  const cli = process.argv[1];
  if (cli === undefined) throw new VaultError('internal', 'cannot tell where the vault command is');
  const env: NodeJS.ProcessEnv = { ...process.env, VAULT_DIR: path.join(root, 'vault'), XDG_STATE_HOME: path.join(root, 'state') };
  for (const name of Object.keys(env)) if (name.startsWith('VAULT_') && name !== 'VAULT_DIR') delete env[name];
  delete env.DBUS_SESSION_BUS_ADDRESS; // the demo must not touch the user's real keychain
  const out = (text: string) => process.stdout.write(`${text}\n`);

  const step = (note: string, args: string[], options: { input?: string; expectFailure?: boolean; allowFailure?: boolean; hideStdout?: boolean } = {}) => {
    // quoted as a shell would need it, so that a line pasted from the tour does what the tour did
    const typed = args.map(shellQuote).join(' ');
    out(`\n# ${note}\n$ vault ${typed}${options.input !== undefined ? '   (value piped on stdin)' : ''}`);
    // from the throwaway directory: lockdown runs a program in its working directory, never in a home
    const run = spawnSync(process.execPath, [cli, ...args], { env, input: options.input ?? '', encoding: 'utf8', cwd: root });
    const shown = options.hideStdout ? run.stdout.replace(/svt1_[A-Za-z0-9_-]+/g, 'svt1_…(hidden in the demo)') : run.stdout;
    process.stdout.write(shown + run.stderr);
    const failed = run.status !== 0;
    if (!options.allowFailure && failed !== (options.expectFailure === true)) {
      throw new VaultError('internal', `demo step \`vault ${args.join(' ')}\` ${failed ? `failed (exit ${run.status})` : 'succeeded but should have been refused'}`);
    }
    if (options.expectFailure) out(`(refused, exit code ${run.status}: as intended)`);
    return run;
  };

  try {
    out(`sealvault demo: a throwaway vault in ${root}`);
    const token = step('Create a vault. Its first key slot is a CI token, printed once on stdout.', ['init', '--token'], { hideStdout: true }).stdout.trim();
    env.VAULT_KEY = token;
    step('Seal a secret into it. This needs no key: the value is sealed to the vault\'s public key.', ['put', 'DEMO_API_KEY'], { input: DEMO_VALUE });
    step('List what is stored: names, sizes and dates, never values.', ['list']);
    step('There is no command that reads a value back.', ['get', 'DEMO_API_KEY'], { expectFailure: true });
    const script = path.join(root, 'deploy.sh');
    fs.writeFileSync(script, DEMO_SCRIPT, { mode: 0o755 });
    step('Grant the secret to one script, pinned by its SHA-256, to run only in the lockdown sandbox.', ['allow', 'DEMO_API_KEY', '--to', script, '--min-tier', 'lockdown']);
    step('A grant to a shell would hand the secret to any code, so it is refused.', ['allow', 'DEMO_API_KEY', '--to', '/bin/sh'], { expectFailure: true });
    step('The grants, checked against the key that signed them.', ['policy']);
    step(
      'Every change is in the audit log: one file per entry, named by its hash, naming its parents (git merges it).',
      ['audit'],
    );
    const run = step('Run the script in the lockdown sandbox: only it receives the secret.', ['exec', '--tier', 'lockdown', '--', script], { allowFailure: true });
    if (run.status !== 0) out('(this host cannot give the lockdown tier; `vault doctor` says why and how to fix it)');
    step('A shell cannot ask for the secret: nothing is granted to it.', ['exec', '--', '/bin/sh', '-c', 'echo "$DEMO_API_KEY"'], { expectFailure: true });
    step('The run is in your own run log, outside the vault (a run never changes it).', ['audit', '--runs']);
    step('The whole vault still verifies.', ['verify']);
    const holding = filesContaining(root, Buffer.from(DEMO_VALUE));
    if (holding.length > 0) throw new VaultError('internal', `the demo value was found in ${holding.join(', ')}; please report this`);
    out(`Searched every file under ${root}: the demo value is in none of them. Removing the directory now.`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
