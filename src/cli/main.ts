/**
 * `vault`: commander wiring only. Each action parses its flags, calls src/vault/, and prints.
 * Output contract: data a script may capture goes to stdout (a token alone on its line, --json);
 * everything meant for people goes to stderr.
 */
import { Argument, Command, CommanderError, Option } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { grantTarget, hashScript, type ProgramTarget, scriptTarget, staleGrants } from '../vault/binary.js';
import { realPathOf, resolveCommand } from '../vault/command-path.js';
import { checkPassEnv, parsePinnedEnv, SAFE_PATH } from '../sandbox/environment.js';
import { VaultError } from '../vault/errors.js';
import { keychainUnavailableReason } from '../vault/keychain.js';
import { KDF_TEST_ONLY, wipe } from '../vault/crypto.js';
import { TIERS, type Tier } from '../sandbox/tiers.js';
import { fromField, networkText, parseNetwork } from '../sandbox/network.js';
import { noteIdentityFile } from '../vault/identity-source.js';
import { checkSlotId, newAgeIdentity, type SlotRequest } from '../vault/keyslots.js';
import { locateVault, locationNote, type VaultLocation } from '../vault/paths.js';
import { checkSecretName } from '../vault/names.js';
import { sameGrantTarget } from '../vault/policy.js';
import { AGE_RECIPIENT_PATTERN, type AuditEntry, SLOT_LABEL_PATTERN, type SlotFile } from '../vault/format.js';
import { printableJson } from '../vault/printable.js';
import { existsError, type UnlockedVault, Vault } from '../vault/vault.js';
import { topological } from '../vault/audit-dag.js';
import { readRunLog, runLogFile } from '../vault/run-log.js';
import { type AgentStartFlags, controlCommand, startAgent } from './agent.js';
import { isTestBuild } from './build-flags.js';
import type { Shell } from './completion.js';
import { type ExecFlags, maskStyle } from './exec-args.js';
import { runExec } from './exec-command.js';
import { describeFailure, exitWhenWritten, fail, installFailureHandlers, say } from './messages.js';
import { conflictText, gitSetup, readSide, vaultOfMergedFile } from './git-setup.js';
import { unlocked, withUnlockedVault } from './unlock-prompt.js';
import { renderAuditEntry, renderGrants, renderRecipients, renderSecrets, renderSlots } from './render.js';
import { NO_REKEY_WARNING, type RekeyFlags, rekeyAndReport } from './rekey.js';
import type { ImportFlags } from './env-import.js';
import { readSecretValue } from './secret-input.js';
import { askHiddenTwice, askLine, hasTerminal } from './terminal.js';

/** commander's collector for a repeatable option. */
const collect = (value: string, all: string[] = []) => [...all, value];
const print = (text: string) => process.stdout.write(text);
const printJson = (data: unknown) => process.stdout.write(`${printableJson(data, 2)}\n`);

const VAULT_HELP = 'vault directory (default: the nearest .vault/ or .sealvault upward, else $VAULT_DIR, else ' +
  '$XDG_DATA_HOME/sealvault)';
const IDENTITY_HELP = 'an age identity file that opens your recipient slot (default: $VAULT_IDENTITY_FILE)';

const program = new Command('vault')
  .enablePositionalOptions()
  .description('A write-only secret vault: secrets go in, and come out only into sandboxed programs granted them.')
  .option('--vault <dir>', VAULT_HELP)
  .option('--identity <file>', IDENTITY_HELP)
  .option('-V, --version', "print vault's version (with --json: node's, libsodium's, the helper's, the kernel's " +
    'features)')
  .addOption(new Option('--json').hideHelp())
  .showHelpAfterError(false)
  .exitOverride()
  .configureOutput({
    outputError: (message, write) => write(`vault: ${message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim()} (see \`vault --help\`)\n`),
  });

/** The token alone on stdout, so that `VAULT_KEY=$(vault init --token)` works; the advice on stderr. */
function showToken(token: string): void {
  say('the token below is shown only once: store it as a CI secret, then use it as VAULT_KEY');
  print(`${token}\n`);
}

/** The subcommand that runs (commander's preAction hook): it takes the global flags too. */
let actionCommand: Command | undefined;
program.hook('preAction', (_program, action) => {
  actionCommand = action;
});

/** --vault or --identity, given before the subcommand or after it (not both, unless they agree). */
function globalFlag(name: 'vault' | 'identity'): string | undefined {
  const before = program.opts<Record<string, string | undefined>>()[name];
  const after = actionCommand === program ? undefined : actionCommand?.opts<Record<string, string | undefined>>()[name];
  if (before !== undefined && after !== undefined && before !== after) {
    throw new VaultError('usage', `--${name} is given twice, as "${before}" and "${after}"; give it once`);
  }
  return after ?? before;
}

let location: VaultLocation | undefined;

/** This command's vault (paths.ts locateVault), said on stderr when nobody named it (locationNote). */
function vaultDir(): string {
  if (location === undefined) {
    location = locateVault(globalFlag('vault'));
    const note = locationNote(location);
    if (note !== undefined) say(note);
  }
  return location.dir;
}

/**
 * Vault.open of this command's vault. A project vault seen for the first time came with a checkout,
 * made by someone else: its fingerprint is said, since a put seals to whoever holds its key.
 */
