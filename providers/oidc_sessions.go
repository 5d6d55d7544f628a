package providers

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"
)

// BearerVerifier is an OpenID Connect provider whose tokens API clients may
// present as `Authorization: Bearer <JWT>`.
type BearerVerifier interface {
	Provider
	// Bearer reports whether the provider accepts bearer tokens (`bearer`).
	Bearer() bool
	// Issuer is the provider's issuer identifier, to pick the provider a token names.
	Issuer() string
	// VerifyBearer checks a bearer token: signature through the issuer's keys,
	// issuer, expiry and audience (the client id or a bearer audience). It
	// returns the token's claims and expiry.
	VerifyBearer(ctx context.Context, raw string) (map[string]any, time.Time, error)
}

// EndSessioner is an OpenID Connect provider where sign-out ends the
// provider's session too (RP-initiated logout).
type EndSessioner interface {
	Provider
	// SignsOutAtProvider reports whether `sign_out_at_provider` is on.
	SignsOutAtProvider() bool
	// EndSessionURL is where to send the browser to end the provider's session:
	// the end_session_endpoint with id_token_hint, client_id and the
	// post-logout redirect URI; false when the provider has no such endpoint.
	EndSessionURL(ctx context.Context, idTokenHint, postLogoutRedirectURI string) (string, bool)
}

// BackChannelLogout is an OpenID Connect provider that may end sessions by
// sending a logout token (OIDC Back-Channel Logout 1.0).
type BackChannelLogout interface {
	Provider
	// VerifyLogoutToken checks a logout_token and returns the provider session
	// (sid) or user (sub) it ends, its jti, and when it expires.
	VerifyLogoutToken(ctx context.Context, raw string) (LogoutToken, error)
}

// LogoutToken is a verified back-channel logout token.
type LogoutToken struct {
	Subject   string // sub, or ""
	SessionID string // sid, or ""
	JTI       string
	Expires   time.Time
}

// Issuer is the provider's issuer identifier.
func (p *oidcProvider) Issuer() string { return p.issuer }

// Bearer reports whether the provider accepts bearer tokens.
func (p *oidcProvider) Bearer() bool { return p.bearer }

// SignsOutAtProvider reports whether sign-out ends the provider's session too.
func (p *oidcProvider) SignsOutAtProvider() bool { return p.endSession }

func (p *oidcProvider) VerifyBearer(ctx context.Context, raw string) (map[string]any, time.Time, error) {
	d, err := p.discover(ctx, false)
	if err != nil {
		return nil, time.Time{}, err
	}
	tok, err := d.anyAudience.Verify(p.ctx(ctx), raw)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("bearer token: %w", err)
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(p.audiences, a) }) {
		return nil, time.Time{}, errors.New("bearer token: for another audience")
	}
	claims := map[string]any{}
	if err := tok.Claims(&claims); err != nil {
		return nil, time.Time{}, fmt.Errorf("bearer token claims: %w", err)
	}
	return claims, tok.Expiry, nil
}

func (p *oidcProvider) EndSessionURL(ctx context.Context, idTokenHint, postLogoutRedirectURI string) (string, bool) {
	d, err := p.discover(ctx, false)
	if err != nil || d.endSession == "" {
		return "", false
	}
	u, err := url.Parse(d.endSession)
	if err != nil {
		return "", false
	}
	q := u.Query()
	if idTokenHint != "" {
		q.Set("id_token_hint", idTokenHint)
	}
	q.Set("client_id", p.clientID)
	if postLogoutRedirectURI != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirectURI)
	}
	u.RawQuery = q.Encode()
	return u.String(), true
}

// backChannelEvent is the member of a logout token's events claim that makes
// it one (OIDC Back-Channel Logout 1.0, section 2.4).
const backChannelEvent = "http://schemas.openid.net/event/backchannel-logout"

func (p *oidcProvider) VerifyLogoutToken(ctx context.Context, raw string) (LogoutToken, error) {
	d, err := p.discover(ctx, false)
	if err != nil {
		return LogoutToken{}, err
	}
	// Signature, issuer, audience (the client id) and expiry as for an ID token.
	tok, err := d.verifier.Verify(p.ctx(ctx), raw)
	if err != nil {
		return LogoutToken{}, fmt.Errorf("logout token: %w", err)
	}
	var c struct {
		Sub    string         `json:"sub"`
		Sid    string         `json:"sid"`
		JTI    string         `json:"jti"`
		Iat    *float64       `json:"iat"`
		Nonce  *string        `json:"nonce"`
		Events map[string]any `json:"events"`
	}
	if err := tok.Claims(&c); err != nil {
		return LogoutToken{}, fmt.Errorf("logout token claims: %w", err)
	}
	now := time.Now()
	switch {
	case c.Iat == nil:
		return LogoutToken{}, errors.New("logout token: no iat")
	case time.Unix(int64(*c.Iat), 0).After(now.Add(time.Minute)):
		return LogoutToken{}, errors.New("logout token: issued in the future")
	case c.Nonce != nil:
		return LogoutToken{}, errors.New("logout token: has a nonce (it may be an ID token)")
	case c.Sub == "" && c.Sid == "":
		return LogoutToken{}, errors.New("logout token: neither sub nor sid")
	case c.JTI == "":
		return LogoutToken{}, errors.New("logout token: no jti")
	}
	ev, ok := c.Events[backChannelEvent]
	if _, isObject := ev.(map[string]any); !ok || !isObject {
		return LogoutToken{}, errors.New("logout token: no back-channel logout event")
	}
	return LogoutToken{Subject: c.Sub, SessionID: c.Sid, JTI: c.JTI, Expires: tok.Expiry}, nil
}
