package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/providers"
	"github.com/authgate/caddy-authgate/session"
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
			err = checkStore(cfg.Store)
		}
		if err != nil {
			if name == DefaultRealm {
				return err
			}
			return fmt.Errorf("realm %q: %v", name, err)
		}
		a.realms[name] = rl
	}
	return nil
}

// Start opens the realms' stores. It is not done at provision, so that
// `caddy validate` does not wait on the bolt file a running Caddy holds; on a
// reload the new config shares the open file with the old one.
func (a *App) Start() error {
	for name, rl := range a.realms {
		st, err := openStore(a.ctx, name, a.Realms[name].Store, a.dataDir)
		if err != nil {
			return fmt.Errorf("realm %q: store: %v", name, err)
		}
		rl.store = st
		if err := rl.startRevocations(a.ctx); err != nil {
			return fmt.Errorf("realm %q: loading revocations: %v", name, err)
		}
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
		if rl.store != nil {
			if err := rl.store.Close(); err != nil {
				errs = append(errs, fmt.Errorf("realm %q: closing the store: %v", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkStore checks a store configuration without opening it.
func checkStore(cfg *StoreConfig) error {
	if cfg == nil {
		return nil
	}
	switch cfg.Type {
	case "", "bolt", "memory":
		return nil
	case "redis":
		u, err := url.Parse(caddy.NewReplacer().ReplaceAll(cfg.URL, ""))
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			return fmt.Errorf("store redis: want a URL such as redis://host:port/db, rediss://… or unix://…")
		}
		return nil
	}
	return fmt.Errorf("store: unknown type %q: want bolt, memory or redis", cfg.Type)
}

// redisLogger sends go-redis's own messages (reconnects, pool errors) to Caddy's
// log instead of standard error.
// It asks for Caddy's logger on each message: the logger of the config that
// happened to open the first Redis store may be gone after a reload.
type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("authgate.redis").Warn(fmt.Sprintf(format, v...))
}

var redisLogOnce sync.Once

// openStore opens the realm's store: by default a bbolt file in Caddy's storage
// directory, shared with the previous config during a reload.
func openStore(ctx context.Context, realm string, cfg *StoreConfig, dataDir string) (store.Store, error) {
	if cfg == nil {
		cfg = &StoreConfig{}
	}
	repl := caddy.NewReplacer()
	switch cfg.Type {
	case "", "bolt":
		path := repl.ReplaceAll(cfg.Path, "")
		if path == "" {
			path = store.BoltPath(dataDir, realm)
		}
		return store.SharedBolt(path)
	case "memory":
		return store.NewMemory(), nil
	case "redis":
		redisLogOnce.Do(func() { redis.SetLogger(redisLogger{}) })
		prefix := cfg.Prefix
		if prefix == "" {
			prefix = "authgate:" + realm + ":"
		}
		return store.NewRedis(ctx, repl.ReplaceAll(cfg.URL, ""), store.RedisOptions{Prefix: prefix})
	default:
		return nil, fmt.Errorf("unknown store type %q: want bolt, memory or redis", cfg.Type)
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

// realm is a compiled Realm.
type realm struct {
	name       string
	basePath   string
	baseURL    *url.URL // nil: each request's own origin
	cookieName string   // without prefix
	cookie     session.CookieOptions
	csrf       *session.CSRF
	asserter   *session.Asserter
	cache      *tokenCache
	revoked    *revocations
	refreshes  singleflight.Group
	admin      []*callbacks.Check
	// database: sessions live in the store, the cookie holds their id.
	database bool
	// cookie names by whether the request is secure (with their prefixes)
	sessionNames, csrfNames, stateNames [2]string
	store                               store.Store
	// tokenSecrets bind stored email token hashes to the realm's secrets: the
	// first for new links, all for links sent before a rotation.
	tokenSecrets []string
	// codecs and stateCodecs are indexed by whether the request is secure: the
	// cookie name, and so the key derivation salt, differs.
	codecs      [2]*session.Codec
	stateCodecs [2]*session.Codec
	providers   []providers.Provider
	byID        map[string]providers.Provider
	cb          *callbacks.Callbacks
	maxAge      time.Duration
	updateAge   time.Duration
	logger      *zap.Logger
	now         func() time.Time
}

const (
	defaultCookieName = "authgate.session-token"
	csrfCookieName    = "authgate.csrf-token"
	stateCookieName   = "authgate.oauth-state"
	defaultMaxAge     = 30 * 24 * time.Hour
	defaultUpdateAge  = 24 * time.Hour
	minSecretLen      = 32
)

func newRealm(ctx context.Context, name string, cfg *Realm, logger *zap.Logger) (*realm, error) {
	repl := caddy.NewReplacer()
	rl := &realm{name: name, logger: logger, now: time.Now, byID: map[string]providers.Provider{}}

	secrets := make([]string, 0, len(cfg.Secrets))
	for i, s := range cfg.Secrets {
		s = repl.ReplaceAll(s, "")
		if len(s) < minSecretLen {
			what := "secret"
			if i > 0 {
				what = fmt.Sprintf("secret #%d", i+1)
			}
			if s == "" {
				return nil, fmt.Errorf("%s is empty (is its environment variable set?); generate one with `openssl rand -base64 33`", what)
			}
			return nil, fmt.Errorf("%s is too short: use at least %d random characters (`openssl rand -base64 33`)", what, minSecretLen)
		}
		secrets = append(secrets, s)
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("missing secret: add `secret {env.AUTHGATE_SECRET}` with a random value of at least %d characters", minSecretLen)
	}

	rl.basePath = "/.auth"
	if cfg.BasePath != "" {
		bp := strings.TrimSuffix(cfg.BasePath, "/")
		if !strings.HasPrefix(bp, "/") || strings.ContainsAny(bp, "?#*{} \\") || bp == "" {
			return nil, fmt.Errorf("base_path %q: want an absolute path such as /.auth", cfg.BasePath)
		}
		rl.basePath = bp
	}

	if cfg.URL != "" {
		u, err := url.Parse(repl.ReplaceAll(cfg.URL, ""))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("url %q: want an origin such as https://auth.example.com", cfg.URL)
		}
		rl.baseURL = &url.URL{Scheme: u.Scheme, Host: u.Host}
	}

	rl.cookieName = defaultCookieName
	rl.cookie = session.CookieOptions{Path: "/", SameSite: http.SameSiteLaxMode}
	format := session.FormatAuthJS
	if c := cfg.Cookie; c != nil {
		if c.Name != "" {
			if strings.ContainsAny(c.Name, " ;,=\t\"") || strings.HasPrefix(c.Name, "__") {
				return nil, fmt.Errorf("cookie name %q: want a plain cookie name (the __Secure- prefix is added on https)", c.Name)
			}
			rl.cookieName = c.Name
		}
		rl.cookie.Domain = c.Domain
		switch strings.ToLower(c.SameSite) {
		case "", "lax":
		case "strict":
			rl.cookie.SameSite = http.SameSiteStrictMode
		case "none":
			rl.cookie.SameSite = http.SameSiteNoneMode
		default:
			return nil, fmt.Errorf("cookie same_site %q: want lax, strict or none", c.SameSite)
		}
		switch c.Compat {
		case "":
		case "next-auth-v4":
			format = session.FormatNextAuthV4
		default:
			return nil, fmt.Errorf("cookie compat %q: want next-auth-v4", c.Compat)
		}
	}

	rl.maxAge, rl.updateAge = defaultMaxAge, defaultUpdateAge
	if s := cfg.Session; s != nil {
		switch s.Strategy {
		case "", "jwt":
		case "database":
			rl.database = true
		default:
			return nil, fmt.Errorf("session strategy %q: want jwt or database", s.Strategy)
		}
		if s.MaxAge < 0 || s.UpdateAge < 0 {
			return nil, fmt.Errorf("session max_age and update_age must not be negative")
		}
		if s.MaxAge > 0 {
			rl.maxAge = time.Duration(s.MaxAge)
		}
		if s.UpdateAge > 0 {
			rl.updateAge = time.Duration(s.UpdateAge)
		}
		if rl.maxAge < time.Minute {
			return nil, fmt.Errorf("session max_age %s is too short: use at least a minute", rl.maxAge)
		}
	}

	for i, secure := range []bool{false, true} {
		var err error
		if rl.codecs[i], err = session.NewCodec(secrets, session.SecureName(rl.cookieName, secure), format); err != nil {
			return nil, fmt.Errorf("session codec: %v", err)
		}
		if rl.stateCodecs[i], err = session.NewCodec(secrets, session.HostName(stateCookieName, secure), session.FormatAuthJS); err != nil {
			return nil, fmt.Errorf("state codec: %v", err)
		}
	}
	asserter, err := session.NewAsserter(secrets, name)
	if err != nil {
		return nil, fmt.Errorf("assertion keys: %v", err)
	}
	rl.asserter = asserter
	rl.csrf = session.NewCSRF(secrets[0])
	rl.cache = newTokenCache(defaultTokenCacheSize)
	rl.revoked = newRevocations()
	for i, secure := range []bool{false, true} {
		rl.sessionNames[i] = session.SecureName(rl.cookieName, secure)
		rl.csrfNames[i] = session.HostName(csrfCookieName, secure)
		rl.stateNames[i] = session.HostName(stateCookieName, secure)
	}
	rl.tokenSecrets = secrets

	client := &http.Client{Timeout: 20 * time.Second}
	if len(cfg.Providers) == 0 {
		return nil, fmt.Errorf("no provider: add at least one `provider <type> { … }`")
	}
	for _, pc := range cfg.Providers {
		for _, f := range []*string{&pc.ClientSecret, &pc.ClientID, &pc.Mailer, &pc.AuthorizeURL, &pc.UsersFile} {
			*f = repl.ReplaceAll(*f, "")
		}
		p, err := providers.New(ctx, pc, client, logger)
		if err != nil {
			return nil, err
		}
		if _, dup := rl.byID[p.ID()]; dup {
			return nil, fmt.Errorf("two providers have the id %q: give one an id (`provider %s <id>`)", p.ID(), pc.Kind)
		}
		if p.Type() == providers.TypeEmail && rl.baseURL == nil {
			// Links are built from the site's origin. Taken from the request, a
			// forged Host header would mail the victim a working token on the
			// attacker's host (on a site that answers any host).
			return nil, fmt.Errorf("provider %q: the email provider needs the realm's `url` (such as `url https://app.example.com`): sign-in links are built from it, never from the request's Host header", p.ID())
		}
		rl.byID[p.ID()] = p
		rl.providers = append(rl.providers, p)
	}

	var cbcfg callbacks.Config
	if cfg.Callbacks != nil {
		cbcfg = *cfg.Callbacks
	}
	// Webhook secrets and headers may come from the environment ({env.X}).
	for _, rules := range [][]callbacks.Rule{cbcfg.SignIn, cbcfg.Redirect, cbcfg.JWT, cbcfg.Session} {
		for i, r := range rules {
			if r.Webhook == nil {
				continue
			}
			wh := *r.Webhook
			wh.Secret = repl.ReplaceAll(wh.Secret, "")
			wh.Headers = make(map[string]string, len(r.Webhook.Headers))
			for k, v := range r.Webhook.Headers {
				wh.Headers[k] = repl.ReplaceAll(v, "")
			}
			rules[i].Webhook = &wh
		}
	}
	cb, err := callbacks.Compile(cbcfg)
	if err != nil {
		return nil, err
	}
	rl.cb = cb
	if rl.admin, err = compileAdmin(cfg.Admin); err != nil {
		return nil, err
	}
	return rl, nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
