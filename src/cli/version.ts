/**
 * `vault --version` (`-V`): the package's version; with `--json`, the versions of what a run uses
 * and the kernel features this host gives, for a bug report (the details are `vault doctor`'s).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot, native } from '../vault/native.js';
import { HELPER_PROTOCOL } from '../sandbox/helper-protocol.js';

/** The `version` of the package.json of this installation ("0.1.0"); "unknown" when it cannot be read. */
export function packageVersion(): string {
  const root = packageRoot();
  try {
    const text = fs.readFileSync(path.join(root ?? '', 'package.json'), 'utf8');
    const manifest = JSON.parse(text) as { version?: unknown };
    const version = manifest.version;
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** `vault --version --json`: { vault, node, libsodium, helper: {path, sha256, protocol}, kernel: {...} }. */
export async function versionReport(): Promise<Record<string, unknown>> {
  const { doctorReport } = await import('../sandbox/doctor.js');
  const doctor = await doctorReport();
  return {
    vault: packageVersion(),
    node: process.versions.node,
    libsodium: native().sodium.version,
    helper: { path: doctor.helper.path, sha256: doctor.helper.sha256, protocol: HELPER_PROTOCOL },
    kernel: {
      release: doctor.kernel.release,
      user_namespaces: doctor.user_namespaces.allowed,
      seccomp_filter: doctor.seccomp.actions_avail,
      landlock_abi: doctor.landlock.abi,
      tiers: Object.fromEntries(Object.entries(doctor.tiers).map(([tier, t]) => [tier, t.available])),
    },
  };
}
