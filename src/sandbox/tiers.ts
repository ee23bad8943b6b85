/**
 * The isolation tiers a grant can require and `vault exec` will give. A grant names the weakest
 * tier its binary may run in; a run at a weaker tier than a grant asks for does not get the secret.
 */
export const TIERS = ['none', 'hardened', 'lockdown'] as const;
export type Tier = (typeof TIERS)[number];

/** What each tier is to isolate (SECURITY.md, "Tiers", holds the full account). */
export const TIER_SUMMARY: Record<Tier, string> = {
  none: 'no namespaces: the child sees the host as the caller does',
  hardened: 'own user, PID and IPC namespaces; the host filesystem and /proc stay in view',
  lockdown: 'hardened plus own mount and network namespaces: private /tmp and /proc, loopback only',
};

export function tierAtLeast(tier: Tier, minimum: Tier): boolean {
  return TIERS.indexOf(tier) >= TIERS.indexOf(minimum);
}
