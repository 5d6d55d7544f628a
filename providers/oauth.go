package providers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// oauthBase holds what every authorization-code provider shares.
type oauthBase struct {
	id, name, typ string
	client        *http.Client
	emailLinking  bool
}

// AllowsEmailLinking reports whether a sign-in may join an existing user with
// the same email address (allow_email_linking).
func (b *oauthBase) AllowsEmailLinking() bool { return b.emailLinking }

func (b *oauthBase) ID() string   { return b.id }
func (b *oauthBase) Name() string { return b.name }
func (b *oauthBase) Type() string { return b.typ }

// ctx carries authgate's HTTP client into golang.org/x/oauth2 and go-oidc.
func (b *oauthBase) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, b.client)
}

// authorizationResponse checks the parameters of an authorization response
// (RFC 6749 section 4.1.2) and returns its code. issuer is the provider's issuer
// identifier, "" when it has none (plain OAuth 2.0); issRequired says that its
// metadata promises the iss parameter.
func authorizationResponse(params url.Values, issuer string, issRequired bool) (code string, err error) {
	// An error response is refused whatever its iss says; checked first, it
	// keeps the provider's error code in the log.
	if e := params.Get("error"); e != "" {
		return "", errors.New("provider answered with an error: " + truncate(e, 100))
	}
	// RFC 9207: a response naming another issuer is a mix-up attack, and so is
	// one without iss from a provider whose metadata promises it.
	if issuer != "" {
		switch iss := params.Get("iss"); {
		case iss != "" && iss != issuer:
			return "", errors.New("authorization response from another issuer: " + truncate(iss, 100))
		case iss == "" && issRequired:
			return "", errors.New("authorization response without iss, which the provider's metadata promises")
		}
	}
	return params.Get("code"), nil
}

