// A real, certified OpenID Provider (oidc-provider from the npm registry) for
// authgate's end-to-end tests. It is started by internal/testidp.
//
// Usage: node testdata/idp/server.mjs CONFIG.json
//
// CONFIG.json:
//
//   {
//     "port": 0,                          // 0 picks a free port
//     "issuer": "http://127.0.0.1:N",     // optional; defaults to http://127.0.0.1:<port>
//     "clients": [{"client_id": "...", "client_secret": "...", "redirect_uris": ["..."]}],
//     "accounts": {"alice": {"email": "...", "groups": ["admins"], "department": "..."}},
//     "ttl": {"AccessToken": 3600, "IdToken": 3600, "Session": 86400, ...},   // optional, seconds
//     "pkce_required": true,              // optional; false restores oidc-provider's default
//                                         // (PKCE required only for public clients)
//     "refresh_tokens": false,            // optional; true issues a refresh token with every
//                                         // authorization code (offline_access or not), rotates
//                                         // it on every use and enables the revocation endpoint
//     "exit_on_stdin_close": false        // optional; true exits when stdin reaches EOF
//   }
//
// Accounts are keyed by the login typed into the devInteractions login form
// (any password is accepted); an unknown login is refused and the form shown
// again with status 400. Claims map to scopes as follows: openid -> sub,
// email -> email email_verified, profile -> name given_name family_name
// preferred_username picture ... plus every claim of an account that no
// other scope lists (e.g. "department"), groups -> groups. Claims are put in
// the ID token as well as served from userinfo.
//
// GET /test/token-requests answers the number of token endpoint requests so
// far by grant_type, e.g. {"authorization_code": 1, "refresh_token": 2}, failed
// ones included (a request whose grant_type could not be read counts as
// "unknown").
//
// Once listening it prints exactly one line "READY <issuer>" to stdout. All
// other output (oidc-provider's development warnings, errors) goes to stderr.
// It exits on SIGTERM, SIGINT, and with "exit_on_stdin_close" when stdin
// closes (so it does not outlive the test process that started it).

import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

// oidc-provider logs notices with console.info, which writes to stdout; keep
// stdout for the READY line only.
console.info = console.warn;
console.log = console.warn;

const require = createRequire(new URL('../node/package.json', import.meta.url));
const { default: Provider } = await import(pathToFileURL(require.resolve('oidc-provider')).href);

if (process.argv.length < 3) {
  console.error('usage: node server.mjs CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts ?? {};

const scopeClaims = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: [
    'name', 'given_name', 'family_name', 'middle_name', 'nickname', 'preferred_username',
    'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
  ],
  groups: ['groups'],
  phone: ['phone_number', 'phone_number_verified'],
  address: ['address'],
};
const known = new Set(Object.values(scopeClaims).flat());
for (const account of Object.values(accounts)) {
  for (const claim of Object.keys(account)) {
    if (!known.has(claim)) {
      known.add(claim);
      scopeClaims.profile.push(claim);
    }
  }
}

const server = http.createServer();
server.on('clientError', (err, socket) => socket.destroy());
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = config.issuer ?? `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: (config.clients ?? []).map((c) => ({
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    ...c,
  })),
  claims: scopeClaims,
  conformIdTokenClaims: false,
  pkce: config.pkce_required === false ? {} : { required: () => true },
  features: {
    devInteractions: { enabled: true },
    userinfo: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    ...(config.refresh_tokens ? { revocation: { enabled: true } } : {}),
  },
  cookies: {
    keys: ['authgate-test-idp-cookie-key-1', 'authgate-test-idp-cookie-key-2'],
  },
  // The provider refuses to call special-use addresses (SSRF protection);
  // the test's relying party listens on loopback, so its back-channel logout
  // requests go out without that check.
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  ...(config.ttl ? { ttl: config.ttl } : {}),
  ...(config.refresh_tokens ? {
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
  } : {}),
  async findAccount(ctx, id) {
    if (!Object.hasOwn(accounts, id)) {
      return undefined;
    }
    const account = accounts[id];
    return {
      accountId: id,
      async claims() {
        return { ...account, sub: account.sub ?? id };
      },
    };
  },
});

// devInteractions accepts any login; refuse logins that are not accounts by
// rendering the login form again with status 400 before oidc-provider sees
// the submission.
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+\/?$/.test(ctx.path)) {
    const body = await readForm(ctx.req);
    if (body.get('prompt') === 'login' && !Object.hasOwn(accounts, body.get('login') ?? '')) {
      console.warn(`testidp: refused login ${JSON.stringify(body.get('login'))}: no such account`);
      ctx.status = 400;
      ctx.type = 'html';
      ctx.set('cache-control', 'no-store');
      ctx.body = `<!DOCTYPE html><html><head><title>Sign-in failed</title></head><body>
<p class="error">Sign-in failed: unknown account.</p>
<form autocomplete="off" action="${htmlEscape(ctx.path)}" method="post">
<input type="hidden" name="prompt" value="login"/>
<input required type="text" name="login" placeholder="Enter any login" autofocus="on">
<input required type="password" name="password" placeholder="and password">
<button type="submit" class="login login-submit">Sign-in</button>
</form></body></html>`;
      return;
    }
    // Let oidc-provider's body parser read the already consumed body.
    ctx.req.body = Object.fromEntries(body);
  }
  await next();
});

// Token endpoint requests by grant_type, served at GET /test/token-requests.
const tokenRequests = {};
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/test/token-requests') {
    ctx.type = 'json';
    ctx.set('cache-control', 'no-store');
    ctx.body = JSON.stringify(tokenRequests);
    return;
  }
  await next();
  if (ctx.oidc?.route === 'token') {
    const grant = ctx.oidc.params?.grant_type || 'unknown';
    tokenRequests[grant] = (tokenRequests[grant] ?? 0) + 1;
  }
});

provider.on('server_error', (ctx, err) => console.error('testidp: server_error', err));
provider.on('backchannel.error', (ctx, err, client) => console.error('testidp: backchannel logout to', client.clientId, 'failed:', err?.message ?? err, err?.cause?.message ?? '', err?.cause?.code ?? ''));

server.on('request', provider.callback());

function readForm(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

function htmlEscape(s) {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function shutdown() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (config.exit_on_stdin_close) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}

process.stdout.write(`READY ${issuer}\n`);