function openVault(options?: { checkPin?: boolean }): Vault {
  const vault = Vault.open(vaultDir(), options);
  if (vault.firstSeen && location?.source === 'project') {
    say(`first use of this vault: its key has fingerprint ${vault.fingerprint}; a value put in it can be read by ` +
      'whoever holds that key: compare it with the vault\'s owner before you put a value you care about');
  }
  return vault;
}

/** Runs `work` with this command's vault unlocked (unlock-prompt.ts), and wipes the private key however it ends. */
function withUnlocked<T>(
  work: (vault: UnlockedVault) => T | Promise<T>,
  options: { checkPin?: boolean; changes?: boolean; keepKek?: boolean } = {},
): Promise<T> {
  return withUnlockedVault(vaultDir(), work, { ...options, ...identityFlag() });
}

interface SlotFlags {
  token?: boolean;
  passphrase?: boolean;
  keychain?: boolean;
  label?: string;
  insecureTestKdf?: boolean;
}

/** The slot kinds a flag of `init` and `key add` chooses (a recipient slot comes from `vault recipient add`). */
type FlagKind = 'token' | 'passphrase' | 'keychain';

function slotKindOption(command: Command): Command {
  return command
    .option('--token', 'a random token for CI, printed once, alone on stdout')
    .option('--passphrase', 'a passphrase (argon2id), from the terminal or the environment')
    .option('--keychain', 'a key kept in the OS keychain (Secret Service)')
    .option('--label <text>', 'who or what the slot is for, shown by `vault key list` (1-64 characters)')
    .addOption(new Option('--insecure-test-kdf', 'test build only: weakest argon2id parameters').hideHelp());
}

/** A label given by --label or `recipient add`: docs/FORMAT.md's SLOT_LABEL_PATTERN, else a usage error. */
function checkLabel(label: string): string {
  if (!SLOT_LABEL_PATTERN.test(label)) throw new VaultError('usage', `a slot label is 1-64 characters without control characters, not "${label}"`);
  return label;
}

/** The age identity file of --identity, for an unlock. */
const identityFlag = (): { identityFile?: string } => {
  const file = globalFlag('identity');
  if (file !== undefined) noteIdentityFile(file); // hidden from targets even when a token unlocks
  return file !== undefined ? { identityFile: file } : {};
};

const MIN_PASSPHRASE = 8;

async function newPassphrase(variable: string): Promise<Uint8Array> {
  const fromEnv = process.env[variable];
  let passphrase: Uint8Array;
  if (fromEnv !== undefined && fromEnv !== '') passphrase = new TextEncoder().encode(fromEnv);
  else if (hasTerminal()) passphrase = await askHiddenTwice('New vault passphrase');
  else throw new VaultError('usage', `no terminal to ask for the new passphrase: set ${variable}`);
  if (passphrase.length < MIN_PASSPHRASE) {
    wipe(passphrase);
    throw new VaultError('usage', `the passphrase is shorter than ${MIN_PASSPHRASE} bytes; choose a longer one`);
  }
  return passphrase;
}

/** Turns --token/--passphrase/--keychain into a slot request; `fallback` picks when none is given. */
async function slotRequest(flags: SlotFlags, passphraseVariable: string, fallback: () => Promise<FlagKind>): Promise<SlotRequest> {
  if (flags.insecureTestKdf && !isTestBuild) {
    throw new VaultError('usage', '--insecure-test-kdf exists only in the test build, because it makes passphrases easy to guess');
  }
  const label = flags.label !== undefined ? { label: checkLabel(flags.label) } : {};
  const chosen = (['token', 'passphrase', 'keychain'] as const).filter((k) => flags[k]);
  if (chosen.length > 1) throw new VaultError('usage', `choose one of --${chosen.join(', --')}`);
  const kind = chosen[0] ?? (await fallback());
  if (kind !== 'passphrase') return { kind, ...label };
  const passphrase = await newPassphrase(passphraseVariable);
  return { kind, passphrase, ...(flags.insecureTestKdf ? { kdf: KDF_TEST_ONLY } : {}), ...label };
}

/**
 * The first slot's kind when no flag says it, asked at the terminal: the keychain is convenient and
 * any process of yours can use it; a passphrase, with `vault agent`, keeps your own processes to
 * running granted programs (docs/agents.md).
 */
async function chooseFirstSlot(): Promise<FlagKind> {
  if (!hasTerminal()) throw new VaultError('usage', 'no terminal: choose --token (for CI), --passphrase (with VAULT_PASSPHRASE) or --keychain');
  const unavailable = await keychainUnavailableReason();
  if (unavailable !== undefined) {
    say(`no OS keychain here (${unavailable}); using a passphrase`);
    return 'passphrase';
  }
  say('How should this vault open?');
  say('  passphrase: you type it; with `vault agent`, programs of yours (an AI agent, a build tool) can run');
  say('              granted programs through the agent, but cannot read a secret or grant themselves one');
  say('  keychain:   nothing to type; but any process of yours can use it, and read the key with secret-tool');
  const answer = askLine('passphrase or keychain? [passphrase] ').toLowerCase();
  if (answer === '' || 'passphrase'.startsWith(answer)) return 'passphrase';
  if ('keychain'.startsWith(answer)) return 'keychain';
  throw new VaultError('usage', `"${answer}" is neither passphrase nor keychain; nothing was created`);
}