// truncate cuts s to at most n bytes, on a rune boundary, and marks the cut:
// the parameters it shortens come from whoever sent the browser back.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// exchange redeems code with the PKCE verifier. A missing verifier is refused
// here, before the provider is asked.
func (b *oauthBase) exchange(ctx context.Context, conf *oauth2.Config, code, verifier string) (*oauth2.Token, error) {
	if code == "" {
		return nil, errors.New("no authorization code")
	}
	if verifier == "" {
		return nil, errors.New("no PKCE code verifier")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tok, err := conf.Exchange(b.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("exchanging the code: %w", err)
	}
	return tok, nil
}

// account describes the linked provider account as Auth.js does.
func (b *oauthBase) account(accountID string, tok *oauth2.Token) map[string]any {
	acc := map[string]any{
		"provider":            b.id,
		"type":                b.typ,
		"provider_account_id": accountID,
		"access_token":        tok.AccessToken,
		"token_type":          tok.TokenType,
	}
	if tok.RefreshToken != "" {
		acc["refresh_token"] = tok.RefreshToken
	}
	if !tok.Expiry.IsZero() {
		acc["expires_at"] = tok.Expiry.Unix()
	}
	if s, ok := tok.Extra("scope").(string); ok && s != "" {
		acc["scope"] = s
	}
	if s, ok := tok.Extra("id_token").(string); ok && s != "" {
		acc["id_token"] = s
	}
	return acc
}

// refresh redeems refreshToken with conf.
func (b *oauthBase) refresh(ctx context.Context, conf *oauth2.Config, refreshToken string) (map[string]any, error) {
	if refreshToken == "" {
		return nil, errors.New("no refresh token")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// An expired token makes the token source go to the token endpoint.
	tok, err := conf.TokenSource(b.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return nil, fmt.Errorf("refreshing the access token: %w", err)
	}
	out := map[string]any{"access_token": tok.AccessToken, "refresh_token": tok.RefreshToken}
	if !tok.Expiry.IsZero() {
		out["expires_at"] = tok.Expiry.Unix()
	}
	return out, nil
}

// oidcProvider signs in with OpenID Connect. Discovery runs in the background and
// is retried, so an identity provider that is down at start does not keep Caddy
// from starting; sign-in through it fails until discovery succeeds.
type oidcProvider struct {
	oauthBase
	issuer string
	// bearer: API clients' bearer tokens are sessions, for these audiences.
	bearer    bool
	audiences []string
	// endSession: sign-out ends the provider's session too.
	endSession   bool
	clientID     string
	clientSecret string
	scopes       []string
	logger       *zap.Logger

	mu      sync.Mutex
	disc    *discovery // nil until discovery succeeds
	lastTry time.Time
	lastErr error
	// ready is set with disc, for Ready, which must not wait for mu while a
	// discovery is under way.
	ready atomic.Bool
}

// discovery is what a successful discovery found; it does not change afterwards.
type discovery struct {
	provider *oidc.Provider
	// verifier checks ID tokens; built once, it shares the provider's cached keys.
	verifier *oidc.IDTokenVerifier
	// anyAudience checks a token's signature, issuer and expiry, not its
	// audience: bearer tokens may be for another audience of the API, and
	// logout tokens are checked by their own rules.
	anyAudience *oidc.IDTokenVerifier
	// issRequired: the metadata has authorization_response_iss_parameter_supported.
	issRequired bool
	// endSession is the end_session_endpoint (RP-initiated logout), if any.
	endSession string
}

const googleIssuer = "https://accounts.google.com"

func newOIDC(ctx context.Context, cfg Config, client *http.Client, logger *zap.Logger) (*oidcProvider, error) {
	name := displayName(cfg, "OpenID Connect")
	if cfg.Kind == "google" {
		if cfg.Issuer == "" {
			cfg.Issuer = googleIssuer
		}
		name = displayName(cfg, "Google")
	}
	if cfg.Issuer == "" {
		return nil, fmt.Errorf("provider %q: missing issuer", cfg.ID)
	}
	if err := checkHTTPURL("provider "+strconv.Quote(cfg.ID)+": issuer", cfg.Issuer); err != nil {
		return nil, err
	}
	if err := requireClient(cfg); err != nil {
		return nil, err
	}
	p := &oidcProvider{
		oauthBase:    oauthBase{id: cfg.ID, name: name, typ: TypeOIDC, client: client, emailLinking: cfg.AllowEmailLinking},
		issuer:       cfg.Issuer,
		bearer:       cfg.Bearer,
		audiences:    append([]string{cfg.ClientID}, cfg.BearerAudiences...),
		endSession:   cfg.SignOutAtProvider,
		clientID:     cfg.ClientID,
		clientSecret: cfg.ClientSecret,
		scopes:       scopesOr(cfg, oidc.ScopeOpenID, "email", "profile"),
		logger:       logger.With(zap.String("provider", cfg.ID), zap.String("issuer", cfg.Issuer)),
	}
	go p.discoverLoop(ctx)
	return p, nil
}

// discoverLoop retries discovery with backoff until it succeeds or ctx ends.
func (p *oidcProvider) discoverLoop(ctx context.Context) {
	delay := time.Second
	for {
		_, err := p.discover(ctx, true)
		if err == nil {
			return
		}
		p.logger.Warn("OpenID Connect discovery failed; retrying", zap.Duration("retry_in", delay), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Minute)
	}
}

// discover returns what discovery found, trying again when the last failure
// is more than a few seconds old (force skips that wait).
func (p *oidcProvider) discover(ctx context.Context, force bool) (*discovery, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.disc != nil {
		return p.disc, nil
	}
	if !force && p.lastErr != nil && time.Since(p.lastTry) < 3*time.Second {
		return nil, p.lastErr
	}
	p.lastTry = time.Now()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(p.ctx(dctx), p.issuer)
	if err != nil {
		p.lastErr = fmt.Errorf("discovery: %w", err)
		return nil, p.lastErr
	}
	var meta struct {
		IssParameter bool `json:"authorization_response_iss_parameter_supported"`
	}
	_ = prov.Claims(&meta)
	var endpoints struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = prov.Claims(&endpoints)
	p.disc = &discovery{
		provider:    prov,
		verifier:    prov.Verifier(&oidc.Config{ClientID: p.clientID}),
		anyAudience: prov.Verifier(&oidc.Config{SkipClientIDCheck: true}),
		issRequired: meta.IssParameter,
		endSession:  endpoints.EndSession,
	}
	p.lastErr = nil
	p.ready.Store(true)
	p.logger.Info("OpenID Connect discovery succeeded")
	return p.disc, nil
}

// Ready reports whether the provider can be used: nil once discovery
// succeeded (health checks ask; discovery's errors are in the log).
func (p *oidcProvider) Ready() error {
	if p.ready.Load() {
		return nil
	}
	return errors.New("OpenID Connect discovery has not succeeded yet")
}

func (p *oidcProvider) config(prov *oidc.Provider, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.clientID,
		ClientSecret: p.clientSecret,
		Endpoint:     prov.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       p.scopes,
	}
}

func (p *oidcProvider) UsesNonce() bool { return true }

func (p *oidcProvider) Refresh(ctx context.Context, refreshToken string) (map[string]any, error) {
	d, err := p.discover(ctx, false)
	if err != nil {
		return nil, err
	}
	return p.refresh(ctx, p.config(d.provider, ""), refreshToken)
}

func (p *oidcProvider) AuthCodeURL(ctx context.Context, redirectURL, state, verifier, nonce string) (string, error) {
	d, err := p.discover(ctx, false)
	if err != nil {
		return "", err
	}
	return p.config(d.provider, redirectURL).AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), nil
}

