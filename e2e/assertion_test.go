package e2e

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// TestUpstreamAssertion: with `assertion`, the upstream receives a signed JWT of
// the user's identity that verifies with /.auth/jwks.json; a client-sent copy
// of the header never reaches it.
func TestUpstreamAssertion(t *testing.T) {
	base, up, _ := credentialsSite(t, "authgate {\n\t\tassertion\n\t}", "", aliceUser)
	b := newBrowser(t)

	keys := b.api(base + "/.auth/jwks.json")
	wantStatus(t, keys, http.StatusOK)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(keys.Body), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("/.auth/jwks.json = %q (%v), want one key", keys.Body, err)
	}

	wantLocation(t, b.signInCredentials(base, base+"/", "alice", aliceUser.Password), base+"/")
	wantStatus(t, b.navigate(base+"/app", "X-Authgate-Assertion", "forged"), http.StatusOK)
	got := up.Last(t).HeaderValues("X-Authgate-Assertion")
	if len(got) != 1 || got[0] == "forged" {
		t.Fatalf("the upstream saw X-Authgate-Assertion %v, want one signed assertion", got)
	}
	tok, err := jwt.Parse(got[0], func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		k := set.Key(kid)
		if len(k) == 0 {
			return nil, jwt.ErrTokenUnverifiable
		}
		return k[0].Key, nil
	}, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer(base), jwt.WithAudience(base), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("the assertion does not verify with /.auth/jwks.json: %v", err)
	}
	claims := tok.Claims.(jwt.MapClaims)
	if claims["sub"] != "alice" || claims["email"] != "alice@example.com" || claims["name"] != "Alice Example" {
		t.Errorf("assertion claims = %v", claims)
	}

	// A signed-out request with a forged assertion never reaches the upstream.
	n := up.Count()
	wantStatus(t, newBrowser(t).api(base+"/app", "X-Authgate-Assertion", got[0]), http.StatusUnauthorized)
	if up.Count() != n {
		t.Error("a signed-out request reached the upstream")
	}
}
