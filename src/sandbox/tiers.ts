/**
 * The isolation tiers a grant can require and `vault exec` will give. A grant names the weakest
 * tier its binary may run in; a run at a weaker tier than a grant asks for does not get the secret.
 */
export const TIERS = ['none', 'hardened', 'lockdown'] as const;
export type Tier = (typeof TIERS)[number];

export function tierAtLeast(tier: Tier, minimum: Tier): boolean {
  return TIERS.indexOf(tier) >= TIERS.indexOf(minimum);
}
