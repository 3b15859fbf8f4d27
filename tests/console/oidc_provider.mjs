// A real OpenID provider for the single sign-on tests: the `oidc-provider` package (installed by
// .ci/run into .ci/npm), on loopback, with one client (Replaydesk) and the accounts given as JSON.
// Its development login form takes any account name; the accounts' claims come from OIDC_ACCOUNTS.
//   node oidc_provider.mjs PORT   with OIDC_REDIRECT_URI, OIDC_POST_LOGOUT_URI and OIDC_ACCOUNTS set
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.OIDC_NODE_MODULES, "noop.js"));
const { default: Provider } = await import(require.resolve("oidc-provider"));

const port = Number(process.argv[2]);
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "replaydesk",
      client_secret: "replaydesk-test-secret",
      redirect_uris: [process.env.OIDC_REDIRECT_URI],
      post_logout_redirect_uris: [process.env.OIDC_POST_LOGOUT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_post",
    },
  ],
  claims: { openid: ["sub"], email: ["email"], profile: ["preferred_username", "groups"] },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, email: account.email, groups: account.groups };
      },
    };
  },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => false },
  cookies: { keys: ["replaydesk-tests-only"] },
});

provider.listen(port, "127.0.0.1", () => console.log(`listening on ${issuer}`));
