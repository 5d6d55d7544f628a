package handlers

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/providers"
	"github.com/authgate/caddy-authgate/session"
)

// realm is a compiled Realm: its parts, each of which the functions that need
// it take on its own.
type realm struct {
	name      string
	basePath  string
	origin    *origin
	sessions  *sessions
	csrf      *csrfCookie
	state     *stateCookie
	links     linkTokens
	asserter  *session.Asserter
	providers *providerSet
	// bearers are the providers whose bearer tokens are sessions.
	bearers []providers.BearerVerifier
	cb      *callbacks.Callbacks
	admin   []*callbacks.Check
	pages   *pages
	routes  routes
	logger  *zap.Logger
	// metrics and events report what happens (DESIGN.md "Operator surface");
	// nil until the app instruments the realm, and then nothing is reported.
	metrics   *realmMetrics
	events    *emitter
	healthLog healthLog
	// started is set once the app opened the store: Caddy starts its apps in no
	// particular order, so the HTTP server may take requests before that.
	started atomic.Bool
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
	secrets, err := compileSecrets(cfg.Secrets, repl)
	if err != nil {
		return nil, err
	}
	rl := &realm{name: name, logger: logger, links: linkTokens{secrets: secrets}}
	if rl.pages, err = compilePages(cfg, repl, logger); err != nil {
		return nil, err
	}
	if rl.basePath, err = compileBasePath(cfg.BasePath); err != nil {
		return nil, err
	}
	if rl.origin, err = compileOrigin(cfg.URL, cfg.Cookie, repl); err != nil {
		return nil, err
	}
	if rl.sessions, err = newSessions(rl.origin, defaultCookie(name), secrets, cfg.Cookie, cfg.Session, logger); err != nil {
		return nil, err
	}
	rl.state = &stateCookie{origin: rl.origin}
	for i, secure := range []bool{false, true} {
		rl.state.names[i] = session.HostName(stateCookieName, secure)
		if rl.state.codecs[i], err = session.NewCodec(secrets, rl.state.names[i], session.FormatAuthJS); err != nil {
			return nil, fmt.Errorf("state codec: %v", err)
		}
	}
	rl.csrf = &csrfCookie{csrf: session.NewCSRF(secrets[0]), origin: rl.origin,
		names: [2]string{session.HostName(csrfCookieName, false), session.HostName(csrfCookieName, true)}}
	if rl.asserter, err = session.NewAsserter(secrets, name); err != nil {
		return nil, fmt.Errorf("assertion keys: %v", err)
	}
	if rl.providers, err = compileProviders(ctx, cfg.Providers, rl.origin.baseURL != nil, repl, logger); err != nil {
		return nil, err
	}
	if err := checkOpenSignIn(rl.providers, cfg.Callbacks); err != nil {
		return nil, err
	}
	if rl.cb, err = compileCallbacks(cfg.Callbacks, repl, logger); err != nil {
		return nil, err
	}
	for _, p := range rl.providers.list {
		if b, ok := p.(providers.BearerVerifier); ok && b.Bearer() {
			rl.bearers = append(rl.bearers, b)
		}
	}
	rl.sessions.refreshOn = rl.cb.RefreshAccessToken()
	rl.sessions.oauth = rl.providers.oauth
	if rl.admin, err = compileAdmin(cfg.Admin); err != nil {
		return nil, err
	}
	rl.routes = newRoutes(rl)
	return rl, nil
}

// defaultCookie is the session cookie's name unless the realm names one: a
// named realm's own, so that two realms never read each other's sessions.
func defaultCookie(realm string) string {
	if realm == DefaultRealm {
		return defaultCookieName
	}
	return "authgate." + realm + ".session-token"
}

