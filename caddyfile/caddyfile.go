// Package caddyfile turns authgate's Caddyfile syntax — the `authgate` global
// option and the `authgate` site directive — into the JSON of the authgate app
// and handler.
package caddyfile

import (
	"encoding/json"
	"github.com/dustin/go-humanize"
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
	"github.com/authgate/caddy-authgate/session"
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
//			bearer [<audience>…]
//			sign_out_at_provider
//			users_file <path>
//			authorize_url <url>
//			timeout <duration>
//			failure_window <duration>
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
//		theme { … }
//		pages { … }
//		templates <directory>
//	}
//
// theme, pages and templates are parsed in operator.go. A rule is
// `<action> [<argument>…] [<condition>]`; a condition is a CEL
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
		case "theme", "pages", "templates":
			if err := parseOperatorOption(d, r); err != nil {
				return nil, err
			}
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
		src := source(d)
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
		c.Source = src
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

// checkedArg reads the line's one argument into dst and checks it with parse,
// the function provisioning checks it with too; block prefixes parse's error
// ("cookie same_site …"), as provisioning's.
func checkedArg[T any](d *cf.Dispenser, dst *string, block string, parse func(string) (T, error)) error {
	if err := oneArg(d, dst); err != nil {
		return err
	}
	if _, err := parse(*dst); err != nil {
		return d.Errf("%s %v", block, err)
	}
	return nil
}

// durationArg reads the line's one argument as a positive duration; what names
// the option in errors ("session max_age").
func durationArg(d *cf.Dispenser, what string) (caddy.Duration, error) {
	var v string
	if err := oneArg(d, &v); err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		// Go's own message ("unknown unit \"hays\"") does not say what is wanted.
		return 0, d.Errf("%s %q: use a duration such as 720h (units: d, h, m, s)", what, v)
	}
	if dur <= 0 {
		return 0, d.Errf("%s %q: must be positive, such as 720h", what, v)
	}
	return caddy.Duration(dur), nil
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
			err = checkedArg(d, &c.SameSite, "cookie", session.ParseSameSite)
		case "compat":
			err = checkedArg(d, &c.Compat, "cookie", session.ParseCompat)
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
		var err error
		switch d.Val() {
		case "strategy":
			err = checkedArg(d, &s.Strategy, "session", session.ParseStrategy)
		case "max_age":
			s.MaxAge, err = durationArg(d, "session max_age")
		case "update_age":
			s.UpdateAge, err = durationArg(d, "session update_age")
		case "cache_size":
			s.CacheSize, err = sizeArg(d, "session cache_size")
		default:
			err = d.Errf("unrecognized session subdirective '%s'", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// sizeArg reads a size in bytes such as 64MiB or 100MB.
func sizeArg(d *cf.Dispenser, what string) (int64, error) {
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := humanize.ParseBytes(d.Val())
	if err != nil || n == 0 || n > 1<<40 {
		return 0, d.Errf("%s %q: want a size such as 64MiB", what, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return int64(n), nil
}

func parseProvider(d *cf.Dispenser) (providers.Config, error) {
	var p providers.Config
	if !d.NextArg() {
		return p, d.Errf("provider needs a type: one of %s", strings.Join(providers.Kinds, ", "))
	}
	p.Kind = d.Val()
	if !slices.Contains(providers.Kinds, p.Kind) {
		return p, d.Errf("unknown provider type %q: want one of %s", p.Kind, strings.Join(providers.Kinds, ", "))
	}
	if d.NextArg() {
		p.ID = d.Val()
	}
	if d.NextArg() {
		return p, d.ArgErr()
	}
	strs := providerStrings(&p)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := parseProviderOption(d, &p, strs); err != nil {
			return p, err
		}
	}
	return p, nil
}

// providerStrings are p's subdirectives that take one string.
func providerStrings(p *providers.Config) map[string]*string {
	return map[string]*string{
		"name":          &p.Name,
		"client_id":     &p.ClientID,
		"client_secret": &p.ClientSecret,
		"issuer":        &p.Issuer,
		"auth_url":      &p.AuthURL,
		"token_url":     &p.TokenURL,
		"userinfo_url":  &p.UserinfoURL,
		"api_url":       &p.APIURL,
		"users_file":    &p.UsersFile,
		"authorize_url": &p.AuthorizeURL,
		"mailer":        &p.Mailer,
		"from":          &p.From,
		"subject":       &p.Subject,
		"template":      &p.Template,
	}
}

// parseProviderOption reads one line of a provider block; strs are p's string
// options (providerStrings).
func parseProviderOption(d *cf.Dispenser, p *providers.Config, strs map[string]*string) error {
	if dst, ok := strs[d.Val()]; ok {
		return oneArg(d, dst)
	}
	var err error
	switch d.Val() {
	case "scopes":
		if p.Scopes = d.RemainingArgs(); len(p.Scopes) == 0 {
			err = d.ArgErr()
		}
	case "allow_email_linking":
		if d.NextArg() {
			err = d.ArgErr()
		}
		p.AllowEmailLinking = true
	case "bearer":
		p.Bearer, p.BearerAudiences = true, d.RemainingArgs()
	case "sign_out_at_provider":
		if d.NextArg() {
			err = d.ArgErr()
		}
		p.SignOutAtProvider = true
	case "timeout":
		p.Timeout, err = durationArg(d, "provider timeout")
	case "max_age":
		p.MaxAge, err = durationArg(d, "provider max_age")
	case "failure_window":
		p.FailureWindow, err = durationArg(d, "provider failure_window")
	default:
		err = d.Errf("unrecognized provider subdirective '%s'", d.Val())
	}
	return err
}

func parseCallbacks(d *cf.Dispenser) (*callbacks.Config, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := &callbacks.Config{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var dst *[]callbacks.Rule
		switch d.Val() {
		case callbacks.KindSignIn:
			dst = &c.SignIn
		case callbacks.KindRedirect:
			dst = &c.Redirect
		case callbacks.KindJWT:
			dst = &c.JWT
		case callbacks.KindSession:
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

// parseRule reads one rule line of a callback block: the action and its
// arguments, then an optional condition. callbacks.Actions says how many
// arguments each action takes: in "set email `profile.email`", email is the
// claim to set, not a shorthand condition, and the backtick expression is an
// argument.
func parseRule(d *cf.Dispenser, callback string) (callbacks.Rule, error) {
	r := callbacks.Rule{Action: d.Val(), Source: source(d)}
	action, ok := callbacks.LookupAction(callback, r.Action)
	if !ok {
		var names []string
		for _, a := range callbacks.Actions(callback) {
			names = append(names, a.Name)
		}
		slices.Sort(names)
		return r, d.Errf("unrecognized %s rule '%s': want one of %s", callback, r.Action, strings.Join(names, ", "))
	}
	n := action.Args
	rest := lineTokens(d)
	for len(rest) > 0 && n != 0 {
		if n == callbacks.AnyArgs && isCondition(rest[0]) {
			break
		}
		r.Args = append(r.Args, rest[0].Text)
		rest, n = rest[1:], n-1
	}
	if n > 0 {
		return r, d.Errf("%s rule '%s' needs %d more argument(s) before its condition", callback, r.Action, n)
	}
	if n == callbacks.AnyArgs && len(r.Args) == 0 {
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
		if !action.Block {
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
		if err := callbacks.CheckHeaderName(name); err != nil {
			return d.Errf("webhook %v", err)
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
	if callbacks.IsShorthand(tok.Text) {
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

// ParseDirective parses the `authgate` site directive. Syntax:
//
//	authgate [<matcher>] [<realm>] {
//		require <condition>
//		header <name> <expression>
//		assertion [<header>]
//		unauthenticated redirect|status <code>
//		allow_ambiguous_paths
//	}
//
// The handler goes in a route with the directive's matcher. With a matcher, a
// second route sends the realm's endpoints (<base_path>/*) to the same handler,
// grouped with the first so that one of them runs: `authgate @private` then
// guards what the matcher matches, and sign-in keeps working even where the
// matcher leaves /.auth/* out.
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
	// The routes the matcher leaves public still must not carry a forged
	// identity to the upstream, nor an ambiguous path past the matcher.
	shield := &handlers.Handler{Realm: hd.Realm, Headers: hd.Headers, Assertion: hd.Assertion,
		AllowAmbiguousPaths: hd.AllowAmbiguousPaths, Passive: true}
	return append(h.NewRoute(nil, shield), vals...), nil
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
		if err := parseHandlerOption(h, &hd); err != nil {
			return nil, err
		}
	}
	return &hd, nil
}

// parseHandlerOption reads one line of the site directive's block.
func parseHandlerOption(h httpcaddyfile.Helper, hd *handlers.Handler) error {
	var err error
	switch h.Val() {
	case "require":
		var c *callbacks.Condition
		if c, err = parseRequire(h.Dispenser); err == nil {
			hd.Require = append(hd.Require, *c)
		}
	case "header":
		var hc handlers.HeaderConfig
		if hc, err = parseHeader(h.Dispenser); err == nil {
			hd.Headers = append(hd.Headers, hc)
		}
	case "assertion":
		hd.Assertion, err = parseAssertion(h.Dispenser)
	case "unauthenticated":
		hd.UnauthenticatedStatus, err = parseUnauthenticated(h.Dispenser)
	case "allow_ambiguous_paths":
		if h.NextArg() {
			return h.ArgErr()
		}
		hd.AllowAmbiguousPaths = true
	default:
		err = h.Errf("unrecognized subdirective '%s'", h.Val())
	}
	return err
}

// parseRequire reads `require <condition>`.
func parseRequire(d *cf.Dispenser) (*callbacks.Condition, error) {
	src := source(d)
	toks := lineTokens(d)
	if len(toks) == 0 {
		return nil, d.Errf("require needs a condition: require `\"admins\" in token.groups` or a shorthand such as domain example.com")
	}
	c, err := parseCondition(d, toks)
	if err != nil {
		return nil, err
	}
	c.Source = src
	return c, nil
}

// source is where the dispenser's line was written ("Caddyfile:12"), for the
// errors and logs of the rule on it.
func source(d *cf.Dispenser) string {
	return d.File() + ":" + strconv.Itoa(d.Line())
}

// parseHeader reads `header <name> <expression>`.
func parseHeader(d *cf.Dispenser) (handlers.HeaderConfig, error) {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return handlers.HeaderConfig{}, d.Errf("header needs a name and an expression: header X-User `session.user.email`")
	}
	if err := callbacks.CheckHeaderName(args[0]); err != nil {
		return handlers.HeaderConfig{}, d.WrapErr(err)
	}
	return handlers.HeaderConfig{Name: args[0], Expr: args[1], Source: source(d)}, nil
}

// parseAssertion reads `assertion [<header>]`.
func parseAssertion(d *cf.Dispenser) (string, error) {
	args := d.RemainingArgs()
	switch len(args) {
	case 0:
		return "X-Authgate-Assertion", nil
	case 1:
		// Empty means no assertion, as in JSON.
		if args[0] != "" {
			if err := callbacks.CheckHeaderName(args[0]); err != nil {
				return "", d.Errf("assertion %v", err)
			}
		}
		return args[0], nil
	}
	return "", d.Errf("assertion takes at most a header name: assertion [X-Authgate-Assertion]")
}

// parseUnauthenticated reads `unauthenticated redirect|status <code>`: 0 for
// redirect, else the status.
func parseUnauthenticated(d *cf.Dispenser) (int, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "redirect":
		return 0, nil
	case len(args) == 2 && args[0] == "status":
		code, err := strconv.Atoi(args[1])
		if err == nil {
			err = handlers.CheckUnauthenticatedStatus(code)
		}
		if err != nil {
			return 0, d.Errf("unauthenticated status %q: want a 4xx status such as 401", args[1])
		}
		return code, nil
	}
	return 0, d.Errf("unauthenticated: want `redirect` or `status <code>`")
}
