// Package handlers is authgate's HTTP side: the `authgate` app with its realms,
// the guard that lets only signed-in users through to the upstream, and the
// /.auth/* sign-in endpoints with their HTML pages.
//
// Where each job lives:
//
//	app.go                 the app: realm configuration, provision, start, stores
//	realm.go               a compiled realm and its parts (origin, sessions, providers, …)
//	guard.go               the site handler: identity headers, require, the upstream's view
//	sessions.go            the one place a session is read, issued, renewed and ended
//	sessions_cache.go      decoded tokens and what is computed from them, once per token
//	sessions_revocation.go revocations and sign-outs on every instance
//	sessions_refresh.go    refreshing the provider's access token (single flight)
//	routes.go              the table of endpoints and the methods each allows
//	signin.go              the OAuth and credentials sign-in flows, sign-out
//	email.go               the email link flow
//	api.go                 the JSON endpoints: session, csrf, providers, verify, jwks
//	admin.go               session administration
//	pages.go               the HTML pages: theme, the operator's own pages, templates
//	metrics.go             the metrics in Caddy's registry
//	events.go              the events emitted through Caddy's events app
//	health.go              /health: the store and the providers' discovery
//	forms.go               POST bodies and the CSRF double-submit check
//	errors.go              the Auth.js error codes: status and text
//	request.go             request helpers: rule variables, client IP, JSON answers
package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/providers"
	"github.com/authgate/caddy-authgate/store"
)

// DefaultRealm is the name of the realm an unnamed `authgate { … }` global option defines.
const DefaultRealm = "default"

// App is the `authgate` app: the realms that site handlers guard routes with.
type App struct {
	// Realms by name. The unnamed realm of the Caddyfile is "default".
	Realms map[string]*Realm `json:"realms,omitempty"`

	realms  map[string]*realm
	ctx     context.Context
	cancel  context.CancelFunc
	dataDir string
}

// Realm holds the secrets, providers, session settings and callbacks that one or
// more sites sign users in with.
type Realm struct {
	// Secrets encrypt the session token. The first encrypts; all decrypt, so a
	// secret can be rotated by putting the new one first. Placeholders such as
	// {env.AUTHGATE_SECRET} are expanded. Required; each at least 32 characters.
	Secrets []string `json:"secrets,omitempty"`

	// BasePath is where the sign-in endpoints live. Default: /.auth.
	BasePath string `json:"base_path,omitempty"`

	// URL is the canonical origin of the site (scheme and host), used for OAuth
	// redirect URIs and redirect checks. Default: the origin of each request.
	URL string `json:"url,omitempty"`

	// Cookie configures the session cookie.
	Cookie *CookieConfig `json:"cookie,omitempty"`

	// Session configures how long sessions last and how they are renewed.
	Session *SessionConfig `json:"session,omitempty"`

	// Store keeps users, linked accounts and email verification tokens. Default:
	// a bbolt file in Caddy's data directory.
	Store *StoreConfig `json:"store,omitempty"`

	// Providers are the sign-in methods offered, in the order the sign-in page lists them.
	Providers []providers.Config `json:"providers,omitempty"`

	// Admin enables the session administration endpoints for users meeting its conditions.
	Admin *AdminConfig `json:"admin,omitempty"`

	// Callbacks are the sign_in, redirect, jwt and session rules.
	Callbacks *callbacks.Config `json:"callbacks,omitempty"`

	// Theme brands the built-in pages: title, logo, colours, colour scheme.
	Theme *ThemeConfig `json:"theme,omitempty"`

	// Pages sends users to the operator's own sign-in, sign-out, error,
	// verify-request and new-user pages instead of the built-in ones.
	Pages *PagesConfig `json:"pages,omitempty"`

	// Templates is a directory of html/template files that replace the built-in
	// layout.html, signin.html, signout.html and message.html, each that it
	// holds. A template that does not parse or run fails provisioning.
	Templates string `json:"templates,omitempty"`
}

// StoreConfig selects where a realm keeps its records.
type StoreConfig struct {
	// Type is bolt (default), memory (lost on restart: for tests) or redis.
	Type string `json:"type,omitempty"`
	// Path of the bolt file. Default: authgate/<realm>.db in Caddy's storage
	// directory (its data directory unless `storage` says otherwise).
	Path string `json:"path,omitempty"`
	// URL of the Redis server: redis://[user:pass@]host:port/db or rediss:// for TLS.
	URL string `json:"url,omitempty"`
	// Prefix of every Redis key. Default: authgate:<realm>:
	Prefix string `json:"prefix,omitempty"`
}