slotKindOption(program.command('init'))
  .description('create a vault and its first key slot (with a terminal and no flag it asks: passphrase or keychain)')
  .action(async (flags: SlotFlags) => {
    const dir = vaultDir();
    const request = await slotRequest(flags, 'VAULT_PASSPHRASE', chooseFirstSlot);
    const { vault, token } = await Vault.create(dir, request);
    say(`created vault ${dir}`);
    say(`fingerprint ${vault.fingerprint} (people who put secrets into it can compare this)`);
    say(`first key slot: ${request.kind}`);
    if (token !== undefined) showToken(token);
  });

program
  .command('put')
  .description('seal a value into the vault (stdin, --from-file, or typed without echo); needs no unlock')
  .argument('<NAME>', 'secret name: A-Z, 0-9, _')
  .option('--from-file <file>', 'read the value from a file')
  .option('--trim', 'drop trailing newlines from the value')
  .option('-f, --force', 'replace an existing value (the old one is lost)')
  .option('--config', 'configuration, not a secret: delivered to granted programs but never masked in their output')
  .action(async (name: string, flags: { fromFile?: string; trim?: boolean; force?: boolean; config?: boolean }) => {
    checkSecretName(name);
    const vault = openVault();
    // refuse before anyone types or pipes a value in vain; put() checks again under the lock
    if (flags.force !== true && vault.has(name)) throw existsError(name);
    const value = await readSecretValue({ name, fromFile: flags.fromFile, trim: flags.trim === true });
    try {
      const done = await vault.put(name, value, { replace: flags.force === true, config: flags.config === true });
      const kind = flags.config === true ? 'configuration value' : '';
      say(`${done === 'put' ? 'stored' : 'replaced'} ${kind === '' ? '' : `${kind} `}${name} (${value.length} bytes` +
        `${value.length === 0 ? ': an empty value' : ''})`);
      // `echo x | vault put` keeps echo's newline: say so, since it is invisible and changes the value
      const piped = flags.fromFile !== undefined || !process.stdin.isTTY;
      if (piped && flags.trim !== true && value.at(-1) === 0x0a) {
        say(`kept the value's final newline (it is part of the ${value.length} bytes); ` +
          '`--trim` drops trailing newlines');
      }
    } finally {
      wipe(value);
    }
  });

program
  .command('import')
  .description('seal every variable of a .env file (dotenv syntax; - reads stdin); needs no unlock')
  .argument('<FILE>', 'the .env file, or - for stdin (`dotenvx decrypt --stdout | vault import -`)')
  .option('-f, --force', 'replace values already in the vault (the old ones are lost)')
  .option('--config-names <names>', 'these are configuration, not secrets: never masked (comma-separated)',
    (list: string) => list.split(',').filter((n) => n !== ''))
  .action(async (file: string, flags: ImportFlags) => {
    const { importEnvFile } = await import('./env-import.js');
    await importEnvFile(openVault(), file, flags);
  });

program
  .command('list')
  .description('names, sizes and dates of the secrets (never values)')
  .option('--json', 'print JSON')
  .option('--stale', 'only the secrets put before the last removal of a slot: its holder may have copied them')
  .action((flags: { json?: boolean; stale?: boolean }) => {
    const vault = openVault();
    let secrets = vault.list();
    if (flags.stale === true) {
      const removal = vault.lastSlotRemoval();
      secrets = removal === undefined ? [] : secrets.filter((s) => s.updated < removal);
      if (!flags.json) {
        say(removal === undefined ? 'no slot was ever removed: nothing is stale'
          : secrets.length === 0 ? `every secret was put after the last slot removal, ${removal}: nothing is stale`
          : `put before the last slot removal, ${removal}: rotate these where they are issued, then put them again`);
      }
    }
    if (flags.json) printJson(secrets);
    else if (!(flags.stale === true && secrets.length === 0)) print(renderSecrets(secrets));
  });

program
  .command('rm')
  .description('delete a secret')
  .argument('<NAME>')
  .action((name: string) => {
    checkSecretName(name);
    openVault().remove(name);
    say(`removed ${name}`);
  });

const key = program.command('key').description('manage key slots (the ways to unlock the vault)');

slotKindOption(key.command('add'))
  .description('add a key slot (needs an unlock); a new passphrase comes from VAULT_NEW_PASSPHRASE or the terminal')
  .action(async (flags: SlotFlags) => {
    await withUnlocked(async (vault) => {
      const request = await slotRequest(flags, 'VAULT_NEW_PASSPHRASE', () => {
        throw new VaultError('usage', 'choose the kind of slot: --token, --passphrase or --keychain');
      });
      const made = await vault.addSlot(request);
      say(`added ${made.slot.kind} slot ${made.slot.id}${made.slot.label !== undefined ? ` (${made.slot.label})` : ''}`);
      if (made.token !== undefined) showToken(made.token);
    }, { changes: true });
  });

const identity = program.command('identity').description('age identities: the keys that open recipient slots');

