// codec.mjs runs @auth/core's session token codec for authgate's interop tests.
//
//   node codec.mjs encode <secret> <salt> <json-claims>   prints a token (maxAge 30 days)
//   node codec.mjs decode <secret> <salt> <token>         prints the claims as JSON, or exits 1
//
// @auth/core is installed in ../node/node_modules (npm ci there), which is not on this
// script's own module resolution path, so resolve it from that package.
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"

const require = createRequire(new URL("../node/package.json", import.meta.url))
const { encode, decode } = await import(pathToFileURL(require.resolve("@auth/core/jwt")).href)

const [command, secret, salt, arg] = process.argv.slice(2)
if (!secret || salt === undefined || arg === undefined) {
  console.error("usage: node codec.mjs encode|decode <secret> <salt> <json-claims|token>")
  process.exit(2)
}

switch (command) {
  case "encode":
    console.log(await encode({ token: JSON.parse(arg), secret, salt, maxAge: 30 * 24 * 60 * 60 }))
    break
  case "decode":
    try {
      const claims = await decode({ token: arg, secret, salt })
      if (!claims) throw new Error("no token")
      console.log(JSON.stringify(claims))
    } catch (err) {
      console.error(`decode: ${err.message}`)
      process.exit(1)
    }
    break
  default:
    console.error(`unknown command ${JSON.stringify(command)}`)
    process.exit(2)
}
