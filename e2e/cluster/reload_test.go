package cluster

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testsite"
)

// TestReloadKeepsSessions reloads a running Caddy through its admin API
// (`caddy reload`): sessions survive a reload with the same secret, and so do
// sign-outs (the revocations are in the store, the default bolt file); during
// a secret rotation (`secret <new> <old>`) a cookie of the old secret still
// works and is re-issued with the new one, which alone works once the old
// secret is gone.
func TestReloadKeepsSessions(t *testing.T) {
	up := newUpstream(t)
	users := usersFile(t, "alice", "bob")
	const newSecret = "cluster-new-secret-9876543210-zyxwvutsrqponmlkjihgfedcba"
	cfg := func(generation int, secrets string) siteConfig {
		// The response header tells which configuration answered.
		return siteConfig{Secrets: secrets, Realm: testsite.CredentialsProvider(users),
			Extra: fmt.Sprintf("\theader X-Config-Generation %d", generation)}
	}
	in := startInstance(t, "A", up, true, cfg(1, testSecret))
	get := func(v string, generation int) response {
		t.Helper()
		r := api(t, in.base+"/app", v)
		if got, want := r.Header.Get("X-Config-Generation"), fmt.Sprint(generation); got != want {
			t.Fatalf("%s answered by configuration %q, want %s", r.what, got, want)
		}
		return r
	}

	alice := signIn(t, in, "alice")
	bob := signIn(t, in, "bob")
	wantStatus(t, get(alice, 1), http.StatusOK)
	signOut(t, in, bob)
	wantSignedOut(t, get(bob, 1))

	// Same secret: the cookie works as it is, bob stays signed out.
	in.reload(t, cfg(2, testSecret))
	r := get(alice, 2)
	wantStatus(t, r, http.StatusOK)
	if sc := setCookie(r, sessionCookie); sc != nil {
		t.Errorf("%s: the cookie was re-issued (%v) although nothing changed", r.what, sc)
	}
	if got := upstreamSaw(t, r).User; got != "alice" {
		t.Errorf("%s: upstream saw user %q, want alice", r.what, got)
	}
	wantSignedOut(t, get(bob, 2))

	// Rotation: a new secret first, the old one still decrypts. The old
	// cookie works, and the answer re-issues it with the new secret.
	in.reload(t, cfg(3, newSecret+" "+testSecret))
	r = get(alice, 3)
	wantStatus(t, r, http.StatusOK)
	sc := setCookie(r, sessionCookie)
	if sc == nil || sc.Value == "" || sc.Value == alice || sc.MaxAge <= 0 {
		t.Fatalf("%s: a cookie of the old secret was not re-issued: %v", r.what, r.Header.Values("Set-Cookie"))
	}
	renewed := sc.Value
	if claims := mustDecode(t, newSecret, renewed); claims["sub"] != "alice" {
		t.Errorf("the re-issued token's sub is %v, want alice", claims["sub"])
	}
	if _, err := decodeToken(t, testSecret, renewed); err == nil {
		t.Error("the re-issued token decodes with the old secret")
	}
	r = get(renewed, 3)
	wantStatus(t, r, http.StatusOK)
	if sc := setCookie(r, sessionCookie); sc != nil {
		t.Errorf("%s: a cookie of the current secret was re-issued again", r.what)
	}
	wantSignedOut(t, get(bob, 3))

	// The old secret is gone: only the re-issued cookie works.
	in.reload(t, cfg(4, newSecret))
	r = get(renewed, 4)
	wantStatus(t, r, http.StatusOK)
	if got := upstreamSaw(t, r).User; got != "alice" {
		t.Errorf("%s: upstream saw user %q, want alice", r.what, got)
	}
	wantSignedOut(t, get(alice, 4))
	in.alive(t)
}
