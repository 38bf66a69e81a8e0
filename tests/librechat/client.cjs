// LibreChat's side, as its .env configures it: @librechat/agents' execute_code and bash_tool, with the
// auth headers LibreChat's packages/api/src/auth/codeapi.ts gives them. That file's token minting is
// restated here from its behaviour: header {alg, typ: "JWT", kid}; claims iss, aud, sub, iat, nbf, exp
// (ttl <= 300 s), jti, tenant_id, role, principal_source, auth_context_hash (sha256 of the canonical
// identity JSON); a token is reused for up to 30 s while it has more than 30 s to live.
// argv[2]: JSON {env, user: {id, tenantId?, role?}, executionProfile?, stateful?: {hint},
//   calls: [{tool, code, lang?, continue?}], mint?}
// prints JSON {results: [{content, artifact} | {prewarm: {status, body}} | {error}], tokens: [every distinct
// token sent]} or {token}.
// `stateful` is what LibreChat gives both tools for an agent with stateful code sessions (packages/api's
// resolveCodeExecutionContext, spread into the factories beside user_id and authHeaders): the
// LIBRECHAT_CODE_BASEURL_STATEFUL route, executionProfile 'stateful', statefulSessions true, its
// runtimeSessionHint and codeSessionKey; authHeaders add the profile header (codeExecutionAuthHeaders).
// The call {tool: "prewarm"} is LibreChat's prewarm (packages/api/src/agents/prewarm.ts), restated: the
// global fetch, POST <stateful route>/exec with the auth headers and the profile header, body
// {lang: "bash", code: "true", runtime_session_hint}.
const crypto = require("crypto");
const { createCodeExecutionTool, createBashExecutionTool } = require("@librechat/agents");

const options = JSON.parse(process.argv[2]);
const env = options.env;
const user = options.user;

function jwtEnabled() {
  const provider = env.CODEAPI_AUTH_PROVIDER;
  return provider === "librechat-jwt" || provider === "both" || ["true", "1"].includes(env.CODEAPI_JWT_ENABLED);
}

function cappedSeconds(value, fallback, max) {
  const parsed = Number(value);
  return Number.isFinite(parsed) && parsed > 0 ? Math.min(Math.floor(parsed), max) : fallback;
}

function signingConfig() {
  const raw = (env.CODEAPI_JWT_PRIVATE_KEY || "").replace(/\\n/g, "\n").trim();
  return {
    alg: env.CODEAPI_JWT_ALGORITHM === "RS256" ? "RS256" : "EdDSA",
    kid: env.CODEAPI_JWT_KID || "lc-codeapi-2026-05",
    issuer: env.CODEAPI_JWT_ISSUER || "librechat",
    audience: env.CODEAPI_JWT_AUDIENCE || "codeapi",
    ttlSeconds: cappedSeconds(env.CODEAPI_JWT_TTL_SECONDS, 300, 300),
    cacheSeconds: cappedSeconds(env.CODEAPI_JWT_MINT_CACHE_SECONDS, 30, 30),
    key: crypto.createPrivateKey(raw.startsWith("{") ? { key: JSON.parse(raw), format: "jwk" } : raw),
  };
}

const REUSE_SAFETY_S = 30;
const cache = new Map();
const sent = [];

