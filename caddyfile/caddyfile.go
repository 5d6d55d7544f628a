// Package caddyfile turns authgate's Caddyfile syntax — the `authgate` global
// option and the `authgate` site directive — into the JSON of the authgate app
// and handler.
package caddyfile

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	cf "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/handlers"
	"github.com/authgate/caddy-authgate/providers"
)

// ParseGlobal parses the `authgate` global option, which defines a realm. Several
// named realms may coexist. Syntax:
//
//	authgate [<realm>] {
//		secret <secret> [<old secret>…]
//		base_path <path>
//		url <origin>
//		cookie {
//			name <name>
//			domain <domain>
//			same_site lax|strict|none
//			compat next-auth-v4
//		}
//		session {
//			strategy jwt|database
//			max_age <duration>
//			update_age <duration>
//		}
//		store memory | bolt [<path>] | redis <url> {
//			prefix <prefix>
//		}
//		admin {
//			require <condition>
//		}
//		provider <type> [<id>] {
//			name <display name>
//			client_id <id>
//			client_secret <secret>
//			issuer <url>
//			scopes <scope…>
//			auth_url <url>
//			token_url <url>
//			userinfo_url <url>
//			api_url <url>
//			allow_email_linking
//			users_file <path>
//			authorize_url <url>
//			timeout <duration>
//			mailer <smtp://user:pass@host:port | smtps://… | log>
//			from <address>
//			max_age <duration>
//			subject <text>
//			template <file>
//		}
//		callbacks {
//			sign_in { <rule…> }
//			redirect { <rule…> }
//			jwt { <rule…> }
//			session { <rule…> }
//		}
//	}
//
// A rule is `<action> [<argument>…] [<condition>]`; a condition is a CEL
// expression in backticks, or `email|domain|provider <value…>`, or
// `claim <path> <value…>`. A webhook rule may have a block:
//
//	webhook <url> {
//		secret <shared secret>
//		timeout <duration>
//		header <name> <value>
//	}
func ParseGlobal(d *cf.Dispenser, existing any) (any, error) {
	app := handlers.App{Realms: map[string]*handlers.Realm{}}
	if existing != nil {
		prev, ok := existing.(httpcaddyfile.App)
		if !ok {
			return nil, d.Errf("unexpected existing authgate value %T", existing)
		}
		if err := json.Unmarshal(prev.Value, &app); err != nil {
			return nil, d.Errf("reading earlier authgate options: %v", err)
		}
	}
	d.Next() // option name
	name := handlers.DefaultRealm
	if d.NextArg() {
		name = d.Val()
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	if _, dup := app.Realms[name]; dup {
		if name == handlers.DefaultRealm {
			return nil, d.Errf("authgate: the unnamed realm is defined twice; name the others (authgate <name> { … })")
		}
		return nil, d.Errf("authgate: realm %q is defined twice", name)
	}
	realm, err := parseRealm(d)
	if err != nil {
		return nil, err
	}
	app.Realms[name] = realm
	return httpcaddyfile.App{Name: "authgate", Value: caddyconfig.JSON(app, nil)}, nil
}

func parseRealm(d *cf.Dispenser) (*handlers.Realm, error) {
	r := &handlers.Realm{}
	for d.NextBlock(0) {
		switch d.Val() {
		case "secret":
			r.Secrets = d.RemainingArgs()
			if len(r.Secrets) == 0 {
				// Most often an unset {$VAR}, which the Caddyfile expands to nothing.
				return nil, d.Errf("secret needs a value, such as {env.AUTHGATE_SECRET} (is a {$VAR} in it unset?)")
			}
		case "base_path":
			if err := oneArg(d, &r.BasePath); err != nil {
				return nil, err
			}
		case "url":
			if err := oneArg(d, &r.URL); err != nil {
				return nil, err
			}
		case "cookie":
			c, err := parseCookie(d)
			if err != nil {
				return nil, err
			}
			r.Cookie = c
		case "session":
			s, err := parseSession(d)
			if err != nil {
				return nil, err
			}
			r.Session = s
		case "provider":
			p, err := parseProvider(d)
			if err != nil {
				return nil, err
			}
			r.Providers = append(r.Providers, p)
		case "admin":
			a, err := parseAdmin(d)
			if err != nil {
				return nil, err
			}
			r.Admin = a
		case "store":
			st, err := parseStore(d)
			if err != nil {
				return nil, err
			}
			r.Store = st
		case "callbacks":
			c, err := parseCallbacks(d)
			if err != nil {
				return nil, err
			}
			r.Callbacks = c
		default:
			return nil, d.Errf("unrecognized subdirective '%s'", d.Val())
		}
	}
	return r, nil
}

// parseAdmin reads `admin { require <condition> … }`.
func parseAdmin(d *cf.Dispenser) (*handlers.AdminConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	a := &handlers.AdminConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "require" {
			return nil, d.Errf("unrecognized admin subdirective '%s'", d.Val())
		}
		var toks []cf.Token
		for d.NextArg() {
			toks = append(toks, d.Token())
		}
		if len(toks) == 0 {
			return nil, d.Errf("admin require needs a condition")
		}
		c, err := parseCondition(d, toks)
		if err != nil {
			return nil, err
		}
		a.Require = append(a.Require, *c)
	}
	if len(a.Require) == 0 {
		return nil, d.Errf("admin needs at least one `require <condition>`")
	}
	return a, nil
}

