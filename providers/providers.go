// Package providers signs users in with OAuth 2.0 / OpenID Connect identity providers
// and with local credentials, and describes who they are in Auth.js's shapes.
package providers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/internal/httpjson"
)

// Provider types, as Auth.js names them in /providers.
const (
	TypeOIDC        = "oidc"
	TypeOAuth       = "oauth"
	TypeCredentials = "credentials"
)

// Config configures one provider. It is the JSON shape of a `provider` block.
type Config struct {
	// Kind is the provider's kind: oidc, github, google, oauth2 or credentials.
	Kind string `json:"type"`

	// ID names the provider in URLs (/.auth/signin/<id>, /.auth/callback/<id>)
	// and in rules (`account.provider`). Defaults to the kind.
	ID string `json:"id,omitempty"`

	// Name is shown on the sign-in page. Defaults to a name derived from the kind.
	Name string `json:"name,omitempty"`

	// ClientID is the OAuth client identifier registered at the identity provider.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret is the OAuth client secret. Placeholders such as {env.X} are expanded.
	ClientSecret string `json:"client_secret,omitempty"`

	// Issuer is the OpenID Connect issuer URL; its discovery document configures the
	// endpoints and keys (oidc only; google presets it).
	Issuer string `json:"issuer,omitempty"`

	// Scopes requested from the provider. Defaults: oidc and google
	// `openid email profile`, github `read:user user:email`.
	Scopes []string `json:"scopes,omitempty"`

	// AuthURL, TokenURL and UserinfoURL are the endpoints of a plain OAuth 2.0
	// provider (oauth2), or overrides of a preset's (github: GitHub Enterprise).
	AuthURL     string `json:"auth_url,omitempty"`
	TokenURL    string `json:"token_url,omitempty"`
	UserinfoURL string `json:"userinfo_url,omitempty"`

	// APIURL is the GitHub REST API base URL (default https://api.github.com).
	APIURL string `json:"api_url,omitempty"`

	// UsersFile is the credentials provider's users file: one
	// `username:bcrypt-hash[:name[:email]]` per line, as `caddy hash-password` prints hashes.
	UsersFile string `json:"users_file,omitempty"`

	// AuthorizeURL is where the credentials provider POSTs the submitted fields as
	// JSON; a 2xx answer with a user object ({"id", "name", "email", "image"}) signs
	// the user in, 401 or 403 refuses the credentials.
	AuthorizeURL string `json:"authorize_url,omitempty"`

	// Timeout bounds a call to AuthorizeURL. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// FailureWindow is how long the credentials provider counts failed
	// sign-ins: after 5 for one username from one client, 20 for one username
	// or 20 from one client, the next try waits (answered 429 with
	// Retry-After), a little at first and twice as long after every further
	// failure, up to the window. Default: 15m.
	FailureWindow caddy.Duration `json:"failure_window,omitempty"`

	// AllowEmailLinking lets a sign-in through this provider join an existing user
	// with the same email address. Off by default: an address is not proof that
	// the accounts belong to the same person (Auth.js's OAuthAccountNotLinked).
	AllowEmailLinking bool `json:"allow_email_linking,omitempty"`

	// Bearer, for an oidc or google provider, accepts API clients' requests
	// with `Authorization: Bearer <JWT>` signed by the issuer (its JWKS) and
	// meant for the client id or one of BearerAudiences: such a request is a
	// session of its own. Off by default.
	Bearer bool `json:"bearer,omitempty"`

	// BearerAudiences are audiences a bearer token may have besides the client id.
	BearerAudiences []string `json:"bearer_audiences,omitempty"`

	// SignOutAtProvider, for an oidc provider, ends the provider's session too
	// at sign-out: the browser is sent to its end_session_endpoint with
	// id_token_hint (the ID token is then kept in the session token).
	SignOutAtProvider bool `json:"sign_out_at_provider,omitempty"`

	// Mailer sends the email provider's sign-in links: smtp://user:pass@host:port
	// (STARTTLS when offered), smtps://… (TLS), or `log` (prints the link to the
	// log: for development only).
	Mailer string `json:"mailer,omitempty"`

	// From is the sender address of sign-in emails.
	From string `json:"from,omitempty"`

	// MaxAge is how long an email sign-in link stays valid. Default: 24h.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// Subject of sign-in emails. Default: "Sign in to <host>".
	Subject string `json:"subject,omitempty"`

	// Template is a file holding the HTML body of sign-in emails, a Go html/template
	// with .URL, .Host and .Email.
	Template string `json:"template,omitempty"`
}

// Identity is what a provider knows about a signed-in user, in Auth.js's shapes.
type Identity struct {
	// User has id, name, email and image.
	User map[string]any
	// Account has provider, type, provider_account_id and the OAuth tokens.
	Account map[string]any
	// Profile is the provider's own description of the user.
	Profile map[string]any
}

