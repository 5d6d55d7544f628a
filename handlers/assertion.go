package handlers

import (
	"net/http"
	"time"
)

const (
	assertionTTL = 5 * time.Minute
	// an assertion is re-signed when less than this is left of it
	assertionRenew = time.Minute
)

// signedAssertion is an assertion ready to send, kept with its token.
type signedAssertion struct {
	value   []string
	iss     string
	aud     string
	expires time.Time
}

// siteOrigin is the origin the request was sent to (as a trusted proxy in
// front saw it).
func siteOrigin(r *http.Request) string {
	return (&origin{}).base(r).String()
}

// assertion returns the signed identity assertion for the request's session,
// signing a new one only when the cached one is about to expire (signing costs
// tens of microseconds; the guard's path is a few).
func (rl *realm) assertion(st *sessionState, r *http.Request) ([]string, error) {
	now := rl.sessions.now()
	iss := rl.origin.base(r).String()
	// The audience is the site the request is for: an assertion taken from one
	// site's upstream does not pass at another's.
	aud := siteOrigin(r)
	if a := st.entry.extra().assertion.Load(); a != nil && a.iss == iss && a.aud == aud && now.Add(assertionRenew).Before(a.expires) {
		return a.value, nil
	}
	claims := map[string]any{"iss": iss, "aud": aud}
	for _, k := range []string{"sub", "email", "name"} {
		if v, ok := st.claims()[k]; ok && v != nil {
			claims[k] = v
		}
	}
	tok, err := rl.asserter.Sign(claims, assertionTTL, now)
	if err != nil {
		return nil, err
	}
	a := &signedAssertion{value: []string{tok}, iss: iss, aud: aud, expires: now.Add(assertionTTL)}
	st.entry.extra().assertion.Store(a)
	return a.value, nil
}