// parseStore reads `store memory`, `store bolt [<path>]` or
// `store redis <url> { prefix <prefix> }`.
func parseStore(d *cf.Dispenser) (*handlers.StoreConfig, error) {
	st := &handlers.StoreConfig{}
	if !d.Args(&st.Type) {
		return nil, d.Errf("store needs a type: memory, bolt [<path>] or redis <url>")
	}
	args := d.RemainingArgs()
	switch st.Type {
	case "memory":
		if len(args) != 0 {
			return nil, d.ArgErr()
		}
	case "bolt":
		if len(args) > 1 {
			return nil, d.ArgErr()
		}
		if len(args) == 1 {
			st.Path = args[0]
		}
	case "redis":
		if len(args) != 1 {
			return nil, d.Errf("store redis needs a URL: redis://host:6379/0 or rediss://…")
		}
		st.URL = args[0]
	default:
		return nil, d.Errf("unknown store %q: want memory, bolt or redis", st.Type)
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "prefix":
			if st.Type != "redis" {
				return nil, d.Errf("prefix is a redis store option")
			}
			if err := oneArg(d, &st.Prefix); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("unrecognized store subdirective '%s'", d.Val())
		}
	}
	return st, nil
}

func oneArg(d *cf.Dispenser, dst *string) error {
	if !d.Args(dst) || d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func parseCookie(d *cf.Dispenser) (*handlers.CookieConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := &handlers.CookieConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "name":
			err = oneArg(d, &c.Name)
		case "domain":
			err = oneArg(d, &c.Domain)
		case "same_site":
			if err = oneArg(d, &c.SameSite); err == nil {
				switch c.SameSite {
				case "lax", "strict", "none":
				default:
					err = d.Errf("same_site %q: want lax, strict or none", c.SameSite)
				}
			}
		case "compat":
			if err = oneArg(d, &c.Compat); err == nil && c.Compat != "next-auth-v4" {
				err = d.Errf("compat %q: want next-auth-v4", c.Compat)
			}
		default:
			err = d.Errf("unrecognized cookie subdirective '%s'", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

func parseSession(d *cf.Dispenser) (*handlers.SessionConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	s := &handlers.SessionConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "strategy":
			if err := oneArg(d, &s.Strategy); err != nil {
				return nil, err
			}
			if s.Strategy != "jwt" && s.Strategy != "database" {
				return nil, d.Errf("session strategy %q: want jwt or database", s.Strategy)
			}
		case "max_age", "update_age":
			sub := d.Val()
			var v string
			if err := oneArg(d, &v); err != nil {
				return nil, err
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return nil, d.Errf("session %s %q: %v", sub, v, err)
			}
			if dur <= 0 {
				return nil, d.Errf("session %s %q: must be positive", sub, v)
			}
			if sub == "max_age" {
				s.MaxAge = caddy.Duration(dur)
			} else {
				s.UpdateAge = caddy.Duration(dur)
			}
		default:
			return nil, d.Errf("unrecognized session subdirective '%s'", d.Val())
		}
	}
	return s, nil
}

var providerKinds = []string{"oidc", "github", "google", "oauth2", "credentials", "email"}

func parseProvider(d *cf.Dispenser) (providers.Config, error) {
	var p providers.Config
	if !d.NextArg() {
		return p, d.Errf("provider needs a type: one of %s", strings.Join(providerKinds, ", "))
	}
	p.Kind = d.Val()
	known := false
	for _, k := range providerKinds {
		known = known || k == p.Kind
	}
	if !known {
		return p, d.Errf("unknown provider type %q: want one of %s", p.Kind, strings.Join(providerKinds, ", "))
	}
	if d.NextArg() {
		p.ID = d.Val()
	}
	if d.NextArg() {
		return p, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "name":
			err = oneArg(d, &p.Name)
		case "client_id":
			err = oneArg(d, &p.ClientID)
		case "client_secret":
			err = oneArg(d, &p.ClientSecret)
		case "issuer":
			err = oneArg(d, &p.Issuer)
		case "scopes":
			p.Scopes = d.RemainingArgs()
			if len(p.Scopes) == 0 {
				err = d.ArgErr()
			}
		case "auth_url":
			err = oneArg(d, &p.AuthURL)
		case "token_url":
			err = oneArg(d, &p.TokenURL)
		case "userinfo_url":
			err = oneArg(d, &p.UserinfoURL)
		case "api_url":
			err = oneArg(d, &p.APIURL)
		case "users_file":
			err = oneArg(d, &p.UsersFile)
		case "authorize_url":
			err = oneArg(d, &p.AuthorizeURL)
		case "allow_email_linking":
			if d.NextArg() {
				err = d.ArgErr()
			}
			p.AllowEmailLinking = true
		case "mailer":
			err = oneArg(d, &p.Mailer)
		case "from":
			err = oneArg(d, &p.From)
		case "subject":
			err = oneArg(d, &p.Subject)
		case "template":
			err = oneArg(d, &p.Template)
		case "timeout", "max_age":
			sub := d.Val()
			var v string
			if err = oneArg(d, &v); err != nil {
				break
			}
			dur, perr := caddy.ParseDuration(v)
			if perr != nil || dur <= 0 {
				err = d.Errf("provider %s %q: want a positive duration such as 10m", sub, v)
				break
			}
			if sub == "timeout" {
				p.Timeout = caddy.Duration(dur)
			} else {
				p.MaxAge = caddy.Duration(dur)
			}
		default:
			err = d.Errf("unrecognized provider subdirective '%s'", d.Val())
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

func parseCallbacks(d *cf.Dispenser) (*callbacks.Config, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := &callbacks.Config{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var dst *[]callbacks.Rule
		switch d.Val() {
		case "sign_in":
			dst = &c.SignIn
		case "redirect":
			dst = &c.Redirect
		case "jwt":
			dst = &c.JWT
		case "session":
			dst = &c.Session
		default:
			return nil, d.Errf("unrecognized callback '%s': want sign_in, redirect, jwt or session", d.Val())
		}
		callback := d.Val()
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		for inner := d.Nesting(); d.NextBlock(inner); {
			r, err := parseRule(d, callback)
			if err != nil {
				return nil, err
			}
			*dst = append(*dst, r)
		}
	}
	return c, nil
}

// ruleActions lists each callback's rule actions with how many arguments they take
// before the condition; -1 takes every argument up to it (allow_origin's globs).
// Counting matters: in "set email `profile.email`", email is the claim to set,
// not a shorthand condition, and the backtick expression is an argument.
var ruleActions = map[string]map[string]int{
	"sign_in":  {"allow": 0, "deny": 0, "redirect": 1, "webhook": 1, "default": 1},
	"redirect": {"allow_origin": -1, "allow": 0, "deny": 0, "rewrite": 1, "webhook": 1},
	"jwt":      {"set": 2, "unset": 1, "refresh_access_token": 0, "webhook": 1},
	"session":  {"set": 2, "unset": 1, "webhook": 1},
}

// parseRule reads one rule line of a callback block: the action and its
// arguments, then an optional condition.
func parseRule(d *cf.Dispenser, callback string) (callbacks.Rule, error) {
	r := callbacks.Rule{Action: d.Val(), Source: d.File() + ":" + strconv.Itoa(d.Line())}
	n, ok := ruleActions[callback][r.Action]
	if !ok {
		actions := make([]string, 0, len(ruleActions[callback]))
		for a := range ruleActions[callback] {
			actions = append(actions, a)
		}
		slices.Sort(actions)
		return r, d.Errf("unrecognized %s rule '%s': want one of %s", callback, r.Action, strings.Join(actions, ", "))
	}
	rest := lineTokens(d)
	for len(rest) > 0 && n != 0 {
		if n < 0 && isCondition(rest[0]) {
			break
		}
		r.Args = append(r.Args, rest[0].Text)
		rest, n = rest[1:], n-1
	}
	if n > 0 {
		return r, d.Errf("%s rule '%s' needs %d more argument(s) before its condition", callback, r.Action, n)
	}
	if n < 0 && len(r.Args) == 0 {
		return r, d.Errf("%s rule '%s' needs at least one argument", callback, r.Action)
	}
	if len(rest) > 0 {
		cond, err := parseCondition(d, rest)
		if err != nil {
			return r, err
		}
		r.If = cond
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if r.Action != "webhook" {
			return r, d.Errf("only webhook rules take a block")
		}
		if r.Webhook == nil {
			r.Webhook = &callbacks.WebhookConfig{}
		}
		if err := parseWebhookOption(d, r.Webhook); err != nil {
			return r, err
		}
	}
	return r, nil
}

// parseWebhookOption reads one line of a webhook rule's block.
func parseWebhookOption(d *cf.Dispenser, w *callbacks.WebhookConfig) error {
	switch d.Val() {
	case "secret":
		return oneArg(d, &w.Secret)
	case "timeout":
		var v string
		if err := oneArg(d, &v); err != nil {
			return err
		}
		dur, err := caddy.ParseDuration(v)
		if err != nil || dur <= 0 {
			return d.Errf("webhook timeout %q: want a positive duration such as 3s", v)
		}
		w.Timeout = callbacks.Duration(dur)
	case "header":
		var name, value string
		if !d.Args(&name, &value) || d.NextArg() {
			return d.Errf("webhook header needs a name and a value")
		}
		if w.Headers == nil {
			w.Headers = map[string]string{}
		}
		w.Headers[name] = value
	default:
		return d.Errf("unrecognized webhook subdirective '%s'", d.Val())
	}
	return nil
}

// lineTokens returns the remaining tokens of the current line, up to a block.
func lineTokens(d *cf.Dispenser) []cf.Token {
	var toks []cf.Token
	for d.NextArg() {
		toks = append(toks, d.Token())
	}
	return toks
}

// isCondition reports whether tok starts a condition: a quoted CEL expression or
// a shorthand keyword.
func isCondition(tok cf.Token) bool {
	switch tok.Text {
	case "email", "domain", "provider", "claim":
		return !tok.Quoted()
	}
	return tok.Quoted()
}

// parseCondition reads a condition from the rest of a line: a quoted CEL
// expression, or a shorthand (email, domain, provider, claim) with its values.
func parseCondition(d *cf.Dispenser, toks []cf.Token) (*callbacks.Condition, error) {
	first := toks[0]
	if !isCondition(first) {
		return nil, d.Errf("unexpected %q: a condition is a `CEL expression` or email, domain, provider or claim with values", first.Text)
	}
	if first.Quoted() {
		if len(toks) > 1 {
			return nil, d.Errf("unexpected %q after the condition", toks[1].Text)
		}
		return &callbacks.Condition{Expr: first.Text}, nil
	}
	c := &callbacks.Condition{Kind: first.Text}
	for _, t := range toks[1:] {
		c.Values = append(c.Values, t.Text)
	}
	if c.Kind == "claim" {
		if len(c.Values) < 2 {
			return nil, d.Errf("claim condition needs a path and at least one value")
		}
		c.Path, c.Values = c.Values[0], c.Values[1:]
	}
	if len(c.Values) == 0 {
		return nil, d.Errf("%s condition needs at least one value", c.Kind)
	}
	return c, nil
}

// ParseHandler parses the `authgate` site directive. Syntax:
//
//	authgate [<matcher>] [<realm>] {
//		require <condition>
//		header <name> <expression>
//		assertion [<header>]
//		unauthenticated redirect|status <code>
//	}
func ParseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	hd, err := parseHandler(h)
	if err != nil {
		return nil, err
	}
	return hd, nil
}

// ParseDirective is the `authgate` directive: ParseHandler's handler in a route
// with the directive's matcher. With a matcher, a second route sends the realm's
// endpoints (<base_path>/*) to the same handler, grouped with the first so that
// one of them runs: `authgate @private` then guards what the matcher matches,
// and sign-in keeps working even where the matcher leaves /.auth/* out.
func ParseDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	hd, err := parseHandler(h)
	if err != nil {
		return nil, err
	}
	guard := h.NewRoute(matcherSet, hd)
	if matcherSet == nil {
		return guard, nil
	}
	endpoints := h.NewRoute(caddy.ModuleMap{
		"path": caddyconfig.JSON(caddyhttp.MatchPath{basePath(h, hd.Realm) + "/*"}, nil),
	}, hd)
	vals := append(endpoints, guard...)
	h.GroupRoutes(vals)
	return vals, nil
}

// basePath is the base_path of the realm named in the global options, or the default.
func basePath(h httpcaddyfile.Helper, realm string) string {
	if realm == "" {
		realm = handlers.DefaultRealm
	}
	if opt, ok := h.Option("authgate").(httpcaddyfile.App); ok {
		var app handlers.App
		if json.Unmarshal(opt.Value, &app) == nil {
			if r := app.Realms[realm]; r != nil && r.BasePath != "" {
				return strings.TrimSuffix(r.BasePath, "/")
			}
		}
	}
	return "/.auth"
}

func parseHandler(h httpcaddyfile.Helper) (*handlers.Handler, error) {
	h.Next() // directive name
	var hd handlers.Handler
	if h.NextArg() {
		hd.Realm = h.Val()
	}
	if h.NextArg() {
		return nil, h.ArgErr()
	}
	for h.NextBlock(0) {
		switch h.Val() {
		case "require":
			toks := lineTokens(h.Dispenser)
			if len(toks) == 0 {
				return nil, h.Errf("require needs a condition: require `\"admins\" in token.groups` or a shorthand such as domain example.com")
			}
			c, err := parseCondition(h.Dispenser, toks)
			if err != nil {
				return nil, err
			}
			hd.Require = append(hd.Require, *c)
		case "header":
			args := h.RemainingArgs()
			if len(args) != 2 {
				return nil, h.Errf("header needs a name and an expression: header X-User `session.user.email`")
			}
			if args[0] == "" || strings.ContainsAny(args[0], " :\t") {
				return nil, h.Errf("header %q: invalid header name", args[0])
			}
			hd.Headers = append(hd.Headers, handlers.HeaderConfig{Name: args[0], Expr: args[1]})
		case "assertion":
			args := h.RemainingArgs()
			switch len(args) {
			case 0:
				hd.Assertion = "X-Authgate-Assertion"
			case 1:
				hd.Assertion = args[0]
			default:
				return nil, h.Errf("assertion takes at most a header name: assertion [X-Authgate-Assertion]")
			}
		case "unauthenticated":
			args := h.RemainingArgs()
			switch {
			case len(args) == 1 && args[0] == "redirect":
				hd.UnauthenticatedStatus = 0
			case len(args) == 2 && args[0] == "status":
				code, err := strconv.Atoi(args[1])
				if err != nil || code < 400 || code > 499 {
					return nil, h.Errf("unauthenticated status %q: want a 4xx status such as 401", args[1])
				}
				hd.UnauthenticatedStatus = code
			default:
				return nil, h.Errf("unauthenticated: want `redirect` or `status <code>`")
			}
		default:
			return nil, h.Errf("unrecognized subdirective '%s'", h.Val())
		}
	}
	return &hd, nil
}