identity
  .command('new')
  .description('write a new age X25519 identity to FILE (0600, never over an existing file); print its recipient on stdout')
  .argument('<file>', 'where to keep the identity, e.g. ~/.config/sealvault/identity.txt')
  .action(async (file: string) => {
    const made = await newAgeIdentity();
    try {
      // a new user has no ~/.config yet: its directory is made, private, as ssh-keygen does for ~/.ssh
      fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
      // O_EXCL: an identity is not overwritten by mistake; 0600 from the start: never readable by others
      fs.writeFileSync(file, made.file, { mode: 0o600, flag: 'wx' });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      if (code === 'EEXIST') {
        throw new VaultError('refused', `${file} exists; an identity is never written over a file: give a new one`);
      }
      throw new VaultError('usage', `cannot write ${file} (${code}); give a file in a directory you can write`);
    }
    say(`wrote an age identity to ${file}; keep it private, and give your recipient (below) to the vault's owner`);
    print(`${made.recipient}\n`);
  });

const recipient = program.command('recipient').description('people and machines who unlock the vault with their own age identity');

recipient
  .command('add')
  .description('add a recipient slot: the vault opens with the identity of RECIPIENT (needs an unlock)')
  .argument('<label>', 'whose it is, e.g. alice or ci (1-64 characters, unique among the slots)')
  .argument('<recipient>', 'their age recipient: age1… (from `age-keygen` or `vault identity new`)')
  .action(async (label: string, ageRecipient: string) => {
    if (!AGE_RECIPIENT_PATTERN.test(ageRecipient)) {
      throw new VaultError('usage', `"${ageRecipient}" is not an age X25519 recipient (age1 and 58 characters); ask for the line \`age-keygen -y\` or \`vault identity new\` prints`);
    }
    checkLabel(label);
    await withUnlocked(async (vault) => {
      const made = await vault.addSlot({ kind: 'recipient', recipient: ageRecipient, label });
      say(`added recipient slot ${made.slot.id} for ${label} (${ageRecipient}); they unlock with --identity FILE or VAULT_IDENTITY_FILE`);
    }, { changes: true });
  });

recipient
  .command('list')
  .description('the recipient slots: label, age recipient, id, date')
  .option('--json', 'print JSON')
  .action((flags: { json?: boolean }) => {
    const rows = openVault().slots().slots.flatMap((s) =>
      s.kind === 'recipient' ? [{ label: s.label ?? null, recipient: s.recipient.age_recipient, id: s.id, created: s.created }] : []);
    if (flags.json) printJson(rows);
    else print(renderRecipients(rows));
  });

key
  .command('list')
  .description('the key slots: id, kind, label, date (a recipient slot: its age recipient too)')
  .option('--json', 'print JSON')
  .action((flags: { json?: boolean }) => {
    const { slots, unknown } = openVault().slots();
    const rows = [
      ...slots.map((s) => ({
        id: s.id, kind: s.kind, created: s.created, ...(s.label !== undefined ? { label: s.label } : {}),
        ...(s.kind === 'recipient' ? { recipient: s.recipient.age_recipient } : {}), known: true,
      })),
      ...unknown.map((s) => ({ ...s, known: false })),
    ];
    if (flags.json) printJson(rows);
    else print(renderSlots(rows));
  });

/** `--no-rekey` and `--drop-unreachable`, for the commands that remove a slot. */
function removalOptions(command: Command): Command {
  return command
    .option('--no-rekey', 'only remove the slot: the vault keeps its key pair, which a copy of the slot still opens')
    .option('--drop-unreachable', 'let the rekey drop the slots it cannot wrap the new key for (see `vault rekey`)');
}

/** Removes `slot` (found by `find` once unlocked): with a rekey unless --no-rekey. */
async function removeSlot(
  find: (vault: UnlockedVault) => SlotFile, flags: RekeyFlags & { rekey?: boolean },
): Promise<void> {
  await withUnlocked(async (vault) => {
    const slot = find(vault);
    if (flags.rekey === false) {
      const removed = await vault.removeSlot(slot.id);
      say(`removed ${removed.kind} slot ${removed.id}${removed.label !== undefined ? ` (${removed.label})` : ''}`);
      say(NO_REKEY_WARNING);
      return;
    }
    await rekeyAndReport(vault, [slot], flags);
  }, { changes: true, keepKek: flags.rekey !== false });
}

/** The slot of `id`, or exit 3. */
function slotById(vault: UnlockedVault, id: string): SlotFile {
  checkSlotId(id);
  const slot = vault.vault.slots().slots.find((s) => s.id === id);
  if (slot === undefined) throw new VaultError('notFound', `no key slot ${id}; \`vault key list\` shows the slots`);
  return slot;
}

removalOptions(key.command('rm'))
  .description('remove a key slot and rekey, so that the slot (and any copy of it) opens nothing new (needs an unlock)')
  .argument('<ID>')
  .action(async (id: string, flags: RekeyFlags & { rekey?: boolean }) => {
    await removeSlot((vault) => slotById(vault, id), flags);
  });

removalOptions(recipient.command('rm'))
  .description('remove the recipient slot labelled LABEL and rekey (needs an unlock)')
  .argument('<label>')
  .action(async (label: string, flags: RekeyFlags & { rekey?: boolean }) => {
    await removeSlot((vault) => {
      const slot = vault.vault.slots().slots.find(
        (s): s is SlotFile & { kind: 'recipient' } => s.kind === 'recipient' && s.label === label,
      );
      if (slot === undefined) {
        throw new VaultError('notFound', `no recipient slot labelled "${label}"; \`vault recipient list\` shows them`);
      }
      // a label is only a name: a writer can move it to another slot, which then fails its MAC
      if (!vault.vouches(slot)) {
        throw new VaultError(
          'refused',
          `the slot labelled "${label}" (${slot.id}, ${slot.recipient.age_recipient}) has no valid slot MAC, ` +
            'so its label may not be the one a key holder gave it; check the recipient in `vault recipient list` ' +
            'and remove it by id (`vault key rm ID`)',
        );
      }
      return slot;
    }, flags);
  });

