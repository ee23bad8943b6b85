import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RESERVED_NAMES, RESERVED_PREFIXES, checkSecretName } from '../src/vault/names.js';
import { ROOT } from './helpers/cli.js';

describe('reserved names', () => {
  const security = fs.readFileSync(path.join(ROOT, 'SECURITY.md'), 'utf8');
  const section = security.slice(security.indexOf('## Reserved names'), security.indexOf('## What is not guaranteed'));
  const listed = new Set([...section.matchAll(/`([A-Za-z_0-9]+)`/g)].map((m) => m[1]));

  it('SECURITY.md lists exactly the names and prefixes the code refuses', () => {
    expect([...listed].sort()).toEqual([...RESERVED_NAMES, ...RESERVED_PREFIXES].sort());
  });

  it('refuses every reserved name and prefix, and accepts ordinary names', () => {
    for (const name of RESERVED_NAMES) expect(() => checkSecretName(name), name).toThrow(/reserved/);
    // a lower-case prefix (npm_config_) cannot start a secret name anyway
    for (const prefix of RESERVED_PREFIXES) expect(() => checkSecretName(`${prefix}X`), prefix).toThrow(/reserved|not valid/);
    for (const name of ['DB_PASSWORD', '_X', 'A', 'A'.repeat(128), 'PATH_TO_KEY', 'LDAP_PASSWORD']) {
      expect(checkSecretName(name)).toBe(name);
    }
    for (const name of ['', 'a', '1A', 'A-B', 'A'.repeat(129), 'É', 'A B', 'A\0B']) {
      expect(() => checkSecretName(name), JSON.stringify(name)).toThrow(/not valid/);
    }
  });
});