// checkDistinct fails when two realms would accept each other's session
// tokens: the same cookie name (so the same key derivation salt) and a secret
// in common.
func checkDistinct(realms map[string]*realm) error {
	names := make([]string, 0, len(realms))
	for n := range realms {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, a := range names {
		for _, b := range names[i+1:] {
			ra, rb := realms[a], realms[b]
			if ra.sessions.cookieName != rb.sessions.cookieName {
				continue
			}
			for _, sa := range ra.links.secrets {
				if slices.Contains(rb.links.secrets, sa) {
					return fmt.Errorf("realms %q and %q would accept each other's sessions: they share a secret and the cookie name %q; give one its own secret or `cookie { name … }`", a, b, ra.sessions.cookieName)
				}
			}
		}
	}
	return nil
}

// compileSecrets expands and checks the realm's secrets.
func compileSecrets(cfg []string, repl *caddy.Replacer) ([]string, error) {
	secrets := make([]string, 0, len(cfg))
	for i, s := range cfg {
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
	return secrets, nil
}

func compileBasePath(cfg string) (string, error) {
	if cfg == "" {
		return "/.auth", nil
	}
	bp := strings.TrimSuffix(cfg, "/")
	if !strings.HasPrefix(bp, "/") || strings.ContainsAny(bp, "?#*{} \\") || bp == "" {
		return "", fmt.Errorf("base_path %q: want an absolute path such as /.auth", cfg)
	}
	return bp, nil
}

// compileOrigin reads the canonical origin (url) and the cookie attributes.
func compileOrigin(rawURL string, cookie *CookieConfig, repl *caddy.Replacer) (*origin, error) {
	o := &origin{cookie: session.CookieOptions{Path: "/", SameSite: http.SameSiteLaxMode}}
	if rawURL != "" {
		u, err := url.Parse(repl.ReplaceAll(rawURL, ""))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("url %q: want an origin such as https://auth.example.com", rawURL)
		}
		o.baseURL = &url.URL{Scheme: u.Scheme, Host: u.Host}
	}
	if cookie != nil {
		o.cookie.Domain = cookie.Domain
		ss, err := session.ParseSameSite(cookie.SameSite)
		if err != nil {
			return nil, fmt.Errorf("cookie %v", err)
		}
		o.cookie.SameSite = ss
	}
	return o, nil
}

// newSessions compiles the session settings: cookie name and format, strategy, lifetimes.
func newSessions(o *origin, cookieName string, secrets []string, cookie *CookieConfig, cfg *SessionConfig, logger *zap.Logger) (*sessions, error) {
	s := &sessions{
		origin: o, cookieName: cookieName, maxAge: defaultMaxAge, updateAge: defaultUpdateAge,
		revoked: newRevocations(), logger: logger, now: time.Now,
	}
	var cacheSize int64
	if cfg != nil {
		cacheSize = cfg.CacheSize
	}
	if cacheSize < 0 {
		return nil, fmt.Errorf("session cache_size must not be negative")
	}
	s.cache = newTokenCache(cacheSize)
	format := session.FormatAuthJS
	if c := cookie; c != nil {
		if c.Name != "" {
			if strings.ContainsAny(c.Name, " ;,=\t\"") || strings.HasPrefix(c.Name, "__") {
				return nil, fmt.Errorf("cookie name %q: want a plain cookie name (the __Secure- prefix is added on https)", c.Name)
			}
			s.cookieName = c.Name
		}
		var err error
		if format, err = session.ParseCompat(c.Compat); err != nil {
			return nil, fmt.Errorf("cookie %v", err)
		}
	}
	if cfg != nil {
		if err := s.compileLifetimes(cfg); err != nil {
			return nil, err
		}
	}
	for i, secure := range []bool{false, true} {
		s.names[i] = session.SecureName(s.cookieName, secure)
		var err error
		if s.codecs[i], err = session.NewCodec(secrets, s.names[i], format); err != nil {
			return nil, fmt.Errorf("session codec: %v", err)
		}
	}
	return s, nil
}

func (s *sessions) compileLifetimes(cfg *SessionConfig) error {
	strategy, err := session.ParseStrategy(cfg.Strategy)
	if err != nil {
		return fmt.Errorf("session %v", err)
	}
	s.database = strategy == session.StrategyDatabase
	if cfg.MaxAge < 0 || cfg.UpdateAge < 0 {
		return fmt.Errorf("session max_age and update_age must not be negative")
	}
	if cfg.MaxAge > 0 {
		s.maxAge = time.Duration(cfg.MaxAge)
	}
	if cfg.UpdateAge > 0 {
		s.updateAge = time.Duration(cfg.UpdateAge)
	}
	if s.maxAge < time.Minute {
		return fmt.Errorf("session max_age %s is too short: use at least a minute", s.maxAge)
	}
	return nil
}

// compileProviders sets up the sign-in methods. hasURL tells whether the realm
// has a canonical url, which the email provider needs.
func compileProviders(ctx context.Context, cfgs []providers.Config, hasURL bool, repl *caddy.Replacer, logger *zap.Logger) (*providerSet, error) {
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("no provider: add at least one `provider <type> { … }`")
	}
	ps := &providerSet{byID: map[string]providers.Provider{}}
	client := &http.Client{Timeout: 20 * time.Second}
	for _, pc := range cfgs {
		for _, f := range []*string{&pc.ClientSecret, &pc.ClientID, &pc.Mailer, &pc.AuthorizeURL, &pc.UsersFile} {
			*f = repl.ReplaceAll(*f, "")
		}
		p, err := providers.New(ctx, pc, client, logger)
		if err != nil {
			return nil, err
		}
		if _, dup := ps.byID[p.ID()]; dup {
			return nil, fmt.Errorf("two providers have the id %q: give one an id (`provider %s <id>`)", p.ID(), pc.Kind)
		}
		if p.Type() == providers.TypeEmail && !hasURL {
			// Links are built from the site's origin. Taken from the request, a
			// forged Host header would mail the victim a working token on the
			// attacker's host (on a site that answers any host).
			return nil, fmt.Errorf("provider %q: the email provider needs the realm's `url` (such as `url https://app.example.com`): sign-in links are built from it, never from the request's Host header", p.ID())
		}
		ps.byID[p.ID()] = p
		ps.list = append(ps.list, p)
	}
	return ps, nil
}

// checkOpenSignIn fails for a realm that would let anyone with a GitHub,
// Google or email account in: a provider other than credentials, whose users
// are the operator's own, and no sign_in rule. `default allow` says that
// everyone is meant.
func checkOpenSignIn(ps *providerSet, cfg *callbacks.Config) error {
	if cfg != nil && len(cfg.SignIn) > 0 {
		return nil
	}
	for _, p := range ps.list {
		if p.Type() != providers.TypeCredentials {
			return fmt.Errorf("provider %q lets anyone with an account there sign in, and no sign_in rule says who may: add one to `callbacks { sign_in { … } }`, such as `allow domain example.com`, or `default allow` to let everyone in", p.ID())
		}
	}
	return nil
}

// compileCallbacks compiles the rules, expanding placeholders ({env.X}) in
// webhook secrets and headers, and warns of the token and session keys they
// read that nothing sets.
func compileCallbacks(cfg *callbacks.Config, repl *caddy.Replacer, logger *zap.Logger) (*callbacks.Callbacks, error) {
	var cbcfg callbacks.Config
	if cfg != nil {
		cbcfg = *cfg
	}
	cb, err := callbacks.Compile(cbcfg.Expand(func(s string) string { return repl.ReplaceAll(s, "") }))
	if err != nil {
		return nil, err
	}
	callbacks.LogUnknownKeys(logger, cb.UnknownKeys())
	return cb, nil
}