program
  .command('rekey')
  .description(
    'replace the key pair: every secret resealed, every slot wrapped again, the policy re-authenticated, in one ' +
      'crash-safe step (needs an unlock); token slots get new tokens, printed once',
  )
  .option(
    '--drop-unreachable',
    'drop the slots the new key cannot be wrapped for (another passphrase, a keychain item not here, ' +
      'a slot without a MAC)',
  )
  .action(async (flags: RekeyFlags) => {
    await withUnlocked((vault) => rekeyAndReport(vault, [], flags), { changes: true, keepKek: true });
  });

program
  .command('allow')
  .description('grant secrets to one program, or a script and its interpreter, pinned by SHA-256 (needs an unlock)')
  .argument('[NAME...]', 'secret names')
  .option('--to <path>', 'the program that may receive them: an ELF program, or a #! script (its interpreter is pinned with it)')
  .option('--run <interpreter-and-script...>', 'a script run by an interpreter, both pinned: --run python3 app.py')
  .option('--renew <path>', 'after you changed a granted program: grant its secrets again to what it is now, with the same settings')
  .addOption(new Option('--min-tier <tier>', 'the weakest sandbox tier it may run in (default: hardened; lockdown with --net or --file NAME=PATH)').choices(TIERS))
  .option('--net <none|host|HOST:PORT,...>', 'lockdown\'s network: loopback only (default), the host\'s, or only these TCP destinations')
  .option('--file <NAME[=PATH]>', 'deliver NAME as a file (its path in NAME_FILE), in lockdown at PATH if given (repeat it)', collect)
  .option('--mask [style]', 'mask the released values in its output on every run (--mask=name: <NAME>); exec --no-mask is then refused')
  .option('--arg <arg>', 'pin an exact argument, in order (repeat it); for a program that runs what its arguments say', collect)
  .option('--any-args', 'allow an interpreter with any arguments, knowing it then runs any code')
  .option('--ro <path>', 'lockdown: also show this host path, read-only (repeat it)', collect)
  .option('--rw <path>', 'lockdown: also give this host path, read-write (repeat it)', collect)
  .option('--env <NAME=VALUE>', 'set a variable of the program\'s environment (repeat it), PATH included', collect)
  .option('--pass-env <NAME>', "let the caller's value of NAME, or of PREFIX_*, through (repeat it); not for variables that choose code", collect)
  .action(async (names: string[], flags: AllowFlags) => {
    const forms = (['to', 'run', 'renew'] as const).filter((f) => flags[f] !== undefined);
    if (forms.length !== 1) throw new VaultError('usage', 'say what to grant to with one of --to PATH, --run INTERPRETER SCRIPT or --renew PATH');
    if (flags.renew !== undefined) {
      if (names.length > 0) throw new VaultError('usage', '--renew grants again what was granted to the path; it takes no secret names');
      await withUnlocked((vault) => renewGrants(vault, flags.renew!), { changes: true });
      return;
    }
    if (names.length === 0) throw new VaultError('usage', 'name the secrets to grant');
    if (flags.arg !== undefined && flags.anyArgs) throw new VaultError('usage', 'use either --arg or --any-args, not both');
    names.forEach(checkSecretName);
    const env = Object.fromEntries((flags.env ?? []).map(parsePinnedEnv));
    const passEnv = (flags.passEnv ?? []).map(checkPassEnv);
    const binary = grantTargetOf(flags, env.PATH ?? SAFE_PATH);
    const ro = flags.ro?.map((p) => realPathOf(p, '--ro'));
    const rw = flags.rw?.map((p) => realPathOf(p, '--rw'));
    const net = flags.net !== undefined ? parseNetwork('--net', flags.net) : undefined;
    const files = new Map((flags.file ?? []).map((word) => {
      const at = word.indexOf('=');
      return [checkSecretName(at === -1 ? word : word.slice(0, at)), at === -1 ? undefined : word.slice(at + 1)] as const;
    }));
    if (files.size < (flags.file ?? []).length) throw new VaultError('usage', '--file names a secret twice; give each secret one --file');
    const minTier = flags.minTier ?? (net !== undefined || [...files.values()].some((p) => p !== undefined) ? 'lockdown' : 'hardened');
    const mask = flags.mask === undefined ? undefined : maskStyle(flags.mask);
    await withUnlocked((vault) => {
      const args = flags.arg ?? null;
      const replaced = vault.policy().grants.filter((g) => names.some((secret) => sameGrantTarget(g, { secret, sha256: binary.sha256, args })));
      vault.allow({ names, binary, calledAs: flags.to, minTier, args, anyArgs: flags.anyArgs === true, ro, rw, env, passEnv, net, files, mask });
      // a grant made again replaces the earlier one whole: say what it was, a wider network above all
      for (const g of replaced) {
        const was = g.net === undefined ? (g.min_tier === 'lockdown' ? 'none' : 'not set') : networkText(fromField(g.net));
        say(`replaces the earlier grant of ${g.secret} to this program (tier ${g.min_tier} or stronger, network in lockdown: ${was})`);
      }
      say(`granted ${names.join(', ')} to ${binary.path} (sha256 ${binary.sha256.slice(0, 16)}…) at tier ${minTier} or stronger` +
        (binary.interpreter !== undefined ? `, run by ${binary.interpreter.path} (sha256 ${binary.interpreter.sha256.slice(0, 16)}…)` : '') +
        (flags.arg !== undefined ? ` with arguments ${JSON.stringify(flags.arg)}` : '') +
        (ro !== undefined ? `; read-only in lockdown: ${ro.join(', ')}` : '') +
        (rw !== undefined ? `; read-write in lockdown: ${rw.join(', ')}` : '') +
        (Object.keys(env).length > 0 ? `; environment: ${Object.keys(env).join(', ')}` : '') +
        (passEnv.length > 0 ? `; passed from the caller: ${passEnv.join(', ')}` : '') +
        (net !== undefined ? `; network in lockdown: ${networkText(net)}` : '') +
        (files.size > 0 ? `; as files: ${[...files].map(([n, p]) => (p !== undefined ? `${n} at ${p}` : n)).join(', ')}` : '') +
        (mask !== undefined ? `; its output always masked (${mask})` : ''));
    }, { changes: true });
  });

