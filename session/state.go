package session

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// StateMaxAge is how long a sign-in may stay at the provider: the sealed state
// and the cookie that carries it expire after it.
const StateMaxAge = 15 * time.Minute

// OAuthState is what a sign-in remembers between sending the browser to the
// provider and its coming back to the callback: sealed in a short-lived
// cookie, bound to the provider it was issued for.
type OAuthState struct {
	// Provider is the id of the provider the sign-in was started with.
	Provider string
	// State is the OAuth state parameter the callback must carry back.
	State string
	// CodeVerifier is the PKCE (S256) code verifier.
	CodeVerifier string
	// Nonce is the OpenID Connect nonce; empty for plain OAuth 2.0.
	Nonce string
	// CallbackURL is where the user goes once signed in, already checked by the
	// redirect callback.
	CallbackURL string
}

// NewOAuthState starts a sign-in with provider: a random state, a PKCE
// verifier and, when withNonce, a random nonce.
func NewOAuthState(provider, callbackURL string, withNonce bool) OAuthState {
	s := OAuthState{
		Provider:     provider,
		State:        randomToken(),
		CodeVerifier: oauth2.GenerateVerifier(),
		CallbackURL:  callbackURL,
	}
	if withNonce {
		s.Nonce = randomToken()
	}
	return s
}

// The claims of a sealed state.
const (
	stateProvider    = "provider"
	stateState       = "state"
	stateVerifier    = "code_verifier"
	stateNonce       = "nonce"
	stateCallbackURL = "callback_url"
)

// SealState encrypts s for the state cookie, valid for StateMaxAge from now.
// c is the state cookie's codec (salted with that cookie's name), not the
// session token's.
func (c *Codec) SealState(s OAuthState, now time.Time) (string, error) {
	if s.Provider == "" || s.State == "" || s.CodeVerifier == "" {
		return "", errors.New("sealing an OAuth state without provider, state or code verifier")
	}
	claims := map[string]any{
		stateProvider:    s.Provider,
		stateState:       s.State,
		stateVerifier:    s.CodeVerifier,
		stateCallbackURL: s.CallbackURL,
	}
	if s.Nonce != "" {
		claims[stateNonce] = s.Nonce
	}
	return c.Encode(claims, StateMaxAge, now)
}

// OpenState decrypts raw, the state cookie's value, and checks that it was
// issued for provider and that gotState, the callback's state parameter, is
// its state (in constant time). An empty raw means there was no state cookie.
// A missing verifier or nonce is left to the provider, which refuses it.
func (c *Codec) OpenState(raw, provider, gotState string, now time.Time) (OAuthState, error) {
	if raw == "" {
		return OAuthState{}, errors.New("no state cookie: the sign-in was not started here, expired, or was already finished")
	}
	claims, err := c.Decode(raw, now)
	if err != nil {
		return OAuthState{}, fmt.Errorf("state cookie invalid or expired: %v", err)
	}
	str := func(k string) string { v, _ := claims[k].(string); return v }
	s := OAuthState{
		Provider:     str(stateProvider),
		State:        str(stateState),
		CodeVerifier: str(stateVerifier),
		Nonce:        str(stateNonce),
		CallbackURL:  str(stateCallbackURL),
	}
	if s.Provider != provider {
		return OAuthState{}, errors.New("state was issued for another provider")
	}
	if s.State == "" || subtle.ConstantTimeCompare([]byte(gotState), []byte(s.State)) != 1 {
		return OAuthState{}, errors.New("state does not match")
	}
	return s, nil
}

// randomToken is 32 random bytes, base64url: a state or a nonce.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
