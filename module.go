// Package authgate puts sign-in in front of any upstream served by Caddy: the
// `authgate` app holds the realms (secrets, providers, callbacks), the
// `authgate` site directive guards routes with one of them.
//
// Build Caddy with it: xcaddy build --with github.com/authgate/caddy-authgate
package authgate

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/authgate/caddy-authgate/caddyfile"
	"github.com/authgate/caddy-authgate/explain"
	"github.com/authgate/caddy-authgate/handlers"
)

func init() {
	caddy.RegisterModule(handlers.App{})
	caddy.RegisterModule(handlers.Handler{})
	httpcaddyfile.RegisterGlobalOption("authgate", caddyfile.ParseGlobal)
	httpcaddyfile.RegisterDirective("authgate", caddyfile.ParseDirective)
	httpcaddyfile.RegisterDirectiveOrder("authgate", httpcaddyfile.Before, "basic_auth")
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      "authgate",
		Short:     "authgate's tools: explain evaluates a configuration's rules against JSON input",
		CobraFunc: func(cmd *cobra.Command) { cmd.AddCommand(explain.Command()) },
	})
}
