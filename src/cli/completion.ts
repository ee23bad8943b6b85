/**
 * `vault completion bash|zsh|fish`: a completion script made from the commander tree that main.ts
 * builds, so that a new command or option is offered without anyone editing a list.
 *
 * The tree becomes one table (CommandSpec), written into the script as data; each shell gets a
 * small walker of its own that reads the words typed so far as commander would parse them (an
 * option's value, `--`, subcommands, pass-through after a command's first argument) and offers:
 * subcommands, long options, commander's choices, paths, program names, or secret names.
 * Hidden commands and options (commander `hidden: true`, `.hideHelp()`) are not in the table at all.
 */
import { type Argument, type Command, type Help, type Option } from 'commander';
import { VaultError } from '../vault/errors.js';
// the shell code of each script, as text (scripts/bundle.mjs loads these files with esbuild's text loader)
import BASH_WALKER from './completion/walker.bash';
import FISH_WALKER from './completion/walker.fish';
import ZSH_WALKER from './completion/walker.zsh';
import SH_SECRET_NAMES from './completion/secret-names.sh';

export type Shell = 'bash' | 'zsh' | 'fish';

/**
 * What a value is completed with. Decided from the tree (valueKind), by these rules, in order:
 * commander's choices; an argument named NAME is a secret name (`vault list --json`, which needs
 * no unlock; an option's <NAME> is not, as `--pass-env <NAME>` is a variable); an argument named
 * `command` is a program (PATH, or a path once it has a slash); `args` and values named `file`,
 * `path` or `…-script` are paths; `dir` is a directory; anything else gets nothing.
 */
export type ValueKind =
  | { kind: 'none' }
  | { kind: 'file' }
  | { kind: 'dir' }
  | { kind: 'program' }
  | { kind: 'secret' }
  | { kind: 'choices'; choices: string[] };

export interface OptionSpec {
  /** `--tier`, or `-f` for an option with no long name; completion offers long names only. */
  name: string;
  /** Further names of the same option (its short one), known to the walker, never offered. */
  aliases: string[];
  description: string;
  /** none: a flag; required: takes the next word; optional: only as `--opt=value` (see optionSpec). */
  value: 'none' | 'required' | 'optional';
  /** A variadic value (`--run A B…`) takes words until one starts with `-`, as commander does. */
  variadic: boolean;
  complete: ValueKind;
}

export interface ArgumentSpec {
  variadic: boolean;
  complete: ValueKind;
}

export interface CommandSpec {
  /** Words after `vault`, e.g. ['key', 'add']; [] for `vault` itself. */
  path: string[];
  description: string;
  subcommands: CommandSpec[];
  options: OptionSpec[];
  args: ArgumentSpec[];
  /** commander's passThroughOptions: after the first argument every word is an argument (`vault exec`). */
  passThrough: boolean;
}

/** `<file>` of `--from-file <file>`, `dir...` of `[dir...]`: the value's name without brackets or dots. */
function valueName(flags: string): string | undefined {
  const found = /[<[]([^>\]]*)[>\]]/.exec(flags)?.[1];
  return found?.replace(/\.\.\.$/, '');
}

/** A path-like value name: `file`, `path`, `dir`, or a last word such as `…-script` (see ValueKind). */
function pathKind(name: string | undefined): ValueKind | undefined {
  const last = name?.toLowerCase().split('-').pop();
  if (last === 'dir') return { kind: 'dir' };
  if (last === 'file' || last === 'path' || last === 'script') return { kind: 'file' };
  return undefined;
}

function optionKind(option: Option): ValueKind {
  if (option.argChoices !== undefined) return { kind: 'choices', choices: [...option.argChoices] };
  return pathKind(valueName(option.flags)) ?? { kind: 'none' };
}

function argumentKind(argument: Argument, siblings: readonly Command[], command: Command): ValueKind {
  if (argument.argChoices !== undefined) return { kind: 'choices', choices: [...argument.argChoices] };
  const name = argument.name();
  // commander's implicit `help [command]` names a sibling command: complete those
  if (command.name() === 'help' && name === 'command') {
    return { kind: 'choices', choices: siblings.filter((c) => c !== command).map((c) => c.name()) };
  }
  if (name === 'NAME') return { kind: 'secret' };
  if (name === 'command') return { kind: 'program' };
  if (name === 'args') return { kind: 'file' };
  return pathKind(name) ?? { kind: 'none' };
}

