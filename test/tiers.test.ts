/**
 * The tier table (src/sandbox/tiers.ts) is what doctor, the docs and the tests read; the helper
 * carries it out. These keep the lists that exist twice in step: the seccomp deny list in C and
 * in the table, and the table and SECURITY.md. The helper's behaviour itself is tested by running
 * it (test/spawn-helper.test.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOCKDOWN_REMOVED_VARIABLES, LOCKDOWN_SYSTEM_PATHS, SECCOMP_DENIED } from '../src/sandbox/tiers.js';
import { ROOT } from './helpers/cli.js';

const helperSource = fs.readFileSync(path.join(ROOT, 'native', 'spawn_helper.c'), 'utf8');
const security = fs.readFileSync(path.join(ROOT, 'SECURITY.md'), 'utf8');

describe('the tier table', () => {
  it('names exactly the system calls of the helper\'s denied_syscalls, with the same errno', () => {
    const table = helperSource.slice(helperSource.indexOf('denied_syscalls[] = {'), helperSource.indexOf('};', helperSource.indexOf('denied_syscalls[] = {')));
    const inC = [...table.matchAll(/\{ SCMP_SYS\((\w+)\), (EPERM|ENOSYS) \}/g)].map((m) => `${m[1]} ${m[2]}`);
    expect(inC.sort()).toEqual(SECCOMP_DENIED.map((d) => `${d.name} ${d.errno}`).sort());
  });

  it('is what SECURITY.md says: every refused call, every system path, every variable kept from lockdown', () => {
    const section = security.slice(security.indexOf('### System calls'), security.indexOf('### Without a user namespace'));
    for (const denied of SECCOMP_DENIED) expect(section, denied.name).toContain(`\`${denied.name}\``);
    const tiers = security.slice(security.indexOf('## Tiers'), security.indexOf('### System calls'));
    for (const system of LOCKDOWN_SYSTEM_PATHS.filter((p) => !p.startsWith('/lib'))) expect(tiers, system).toContain(`\`${system}\``);
    expect(tiers).toContain('`/lib*`');
    expect(tiers).toContain('LOCKDOWN_REMOVED_VARIABLES');
    for (const name of ['SSH_AUTH_SOCK', 'DISPLAY']) expect(LOCKDOWN_REMOVED_VARIABLES).toContain(name);
  });
});
