// Package authgate puts sign-in in front of any upstream served by Caddy: the
// `authgate` app holds the realms (secrets, providers, callbacks), the
// `authgate` site directive guards routes with one of them.
//
// Build Caddy with it: xcaddy build --with github.com/authgate/caddy-authgate
package authgate

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/authgate/caddy-authgate/caddyfile"
	"github.com/authgate/caddy-authgate/handlers"
)

func init() {
	caddy.RegisterModule(handlers.App{})
	caddy.RegisterModule(handlers.Handler{})
	httpcaddyfile.RegisterGlobalOption("authgate", caddyfile.ParseGlobal)
	httpcaddyfile.RegisterDirective("authgate", caddyfile.ParseDirective)
	httpcaddyfile.RegisterDirectiveOrder("authgate", httpcaddyfile.Before, "basic_auth")
}