/** An option as the walker needs it; an optional value is completed only after `=` (commander takes `--mask x` too). */
function optionSpec(option: Option): OptionSpec {
  const names = [option.long, option.short].filter((n): n is string => n !== undefined);
  return {
    name: names[0] ?? option.flags,
    aliases: names.slice(1),
    description: option.description,
    value: option.required ? 'required' : option.optional ? 'optional' : 'none',
    variadic: option.variadic,
    complete: optionKind(option),
  };
}

/** Whether commander parses this command with passThroughOptions (it has no public getter). */
function passesThrough(command: Command): boolean {
  return (command as unknown as { _passThroughOptions?: boolean })._passThroughOptions === true;
}

/**
 * The completion table of `command` and every visible command below it: commander's Help decides
 * what is visible (hidden commands and options left out; its implicit help command and option in).
 */
export function completionTree(
  command: Command, path: string[] = [], help: Help = command.createHelp(), siblings: readonly Command[] = [],
): CommandSpec {
  const children = help.visibleCommands(command);
  return {
    path,
    description: command.description(),
    subcommands: children.map((child) => completionTree(child, [...path, child.name()], help, children)),
    options: help.visibleOptions(command).map(optionSpec),
    args: command.registeredArguments.map((a) => ({
      variadic: a.variadic, complete: argumentKind(a, siblings, command),
    })),
    passThrough: passesThrough(command),
  };
}

const flatten = (spec: CommandSpec): CommandSpec[] => [spec, ...spec.subcommands.flatMap(flatten)];

/** Words that go into the script unquoted-safe: command and option names, choices. */
const SAFE_WORD = /^[A-Za-z0-9_.+@%-]+$/;

function safeWord(word: string): string {
  if (!SAFE_WORD.test(word)) throw new VaultError('internal', `"${word}" cannot be written into a completion script`);
  return word;
}

/** `choices=none,hardened,lockdown`, `file`, `-` for nothing: one word of the table. */
function kindWord(kind: ValueKind): string {
  if (kind.kind === 'choices') return `choices=${kind.choices.map(safeWord).join(',')}`;
  return kind.kind === 'none' ? '-' : kind.kind;
}

/**
 * One command's row of the table, as the walkers read it: `subs` (names), `opts` (NAME:ARITY:KIND,
 * ARITY 0, 1, ? or + for a flag, a value, an optional value, a variadic value), `args` (KIND, with
 * a + when variadic), `pass` (1 with passThroughOptions).
 */
function row(spec: CommandSpec): { key: string; subs: string; opts: string; args: string; pass: string } {
  const arity = (o: OptionSpec) => (o.value === 'none' ? '0' : o.value === 'optional' ? '?' : o.variadic ? '+' : '1');
  return {
    key: spec.path.map(safeWord).join(' '),
    subs: spec.subcommands.map((s) => safeWord(s.path.at(-1) ?? '')).join(' '),
    opts: spec.options
      .flatMap((o) => [o.name, ...o.aliases].map((n) => `${safeWord(n)}:${arity(o)}:${kindWord(o.complete)}`))
      .join(' '),
    args: spec.args.map((a) => `${kindWord(a.complete)}${a.variadic ? '+' : ''}`).join(' '),
    pass: spec.passThrough ? '1' : '0',
  };
}

/** A one-line description for zsh and fish: no tabs, newlines or colons' ambiguity, at most 80 characters. */
function shortDescription(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= 80 ? line : `${line.slice(0, 79)}…`;
}

/** POSIX single quotes (bash, zsh). */
const shQuote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;
/** fish single quotes: only \\ and \' are escapes there. */
const fishQuote = (text: string) => `'${text.replace(/[\\']/g, (c) => `\\${c}`)}'`;

/** The table as a bash/zsh function that sets subs, opts, args and pass for a command path. */
function shTable(tree: CommandSpec): string {
  const cases = flatten(tree).map((spec) => {
    const r = row(spec);
    const values = `subs=${shQuote(r.subs)} opts=${shQuote(r.opts)} args=${shQuote(r.args)} pass=${r.pass}`;
    return `    ${shQuote(r.key)}) ${values} ;;`;
  });
  return ['__vault_spec() {', '  case $1 in', ...cases, '    *) return 1 ;;', '  esac', '}'].join('\n');
}