interface AllowFlags {
  to?: string;
  run?: string[];
  renew?: string;
  minTier?: Tier;
  net?: string;
  file?: string[];
  mask?: boolean | string;
  arg?: string[];
  anyArgs?: boolean;
  ro?: string[];
  rw?: string[];
  env?: string[];
  passEnv?: string[];
}

/** --to PATH (a program, or a #! script with its interpreter) or --run INTERPRETER SCRIPT. */
function grantTargetOf(flags: AllowFlags, grantPath: string): ProgramTarget {
  if (flags.to !== undefined) return grantTarget(flags.to, grantPath);
  const [interpreter, script, ...extra] = flags.run ?? [];
  if (interpreter === undefined || script === undefined || extra.length > 0) {
    throw new VaultError('usage', '--run takes an interpreter and a script: --run python3 app.py (the script\'s own arguments are free)');
  }
  if (flags.arg !== undefined || flags.anyArgs) throw new VaultError('usage', '--run pins the script; its arguments are free: leave out --arg and --any-args');
  // through the grant's PATH, as a #! line's `env NAME` is: not through a version manager's shims
  return scriptTarget(hashScript(script), { path: resolveCommand(interpreter, grantPath) });
}

/** `vault allow --renew PATH`: says what changed, then grants the same secrets to the new version. */
function renewGrants(vault: UnlockedVault, target: string): void {
  const renewal = vault.renew(target, (old) => old.find((g) => g.env?.PATH !== undefined)?.env?.PATH ?? SAFE_PATH, (r) => {
    const interpreter = r.to.interpreter !== undefined ? `, run by ${r.to.interpreter.path} (sha256 ${r.to.interpreter.sha256.slice(0, 16)}…)` : '';
    say(`${r.path}: granted sha256 ${r.from.map((h) => `${h.slice(0, 16)}…`).join(', ')}; now ${r.to.sha256.slice(0, 16)}…${interpreter}`);
  });
  say(`renewed ${renewal.secrets.join(', ')} for ${renewal.path}; grants to its earlier versions are gone`);
}

program
  .command('revoke')
  .description('withdraw grants of secrets from a binary (needs an unlock)')
  .argument('<NAME...>', 'secret names')
  .requiredOption('--from <path>', 'the program the grants were made to')
  .action(async (names: string[], flags: { from: string }) => {
    await withUnlocked((vault) => {
      const { removed } = vault.revoke(names, flags.from);
      say(`revoked ${removed} grant(s)`);
    }, { changes: true });
  });

const policyCommand = program
  .command('policy')
  .description(
    'list the grants, after checking their authentication (needs an unlock); `policy merge` after a git merge',
  )
  .option('--json', 'print JSON')
  .action(async (flags: { json?: boolean }) => {
    await withUnlocked((vault) => {
      const policy = vault.policy();
      const stale = staleGrants(policy.grants);
      if (flags.json) printJson({ ...policy, grants: policy.grants.map((g, i) => ({ ...g, stale: stale[i] ?? null })) });
      else print(renderGrants(policy.grants, (name) => vault.vault.has(name), stale));
    });
  });

policyCommand
  .command('merge')
  .description(
    'after git left policy.json with conflict markers (two branches changed it): write the union of both, ' +
      'authenticated (needs an unlock)',
  )
  .action(async () => {
    await withUnlocked((vault) => {
      const { policy, from } = vault.mergePolicy();
      say(
        `merged policy revisions ${from[0]} and ${from[1]} into revision ${policy.revision}: ` +
          `${policy.grants.length} grant(s); ` +
          '`git add` the vault directory (policy.json and its new audit entry) to finish the merge or rebase',
      );
    }, { changes: true });
  });

const gitCommand = program.command('git').description('working with a vault committed to git');

gitCommand
  .command('setup')
  .description(
    'make git merge policy.json by itself: the attribute in the vault\'s .gitattributes, ' +
      'the driver in this clone\'s config',
  )
  .action(() => {
    for (const line of gitSetup(vaultDir())) say(line);
  });

