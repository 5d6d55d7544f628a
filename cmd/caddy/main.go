// Command caddy is Caddy with its standard modules and authgate, for development
// and the demo: go run ./cmd/caddy run --config examples/demo/Caddyfile
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/authgate/caddy-authgate"
)

func main() {
	caddycmd.Main()
}