/** `name:description` lines of a command's subcommands and long options, for zsh's _describe (colons escaped). */
function zshDescriptions(tree: CommandSpec): string {
  const escape = (name: string) => name.replace(/:/g, '\\:');
  const cases = flatten(tree).map((spec) => {
    const subs = spec.subcommands
      .map((s) => shQuote(`${escape(s.path.at(-1) ?? '')}:${shortDescription(s.description)}`));
    const opts = spec.options.filter((o) => o.name.startsWith('--'))
      .map((o) => shQuote(`${escape(o.name)}:${shortDescription(o.description)}`));
    const values = `described_subs=(${subs.join(' ')}) described_opts=(${opts.join(' ')})`;
    return `    ${shQuote(spec.path.join(' '))}) ${values} ;;`;
  });
  return ['__vault_described() {', '  case $1 in', ...cases, '  esac', '}'].join('\n');
}

/** The table for fish: a function that sets subs, opts, args, pass (lists) for a command path. */
function fishTable(tree: CommandSpec): string {
  const cases = flatten(tree).map((spec) => {
    const r = row(spec);
    const list = (words: string) => words.split(' ').filter((w) => w !== '').map(fishQuote).join(' ');
    return [
      `    case ${fishQuote(r.key)}`,
      `      set -g __vault_subs ${list(r.subs)}`,
      `      set -g __vault_opts ${list(r.opts)}`,
      `      set -g __vault_args ${list(r.args)}`,
      `      set -g __vault_pass ${r.pass}`,
    ].join('\n');
  });
  return ['function __vault_spec', '  switch $argv[1]', ...cases, "    case '*'", '      return 1', '  end', 'end']
    .join('\n');
}

/** `name<TAB>description` lines of a command's subcommands and long options, for fish. */
function fishDescriptions(tree: CommandSpec): string {
  const cases = flatten(tree).map((spec) => {
    const lines = [
      ...spec.subcommands.map((s) => `${s.path.at(-1) ?? ''}\t${shortDescription(s.description)}`),
      ...spec.options.filter((o) => o.name.startsWith('--'))
        .map((o) => `${o.name}\t${shortDescription(o.description)}`),
    ];
    const prints = lines.map((l) => `      printf '%s\\n' ${fishQuote(l)}`);
    return [`    case ${fishQuote(spec.path.join(' '))}`, ...prints].join('\n');
  });
  return ['function __vault_described', '  switch $argv[1]', ...cases, '  end', 'end'].join('\n');
}

/** Where each script goes, for a person at a terminal (stderr, never in the script). */
export const INSTALL_HINTS: Record<Shell, string> = {
  bash: 'load it now with `source <(vault completion bash)`; add that line to ~/.bashrc to keep it',
  zsh: 'load it now with `source <(vault completion zsh)` (after compinit); add that line to ~/.zshrc to keep it, ' +
    'or save it as _vault in a directory of $fpath',
  fish: 'load it now with `vault completion fish | source`; ' +
    'save it as ~/.config/fish/completions/vault.fish to keep it',
};

/**
 * The completion script for `shell`, made from `program` (main.ts's commander tree). Bash needs
 * 4.3 or newer (negative array indices); zsh its completion system (compinit); fish 3.
 */
export function completionScript(program: Command, shell: Shell): string {
  const tree = completionTree(program);
  const head = `# ${shell} completion for vault (sealvault), made by \`vault completion ${shell}\` from its commands\n`;
  switch (shell) {
    case 'bash':
      return `${head}${shTable(tree)}\n\n${SH_SECRET_NAMES}\n${BASH_WALKER}`;
    case 'zsh':
      return `#compdef vault\n${head}${shTable(tree)}\n\n${zshDescriptions(tree)}\n\n${SH_SECRET_NAMES}\n${ZSH_WALKER}`;
    case 'fish':
      return `${head}${fishTable(tree)}\n\n${fishDescriptions(tree)}\n\n${FISH_WALKER}`;
  }
}
