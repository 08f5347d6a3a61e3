// A standards-compliant OpenID provider for kbsync's tests: the certified `oidc-provider` package, installed
// outside the clone by install.sh, with one confidential client and a few test accounts.
//
// Settings (environment):
//   KBSYNC_OIDC_PEER_DIR      where install.sh put the package (default /opt/kbsync-peers/oidc-provider)
//   OIDC_PEER_HOST            address to listen on (default 127.0.0.1)
//   OIDC_PEER_PORT            port (default 0: a free one; the ready line tells which)
//   OIDC_PEER_CLIENT_ID       the client (default kbsync-peer-client)
//   OIDC_PEER_CLIENT_SECRET   its secret (default kbsync-peer-secret)
//   OIDC_PEER_REDIRECT_URIS   its redirect URIs, comma-separated (required)
//   OIDC_PEER_CONFORM_ID_TOKEN_CLAIMS  "1": the package's strict default, where scope claims (email, name) are
//                             served by userinfo only; otherwise they are in the ID token too, as at Entra.
//
// Sign-in uses the package's development interactions: a login form (any password; the login must be one of
// ACCOUNTS below, else the form comes back) and a consent form, plain HTML that a test drives with HTTP
// requests. When it listens it prints `listening <issuer>` on stdout.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const env = process.env;
const packageDir = join(
  env.KBSYNC_OIDC_PEER_DIR || '/opt/kbsync-peers/oidc-provider',
  'node_modules',
  'oidc-provider',
);
// The package lives outside the clone, where ESM resolution from this file would not look: import it by path.
const main = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')).main || 'index.js';
const { default: Provider } = await import(pathToFileURL(join(packageDir, main)).href);

const redirectUris = (env.OIDC_PEER_REDIRECT_URIS || '').split(',').map((s) => s.trim()).filter(Boolean);
if (redirectUris.length === 0) {
  console.error('OIDC_PEER_REDIRECT_URIS is required (the client\'s redirect URIs, comma-separated)');
  process.exit(2);
}

/** The test accounts, by login (which is also their `sub`). */
const ACCOUNTS = {
  'pat@example.org': { name: 'Pat Example', email: 'pat@example.org', email_verified: true },
  'sam@example.org': { name: 'Sam Sample', email: 'sam@example.org', email_verified: true },
  'unverified@example.org': { name: 'Una Verified', email: 'unverified@example.org', email_verified: false },
};

const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  alg: 'RS256',
  use: 'sig',
  kid: randomBytes(8).toString('hex'),
};

const server = createServer();
server.listen(Number(env.OIDC_PEER_PORT || 0), env.OIDC_PEER_HOST || '127.0.0.1', () => {
  const { address, port } = server.address();
  const host = address.includes(':') ? `[${address}]` : address;
  const issuer = `http://${host}:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: env.OIDC_PEER_CLIENT_ID || 'kbsync-peer-client',
      client_secret: env.OIDC_PEER_CLIENT_SECRET || 'kbsync-peer-secret',
      redirect_uris: redirectUris,
      post_logout_redirect_uris: redirectUris.map((u) => new URL('/', u).href),
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    }],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    pkce: { required: () => true },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    conformIdTokenClaims: env.OIDC_PEER_CONFORM_ID_TOKEN_CLAIMS === '1',
    features: { devInteractions: { enabled: true } },
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    async findAccount(ctx, id) {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, ...account };
        },
      };
    },
  });
  server.on('request', provider.callback());
  console.log(`listening ${issuer}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