// CookieConfig configures the session cookie.
type CookieConfig struct {
	// Name of the session cookie. Default: authgate.session-token. On https the
	// name gets the __Secure- prefix. Name it authjs.session-token (and share the
	// secret) to share sessions with an Auth.js application.
	Name string `json:"name,omitempty"`

	// Domain shares the cookie, and so one sign-in, across subdomains.
	Domain string `json:"domain,omitempty"`

	// SameSite is lax (default), strict or none.
	SameSite string `json:"same_site,omitempty"`

	// Compat selects another token format: next-auth-v4 reads and writes
	// NextAuth.js v4 session tokens.
	Compat string `json:"compat,omitempty"`
}

// SessionConfig configures sessions.
type SessionConfig struct {
	// Strategy is jwt (default): the session lives in the encrypted cookie.
	Strategy string `json:"strategy,omitempty"`

	// MaxAge is how long a session lasts without activity. Default: 30 days.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// UpdateAge is how old a session token gets before a request renews it,
	// sliding the expiry forward. Default: 24 hours. 0 in JSON means the default.
	UpdateAge caddy.Duration `json:"update_age,omitempty"`

	// CacheSize bounds, in bytes, the in-process cache of decoded sessions
	// (each takes 0.7–3 KB, more with rules). Default: 64 MiB.
	CacheSize int64 `json:"cache_size,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "authgate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision compiles every realm.
func (a *App) Provision(ctx caddy.Context) error {
	logger := ctx.Logger()
	dataDir := caddy.AppDataDir()
	if fs, ok := ctx.Storage().(*certmagic.FileStorage); ok {
		dataDir = fs.Path
	}
	// Background work (OIDC discovery retries) ends when this config is unloaded.
	bg, cancel := context.WithCancel(ctx)
	a.ctx, a.cancel, a.dataDir = bg, cancel, dataDir
	a.realms = make(map[string]*realm, len(a.Realms))
	for name, cfg := range a.Realms {
		if cfg == nil {
			return fmt.Errorf("realm %q: empty configuration", name)
		}
		rl, err := newRealm(bg, name, cfg, logger.With(zap.String("realm", name)))
		if err == nil {
			err = store.CheckOptions(storeOptions(name, cfg.Store, dataDir))
		}
		if err != nil {
			if name == DefaultRealm {
				return err
			}
			return fmt.Errorf("realm %q: %v", name, err)
		}
		a.realms[name] = rl
	}
	if err := checkDistinct(a.realms); err != nil {
		return err
	}
	return a.instrument(ctx)
}

// Start opens the realms' stores. It is not done at provision, so that
// `caddy validate` does not wait on the bolt file a running Caddy holds; on a
// reload the new config shares the open file with the old one.
func (a *App) Start() error {
	for name, rl := range a.realms {
		st, err := store.Open(a.ctx, storeOptions(name, a.Realms[name].Store, a.dataDir))
		if err != nil {
			return fmt.Errorf("realm %q: %v", name, err)
		}
		rl.sessions.store = rl.metrics.countStoreErrors(st)
		if err := rl.sessions.startRevocations(a.ctx); err != nil {
			return fmt.Errorf("realm %q: loading revocations: %v", name, err)
		}
		rl.started.Store(true)
	}
	return nil
}

// Stop does nothing: Cleanup releases the realms' resources once the config is
// unloaded (after the next one started, on a reload).
func (a *App) Stop() error { return nil }

// Cleanup ends background work and closes the stores.
func (a *App) Cleanup() error {
	if a.cancel != nil {
		a.cancel()
	}
	var errs []error
	for name, rl := range a.realms {
		if st := rl.sessions.store; st != nil {
			if err := st.Close(); err != nil {
				errs = append(errs, fmt.Errorf("realm %q: closing the store: %v", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// storeOptions are the realm's store settings, placeholders expanded.
func storeOptions(realm string, cfg *StoreConfig, dataDir string) store.Options {
	if cfg == nil {
		cfg = &StoreConfig{}
	}
	repl := caddy.NewReplacer()
	return store.Options{
		Type: cfg.Type, Path: repl.ReplaceAll(cfg.Path, ""), URL: repl.ReplaceAll(cfg.URL, ""),
		Prefix: cfg.Prefix, Realm: realm, DataDir: dataDir,
	}
}

func (a *App) realm(name string) (*realm, error) {
	if name == "" {
		name = DefaultRealm
	}
	rl, ok := a.realms[name]
	if !ok {
		if name == DefaultRealm {
			return nil, fmt.Errorf("no authgate realm is configured: add an `authgate { secret … provider … }` global option")
		}
		return nil, fmt.Errorf("authgate realm %q is not configured: add an `authgate %s { … }` global option", name, name)
	}
	return rl, nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
