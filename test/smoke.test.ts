import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initWithToken, makeWorkspace, put, type Workspace } from './helpers/cli.js';
import { openAllSecrets } from './helpers/open-vault.js';

describe('vault put and list', () => {
  let ws: Workspace;
  beforeEach(() => {
    ws = makeWorkspace();
  });
  afterEach(() => ws.cleanup());

  it('stores a binary, multi-line value byte for byte, trailing newline kept', async () => {
    const token = initWithToken(ws);
    const value = Buffer.from([0x00, 0xff, 0x0a, 0x41, 0x0d, 0x0a, 0x0a]);
    put(ws, 'BINARY', value);
    expect((await openAllSecrets(ws.vaultDir, token)).get('BINARY')).toEqual(value);
  });
});
