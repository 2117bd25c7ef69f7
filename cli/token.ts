/**
 * `npm run -s token -- <customer-id>` prints a customer token, `npm run -s token -- --operator` an
 * operator token: the token alone on stdout (so `$(npm run -s token -- C100)` works), valid 24 h,
 * signed with the local key pair (created on first use). `--init` only makes sure the key pair
 * exists. With an OIDC provider configured (`AUTH_JWKS_URL`) tokens come from that provider instead.
 */
import { pathToFileURL } from 'node:url';
import { ensureLocalKeyPair, signLocalToken } from '../lib/auth-keys.js';
import { loadConfig } from '../lib/config.js';
import { CustomerIdSchema } from '../api/schemas.js';

const USAGE = `usage: npm run -s token -- <customer-id>     a customer's token (sub = the customer id)
       npm run -s token -- --operator [name]  an operator's token
       npm run -s token -- --init             create the local key pair if there is none
Local tokens last 24 hours. Use one as: curl -H "Authorization: Bearer $TOKEN" …`;

export interface TokenCliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/**
 * Returns the exit code: 0 printed, 2 usage or configuration error. `env`: the variables to
 * configure from (tests); by default the process's own, through loadConfig.
 */
export async function runTokenCli(
  argv: string[],
  env: NodeJS.ProcessEnv | undefined,
  io: TokenCliIo,
): Promise<number> {
  const config = env === undefined ? loadConfig() : loadConfig(env);
  const [first, second, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || rest.length > 0) {
    (first === '--help' || first === '-h' ? io.stdout : io.stderr)(`${USAGE}\n`);
    return first === '--help' || first === '-h' ? 0 : 2;
  }
  if (config.AUTH_JWKS_URL !== undefined) {
    io.stderr(
      `token: AUTH_JWKS_URL is set, so the API trusts ${config.AUTH_JWKS_URL} only; get a token from that provider.\n`,
    );
    return 2;
  }
  const pair = await ensureLocalKeyPair(config.AUTH_LOCAL_KEY_DIR);
  if (first === '--init') return second === undefined ? 0 : usage(io);
  if (first === '--operator') {
    const subject = second ?? 'operator';
    io.stdout(`${await signLocalToken(pair, config, { subject, role: 'operator' })}\n`);
    return 0;
  }
  if (second !== undefined || first.startsWith('-')) return usage(io);
  const customer = CustomerIdSchema.safeParse(first);
  if (!customer.success) {
    io.stderr(`token: ${JSON.stringify(first)} is not a customer id: ${customer.error.issues[0]?.message}\n`);
    return 2;
  }
  io.stdout(`${await signLocalToken(pair, config, { subject: customer.data, role: 'customer' })}\n`);
  return 0;
}

function usage(io: TokenCliIo): number {
  io.stderr(`${USAGE}\n`);
  return 2;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runTokenCli(process.argv.slice(2), undefined, {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  }).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`token: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