func (p *oidcProvider) Callback(ctx context.Context, redirectURL string, params url.Values, verifier, nonce string) (*Identity, error) {
	d, err := p.discover(ctx, false)
	if err != nil {
		return nil, err
	}
	code, err := authorizationResponse(params, p.issuer, d.issRequired)
	if err != nil {
		return nil, err
	}
	if nonce == "" {
		return nil, errors.New("no nonce")
	}
	prov := d.provider
	tok, err := p.exchange(ctx, p.config(prov, redirectURL), code, verifier)
	if err != nil {
		return nil, err
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, errors.New("token response has no id_token")
	}
	idt, err := d.verifier.Verify(p.ctx(ctx), rawID)
	if err != nil {
		return nil, fmt.Errorf("verifying the ID token: %w", err)
	}
	if !constantTimeEqual(idt.Nonce, nonce) {
		return nil, errors.New("ID token nonce does not match")
	}
	profile := map[string]any{}
	if err := idt.Claims(&profile); err != nil {
		return nil, fmt.Errorf("reading ID token claims: %w", err)
	}
	if prov.UserInfoEndpoint() != "" {
		ui, err := prov.UserInfo(p.ctx(ctx), oauth2.StaticTokenSource(tok))
		if err != nil {
			return nil, fmt.Errorf("fetching userinfo: %w", err)
		}
		if ui.Subject != idt.Subject {
			return nil, errors.New("userinfo subject differs from the ID token's")
		}
		var uiClaims map[string]any
		if err := ui.Claims(&uiClaims); err != nil {
			return nil, fmt.Errorf("reading userinfo: %w", err)
		}
		for k, v := range uiClaims {
			profile[k] = v
		}
	}
	return &Identity{
		User: map[string]any{
			"id":    idt.Subject,
			"name":  firstNonEmpty(str(profile, "name"), str(profile, "preferred_username")),
			"email": VerifiedEmail(profile),
			"image": str(profile, "picture"),
		},
		Account: p.account(idt.Subject, tok),
		Profile: profile,
	}, nil
}

// plainOAuth signs in with an OAuth 2.0 provider that is not OpenID Connect: the
// profile comes from a userinfo URL (generic oauth2) or GitHub's API.
type plainOAuth struct {
	oauthBase
	conf    oauth2.Config
	profile func(ctx context.Context, tok *oauth2.Token) (map[string]any, error)
	user    func(profile map[string]any) map[string]any
}

