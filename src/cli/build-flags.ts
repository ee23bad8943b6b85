/**
 * The test build (dist/test/vault.mjs) is the release code with this one flag set by esbuild. It
 * allows argon2id parameters too weak for real use, so that tests can run real passphrase slots.
 */
declare const SEALVAULT_TEST_BUILD: boolean | undefined;

export const isTestBuild: boolean = typeof SEALVAULT_TEST_BUILD !== 'undefined' && SEALVAULT_TEST_BUILD;