// Provider is any sign-in method.
type Provider interface {
	ID() string
	Name() string
	Type() string
}

// OAuth is a provider that signs in through the authorization code flow.
type OAuth interface {
	Provider
	// AuthCodeURL returns where to send the browser; it fails when the provider
	// cannot be used now (discovery has not succeeded).
	AuthCodeURL(ctx context.Context, redirectURL, state, verifier, nonce string) (string, error)
	// Callback finishes the sign-in with the parameters of the authorization
	// response (the callback's query, or its form with response_mode=form_post),
	// whose state the caller has checked. It refuses an error response and, as
	// RFC 9207 says, a response from another issuer or one without the iss the
	// provider's metadata promises; then it redeems the code with the PKCE
	// verifier and, for OpenID Connect, verifies the ID token and its nonce.
	Callback(ctx context.Context, redirectURL string, params url.Values, verifier, nonce string) (*Identity, error)
	// UsesNonce reports whether the flow carries an OIDC nonce.
	UsesNonce() bool
	// AllowsEmailLinking reports whether a sign-in may join an existing user with
	// the same email address.
	AllowsEmailLinking() bool
	// Refresh redeems a refresh token at the token endpoint and returns the new
	// access_token, expires_at and refresh_token (the old one when not rotated).
	Refresh(ctx context.Context, refreshToken string) (map[string]any, error)
}

// New builds the provider cfg describes. ctx bounds background work such as
// OIDC discovery; client makes every outgoing request.
func New(ctx context.Context, cfg Config, client *http.Client, logger *zap.Logger) (Provider, error) {
	if cfg.Kind == "" {
		// Before the id, which defaults to the kind and would be reported instead.
		return nil, errors.New("provider: missing type")
	}
	if cfg.ID == "" {
		cfg.ID = cfg.Kind
	}
	if !validID(cfg.ID) {
		return nil, fmt.Errorf("provider id %q: use letters, digits, '-' and '_' only", cfg.ID)
	}
	if (cfg.Bearer || cfg.SignOutAtProvider) && cfg.Kind != "oidc" && cfg.Kind != "google" {
		return nil, fmt.Errorf("provider %q: bearer and sign_out_at_provider are options of oidc and google providers", cfg.ID)
	}
	switch cfg.Kind {
	case "oidc", "google":
		return nilOnError(newOIDC(ctx, cfg, client, logger))
	case "github":
		return nilOnError(newGitHub(cfg, client))
	case "oauth2":
		return nilOnError(newOAuth2(cfg, client))
	case "credentials":
		return nilOnError(newCredentials(cfg, client, logger))
	case "email":
		return nilOnError(newEmail(cfg, logger))
	default:
		return nil, fmt.Errorf("provider %q: unknown type %q (want %s)", cfg.ID, cfg.Kind, kindList("or"))
	}
}

// Kinds are the provider kinds New knows, as the Caddyfile names them.
var Kinds = []string{"oidc", "github", "google", "oauth2", "credentials", "email"}

// kindList is Kinds as a sentence: "oidc, github, … <conj> email".
func kindList(conj string) string {
	return strings.Join(Kinds[:len(Kinds)-1], ", ") + " " + conj + " " + Kinds[len(Kinds)-1]
}

// nilOnError keeps a typed nil pointer out of the Provider interface.
func nilOnError[P Provider](p P, err error) (Provider, error) {
	if err != nil {
		return nil, err
	}
	return p, nil
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func requireClient(cfg Config) error {
	if cfg.ClientID == "" {
		return fmt.Errorf("provider %q: missing client_id", cfg.ID)
	}
	if cfg.ClientSecret == "" {
		return fmt.Errorf("provider %q: missing client_secret", cfg.ID)
	}
	return nil
}

// checkHTTPURL rejects anything but an absolute http(s) URL with a host.
func checkHTTPURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s %q: %v", what, raw, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s %q: want an absolute http(s) URL with no query or credentials", what, raw)
	}
	return nil
}

// maxResponse bounds what authgate reads from an identity provider.
const maxResponse = 1 << 20

// getJSON fetches url with the bearer token and decodes the JSON answer into v.
func getJSON(ctx context.Context, client *http.Client, rawURL, accessToken string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	if _, err := httpjson.Do(client, req, maxResponse, v); err != nil {
		return fmt.Errorf("GET %s: %w", rawURL, err)
	}
	return nil
}

// str returns m[k] when it is a non-empty string.
func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// scopesOr returns the configured scopes or the defaults.
func scopesOr(cfg Config, def ...string) []string {
	if len(cfg.Scopes) > 0 {
		return cfg.Scopes
	}
	return def
}

// displayName returns cfg.Name or def.
func displayName(cfg Config, def string) string {
	if cfg.Name != "" {
		return cfg.Name
	}
	return def
}
