// decode.mjs times the JavaScript libraries' own session token decode(), the reference
// point of authgate's benchmark (bench/run.sh):
//
//   node decode.mjs next-auth-v4 <secret> <token> [iterations]        NextAuth v4 (next-auth/jwt, this folder's node_modules)
//   node decode.mjs authjs <secret> <salt> <token> [iterations]       @auth/core (../../testdata/node/node_modules, read-only)
//
// Each decode() is awaited in turn on one thread, after a warm-up, as a server would
// decode one request's cookie. Like the libraries, every call derives the key with HKDF
// (neither caches it). The iterations are timed in 5 batches and the median batch is
// reported, which a machine shared with other work disturbs less than one long run.
// Prints "<wall ns/op, median batch> <CPU ns/op> <fastest batch ns/op> <slowest batch
// ns/op> <operations>", CPU being the process's user + system time (every thread: WebCrypto
// work runs on libuv's pool); exits 1 if the token does not decode.
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"

const [format, ...args] = process.argv.slice(2)
let decode, params, iterations
if (format === "next-auth-v4") {
  const require = createRequire(import.meta.url)
  ;({ decode } = require("next-auth/jwt"))
  const [secret, token, n] = args
  params = { token, secret } // salt "" as next-auth v4's session cookie
  iterations = Number(n || 2000)
} else if (format === "authjs") {
  const require = createRequire(new URL("../../testdata/node/package.json", import.meta.url))
  ;({ decode } = await import(pathToFileURL(require.resolve("@auth/core/jwt")).href))
  const [secret, salt, token, n] = args
  params = { token, secret, salt }
  iterations = Number(n || 2000)
} else {
  console.error("usage: node decode.mjs next-auth-v4 <secret> <token> [n] | authjs <secret> <salt> <token> [n]")
  process.exit(2)
}
if (!params.secret || !params.token || !(iterations > 0)) {
  console.error("decode.mjs: missing secret or token, or a bad iteration count")
  process.exit(2)
}

try {
  const claims = await decode(params)
  if (!claims || claims.sub !== "alice") throw new Error(`unexpected claims ${JSON.stringify(claims)}`)
} catch (err) {
  console.error(`decode.mjs ${format}: the token does not decode: ${err.message}`)
  process.exit(1)
}

const warmup = Math.max(200, iterations >> 2)
for (let i = 0; i < warmup; i++) await decode(params)

const batches = 5
const perBatch = Math.max(1, Math.round(iterations / batches))
const times = []
const cpu0 = process.cpuUsage()
for (let b = 0; b < batches; b++) {
  const start = process.hrtime.bigint()
  for (let i = 0; i < perBatch; i++) await decode(params)
  times.push(Number(process.hrtime.bigint() - start) / perBatch)
}
const { user, system } = process.cpuUsage(cpu0) // µs, every thread of the process
const cpu = ((user + system) * 1000) / (perBatch * batches)
times.sort((x, y) => x - y)
const r = Math.round
console.log(`${r(times[batches >> 1])} ${r(cpu)} ${r(times[0])} ${r(times[batches - 1])} ${perBatch * batches}`)