function mint() {
  const config = signingConfig();
  const now = Math.floor(Date.now() / 1000);
  const tenantId = user.tenantId || (env.CODEAPI_JWT_SINGLE_TENANT_ID || "").trim() || "legacy";
  const role = user.role || "USER";
  const principalSource = "librechat_jwt";
  const canonical = {
    chc_user_id: "", org_id: "", principal_source: principalSource, role, service_id: "", sub: user.id, tenant_id: tenantId,
  };
  const authContextHash = crypto.createHash("sha256").update(JSON.stringify(canonical)).digest("hex");
  const cacheKey = [config.alg, config.kid, user.id, tenantId, role, principalSource, authContextHash].join(":");
  const cached = cache.get(cacheKey);
  if (cached && cached.cachedUntil > now && cached.expiresAt > now + REUSE_SAFETY_S) {
    return cached.token;
  }
  const claims = {
    iss: config.issuer, aud: config.audience, sub: user.id, iat: now, nbf: now, exp: now + config.ttlSeconds,
    jti: crypto.randomUUID(), tenant_id: tenantId, role, principal_source: principalSource,
    auth_context_hash: authContextHash,
  };
  const header = { alg: config.alg, typ: "JWT", kid: config.kid };
  const input = `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  const signature = crypto.sign(config.alg === "RS256" ? "RSA-SHA256" : null, Buffer.from(input), config.key);
  const token = `${input}.${signature.toString("base64url")}`;
  cache.set(cacheKey, {
    token, expiresAt: claims.exp, cachedUntil: Math.min(now + config.cacheSeconds, claims.exp - REUSE_SAFETY_S),
  });
  return token;
}

async function authHeaders() {
  const token = mint();
  if (!sent.includes(token)) sent.push(token);
  return { Authorization: `Bearer ${token}` };
}

async function statefulHeaders() {
  return { ...(jwtEnabled() ? await authHeaders() : {}), "X-CodeAPI-Expected-Profile": "stateful" };
}

async function prewarm(baseUrl, hint) {
  const response = await fetch(`${baseUrl}/exec`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "User-Agent": "LibreChat/1.0", ...(await statefulHeaders()) },
    body: JSON.stringify({ lang: "bash", code: "true", runtime_session_hint: hint }),
    signal: AbortSignal.timeout(120000),
  });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) };
}

async function main() {
  if (options.mint) {
    process.stdout.write(JSON.stringify({ token: mint() }));
    return;
  }
  const stateful = options.stateful;
  const params = stateful
    ? {
      user_id: user.id,
      authHeaders: statefulHeaders,
      baseUrl: env.LIBRECHAT_CODE_BASEURL_STATEFUL,
      codeSessionKey: `execute_code:stateful:${stateful.hint}`,
      executionProfile: "stateful",
      runtimeSessionHint: stateful.hint,
      statefulSessions: true,
    }
    : {
      baseUrl: env.LIBRECHAT_CODE_BASEURL,
      user_id: user.id,
      ...(jwtEnabled() ? { authHeaders } : {}),
      ...(options.executionProfile ? { executionProfile: options.executionProfile } : {}),
    };
  const tools = { execute_code: createCodeExecutionTool(params), bash_tool: createBashExecutionTool(params) };
  const results = [];
  let previous = null;
  for (const [index, call] of options.calls.entries()) {
    if (call.tool === "prewarm") {
      try {
        results.push({ prewarm: await prewarm(params.baseUrl, stateful.hint) });
      } catch (error) {
        results.push({ error: String(error && error.message) });
      }
      continue;
    }
    const tool = tools[call.tool];
    const args = call.tool === "bash_tool" ? { command: call.code } : { lang: call.lang || "py", code: call.code };
    // What LibreChat's ToolNode injects: the files an earlier call of the run returned.
    const injected = call.continue && previous && previous.files
      ? previous.files.map((file) => ({
        id: file.id, resource_id: file.resource_id || file.id, name: file.name,
        storage_session_id: file.storage_session_id || previous.session_id, kind: file.kind || "user",
      }))
      : undefined;
    try {
      const message = await tool.invoke({
        id: `call_${index}`, name: tool.name, type: "tool_call", args,
        ...(injected ? { session_id: previous.session_id, _injected_files: injected } : {}),
      });
      previous = message.artifact;
      results.push({ content: message.content, artifact: message.artifact });
    } catch (error) {
      results.push({ error: String(error && error.message) });
    }
  }
  process.stdout.write(JSON.stringify({ results, tokens: sent }));
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ fatal: String(error && error.stack) }));
  process.exitCode = 1;
});