func (p *plainOAuth) UsesNonce() bool { return false }

func (p *plainOAuth) Refresh(ctx context.Context, refreshToken string) (map[string]any, error) {
	return p.refresh(ctx, p.config(""), refreshToken)
}

func (p *plainOAuth) config(redirectURL string) *oauth2.Config {
	c := p.conf
	c.RedirectURL = redirectURL
	return &c
}

func (p *plainOAuth) AuthCodeURL(_ context.Context, redirectURL, state, verifier, _ string) (string, error) {
	return p.config(redirectURL).AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), nil
}

func (p *plainOAuth) Callback(ctx context.Context, redirectURL string, params url.Values, verifier, _ string) (*Identity, error) {
	// No issuer identifier: RFC 9207 does not apply.
	code, err := authorizationResponse(params, "", false)
	if err != nil {
		return nil, err
	}
	tok, err := p.exchange(ctx, p.config(redirectURL), code, verifier)
	if err != nil {
		return nil, err
	}
	profile, err := p.profile(ctx, tok)
	if err != nil {
		return nil, err
	}
	user := p.user(profile)
	id, _ := user["id"].(string)
	if id == "" {
		return nil, errors.New("profile has no user id")
	}
	return &Identity{User: user, Account: p.account(id, tok), Profile: profile}, nil
}

func newOAuth2(cfg Config, client *http.Client) (*plainOAuth, error) {
	if err := requireClient(cfg); err != nil {
		return nil, err
	}
	for what, u := range map[string]string{"auth_url": cfg.AuthURL, "token_url": cfg.TokenURL, "userinfo_url": cfg.UserinfoURL} {
		if u == "" {
			return nil, fmt.Errorf("provider %q: missing %s", cfg.ID, what)
		}
		if err := checkHTTPURL(fmt.Sprintf("provider %q: %s", cfg.ID, what), u); err != nil {
			return nil, err
		}
	}
	p := &plainOAuth{
		oauthBase: oauthBase{id: cfg.ID, name: displayName(cfg, cfg.ID), typ: TypeOAuth, client: client, emailLinking: cfg.AllowEmailLinking},
		conf: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     oauth2.Endpoint{AuthURL: cfg.AuthURL, TokenURL: cfg.TokenURL},
			Scopes:       cfg.Scopes,
		},
	}
	p.profile = func(ctx context.Context, tok *oauth2.Token) (map[string]any, error) {
		var prof map[string]any
		if err := getJSON(ctx, client, cfg.UserinfoURL, tok.AccessToken, &prof); err != nil {
			return nil, fmt.Errorf("fetching userinfo: %w", err)
		}
		return prof, nil
	}
	p.user = func(prof map[string]any) map[string]any {
		return map[string]any{
			"id":    firstNonEmpty(str(prof, "sub"), idString(prof["id"])),
			"name":  firstNonEmpty(str(prof, "name"), str(prof, "preferred_username"), str(prof, "login")),
			"email": VerifiedEmail(prof),
			"image": firstNonEmpty(str(prof, "picture"), str(prof, "avatar_url")),
		}
	}
	return p, nil
}

// verifiedEmail is the profile's email when the provider says it is
// verified (OpenID Connect's email_verified claim, which some providers send
// as a string), else "": an address nobody proved is not the user's, so it
// must not find, link or authorize anyone (pre-account hijacking). The
// profile keeps it, raw, for rules that want it anyway.
func VerifiedEmail(profile map[string]any) string {
	switch v := profile["email_verified"].(type) {
	case bool:
		if v {
			return str(profile, "email")
		}
	case string:
		if v == "true" {
			return str(profile, "email")
		}
	}
	return ""
}

// idString renders a JSON id (a string or a number) as a string.
func idString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		// Past 2^53 neighbouring ids decode to the same float64: refuse them
		// rather than sign one user in as another.
		if v == float64(int64(v)) && v > -(1<<53) && v < 1<<53 {
			return strconv.FormatInt(int64(v), 10)
		}
	}
	return ""
}