gitCommand
  .command('merge-driver', { hidden: true })
  .description('the merge driver `vault git setup` installs: git runs it with %A %B %P')
  .argument('<ours>')
  .argument('<theirs>')
  .argument('<path>')
  .requiredOption('--expect <path>', 'the one policy.json (relative to the top of the work tree) this driver merges')
  .action(async (ours: string, theirs: string, pathInTree: string, flags: { expect: string }) => {
    if (path.normalize(pathInTree) !== path.normalize(flags.expect)) {
      // %A is left as this branch has it; the non-zero exit makes it a conflict for git
      say(
        `vault: the merge driver merges ${flags.expect} only, not ${pathInTree}: resolve it by hand ` +
          '(a .gitattributes names the driver for it)',
      );
      process.exitCode = 1;
      return;
    }
    const oursText = readSide(ours);
    const theirsText = readSide(theirs);
    try {
      const merged = await withUnlockedVault(
        vaultOfMergedFile(pathInTree),
        (vault) => vault.mergedPolicyText(oursText, theirsText),
        { changes: true, ...identityFlag() },
      );
      fs.writeFileSync(ours, merged);
      say(`vault: merged the policies of both branches in ${pathInTree}`);
    } catch (error) {
      fs.writeFileSync(ours, conflictText(oursText, theirsText));
      say(
        `vault: cannot merge ${pathInTree} here (${describeFailure(error).message}); ` +
          'run `vault policy merge` after the merge stops',
      );
      process.exitCode = 1;
    }
  });

program
  .command('audit')
  .description("print the vault's audit log (its changes), or with --runs your runs of it; --verify checks them")
  .option('--json', 'print JSON lines')
  .option('--runs', 'your runs of this vault (release, exit), kept in your state directory, outside the vault')
  .option('--verify', 'check the hashes and report every broken entry')
  .option('--accept', 'after you looked at a damaged log: set the broken entries aside and go on (needs an unlock)')
  .action(async (flags: { json?: boolean; runs?: boolean; verify?: boolean; accept?: boolean }) => {
    if (flags.accept === true) {
      await withUnlocked((vault) => {
        const { set_aside: aside } = vault.vault.acceptAudit();
        say(
          aside.length === 0
            ? 'nothing was broken; an accept entry records that you looked'
            : `set aside ${aside.join(' and ')}; an accept entry names them`,
        );
      }, { changes: true });
      return;
    }
    const vault = openVault();
    const show = flags.verify
      ? undefined
      : (entry: object) => print(flags.json ? `${printableJson(entry)}\n` : renderAuditEntry(entry as AuditEntry));
    const runs = flags.runs === true || flags.verify === true
      ? readRunLog(vault.file.vault_id, flags.runs === true ? show : undefined)
      : undefined;
    if (runs?.broken !== undefined) {
      throw new VaultError(
        'tampered',
        `${runLogFile(vault.file.vault_id)} line ${runs.broken.line}: ${runs.broken.reason}`,
      );
    }
    if (flags.runs === true) {
      if (flags.verify) say(`run log intact: ${runs?.count ?? 0} entries`);
      return;
    }
    // the audit.log of sealvault 0.1 first, line by line as its chain is checked, then audit/, parents first
    const checked = vault.checkAudit(show);
    if (show !== undefined) for (const entry of topological(checked.dag.entries)) show(entry);
    const [first, ...more] = checked.problems;
    if (first !== undefined) {
      throw new VaultError(
        first.kind,
        `${first.message}` +
          `${more.length > 0 ? ` (and ${more.length} more broken entr${more.length === 1 ? 'y' : 'ies'})` : ''}`,
      );
    }
    if (flags.verify) say(`audit log intact: ${checked.count} entries; run log intact: ${runs?.count ?? 0} entries`);
  });

program
  .command('verify')
  .description('check the whole vault: every secret opens under its own name, the policy, the audit chain (needs an unlock)')
  .action(async () => {
    await withUnlocked((vault) => {
      const { problems, summary } = vault.verify();
      for (const problem of problems) say(`vault: ${problem.message}`);
      if (problems[0] !== undefined) process.exitCode = problems[0].exitCode;
      else say(`ok: ${summary}`);
    });
  });

program
  .command('trust')
  .description("re-pin the vault's public key after it changed: by unlocking it, or by its fingerprint")
  .option('--fingerprint <fp>', 'the fingerprint you checked with the vault owner (svfp1_…)')
  .action(async (flags: { fingerprint?: string }) => {
    if (flags.fingerprint !== undefined) {
      const vault = openVault({ checkPin: false });
      vault.trustFingerprint(flags.fingerprint);
      say(`pinned ${vault.fingerprint}`);
      return;
    }
    await withUnlocked((vault) => {
      vault.trust();
      say(`pinned ${vault.vault.fingerprint} (the unlock proved it belongs to the vault's private key)`);
    }, { checkPin: false, changes: true });
  });

