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
	expires time.Time
}

// assertion returns the signed identity assertion for the request's session,
// signing a new one only when the cached one is about to expire (signing costs
// tens of microseconds; the guard's path is a few).
func (rl *realm) assertion(st *sessionState, r *http.Request) ([]string, error) {
	now := rl.sessions.now()
	iss := rl.origin.base(r).String()
	if a := st.entry.assertion.Load(); a != nil && a.iss == iss && now.Add(assertionRenew).Before(a.expires) {
		return a.value, nil
	}
	claims := map[string]any{"iss": iss}
	for _, k := range []string{"sub", "email", "name"} {
		if v, ok := st.token[k]; ok && v != nil {
			claims[k] = v
		}
	}
	tok, err := rl.asserter.Sign(claims, assertionTTL, now)
	if err != nil {
		return nil, err
	}
	a := &signedAssertion{value: []string{tok}, iss: iss, expires: now.Add(assertionTTL)}
	st.entry.assertion.Store(a)
	return a.value, nil
}