program
  .command('exec')
  .description('run a program in a sandbox with the secrets granted to it (needs an unlock)')
  .addOption(new Option('--tier <tier>', 'isolation: none, hardened, lockdown; default: what the grants ask for, at least hardened; only stronger').choices(TIERS))
  .option('--net <none|host|HOST:PORT,...>', 'lockdown\'s network, within what the grants allow (implies --tier lockdown)')
  .option('--only <names>', 'release only these secrets (comma-separated)', (list: string) => list.split(',').filter((n) => n !== ''))
  .option('--file <NAME>', 'deliver NAME as a file, its path in NAME_FILE (repeat it)', (name: string, all: string[] = []) => [...all, name])
  .option('--info', 'after the run, print on stderr one line of what the sandbox was: tier, namespaces, filters, network')
  .option('--mask [style]', "replace released secrets in the child's output with *** (--mask=name: <NAME>); default when output is not a terminal or CI is set")
  .option('--no-mask', "pass the child's output through untouched (default on a terminal)")
  .option('--timeout <duration>', 'send SIGTERM after DURATION (e.g. 90s, 5m; a number is seconds), SIGKILL after the grace; exit 124')
  .option('--kill-after <duration>', 'the grace between the timeout\'s SIGTERM and SIGKILL', '10s')
  .argument('<command>', 'the program: a PATH name or a path')
  .argument('[args...]', 'its arguments (after --)')
  .passThroughOptions()
  .action(async (command: string, args: string[], flags: ExecFlags) => {
    process.exitCode = await runExec(vaultDir(), command, args, flags, identityFlag());
  });

const agent = program
  .command('agent')
  .description('one process that holds the key and runs granted programs for you (or for users you name); it never changes the vault');
const agentCli = () => ({
  say, print, openVault: () => openVault(), unlock: (vault: Vault, changes?: boolean) => unlocked(vault, changes, identityFlag().identityFile),
});
const socketOption = '--socket <path>';
const socketHelp = 'the agent\'s socket (default: $VAULT_AGENT_SOCK, else $XDG_RUNTIME_DIR/sealvault/agent.sock)';
agent
  .command('start')
  .description('unlock once (passphrase, keychain or token) and serve `vault exec` until stopped')
  .option('--timeout <duration>', 'wipe the key after DURATION (e.g. 8h); exec through the agent is refused after it')
  .option('--allow-uid <uid>', 'also serve this uid: its programs run as you, so it cannot read them (repeat it)', collect)
  .option('--allow-group <group>', 'also serve the members of this group (repeat it)', collect)
  .option(socketOption, socketHelp)
  .option('--foreground', 'stay in the foreground, logging to stderr (a systemd user unit)')
  .addOption(new Option('--notify-fd <fd>').hideHelp())
  .action(async (flags: AgentStartFlags) => {
    await startAgent(flags, agentCli());
  });
for (const [op, description] of [
  ['status', 'whether an agent answers, its vault, whether it is locked, until when, how many requests it served'],
  ['lock', 'wipe the key; the agent keeps answering, and refuses every exec'],
  ['stop', 'wipe the key and end the agent'],
] as const) {
  const command = agent.command(op).description(description).option(socketOption, socketHelp);
  if (op === 'status') command.option('--json', 'print JSON');
  command.action(async (flags: { socket?: string; json?: boolean }) => {
    await controlCommand(op, flags, agentCli());
  });
}

program
  .command('doctor')
  .description('what this host can isolate: namespaces, capabilities, keychain, the helper, each tier')
  .option('--json', 'print JSON')
  .action(async (flags: { json?: boolean }) => {
    const { doctorReport, renderDoctor } = await import('../sandbox/doctor.js');
    const report = await doctorReport();
    if (flags.json) printJson(report);
    else print(renderDoctor(report));
  });

program
  .command('demo')
  .description('a short tour on a throwaway vault')
  .action(async () => {
    const { runDemo } = await import('./demo.js');
    await runDemo();
  });

program
  .command('completion')
  .description('print a completion script for your shell (source it: see `vault completion --help`)')
  .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(['bash', 'zsh', 'fish']))
  .addHelpText('after', '\nbash: source <(vault completion bash)   zsh: source <(vault completion zsh)   ' +
    'fish: vault completion fish | source')
  .action(async (shell: Shell) => {
    const { completionScript, INSTALL_HINTS } = await import('./completion.js');
    print(completionScript(program, shell));
    if (process.stdout.isTTY) say(`above: the ${shell} completion script; ${INSTALL_HINTS[shell]}`);
  });

// `vault` alone, `vault --version [--json]`: commander runs this when no subcommand was named
program.helpCommand(true).allowExcessArguments(true).action(async (
  flags: { version?: boolean; json?: boolean }, command: Command,
) => {
  const unknown = command.args[0];
  if (unknown !== undefined) program.error(`error: unknown command '${unknown}'`, { code: 'commander.unknownCommand' });
  if (flags.version !== true) program.help({ error: true });
  const { packageVersion, versionReport } = await import('./version.js');
  if (flags.json === true) printJson(await versionReport());
  else print(`vault ${packageVersion()}\n`);
});

/** The global flags are taken after a subcommand too (`vault put NAME --vault DIR`), except by those with no vault. */
function acceptGlobalFlags(command: Command): void {
  if (command.commands.length > 0) {
    command.commands.forEach(acceptGlobalFlags);
    return;
  }
  if (['demo', 'completion'].includes(command.name())) return;
  command.option('--vault <dir>', VAULT_HELP).option('--identity <file>', IDENTITY_HELP);
}
program.commands.forEach(acceptGlobalFlags);

async function main(): Promise<void> {
  // hardenProcess ran in entry.ts, before this module was even loaded
  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) process.exitCode = error.exitCode === 0 ? 0 : 2;
    else fail(error);
  }
  await exitWhenWritten();
}

installFailureHandlers();

await main();
