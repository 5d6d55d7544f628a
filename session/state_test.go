package session

import (
	"strings"
	"testing"
	"time"
)

const stateSalt = "__Host-authgate.oauth-state"

func TestNewOAuthState(t *testing.T) {
	a := NewOAuthState("corp", "https://app.example.com/", true)
	b := NewOAuthState("corp", "https://app.example.com/", true)
	if a.Provider != "corp" || a.CallbackURL != "https://app.example.com/" {
		t.Errorf("state %+v: provider or callback URL lost", a)
	}
	for what, v := range map[string][2]string{"state": {a.State, b.State}, "verifier": {a.CodeVerifier, b.CodeVerifier}, "nonce": {a.Nonce, b.Nonce}} {
		if len(v[0]) < 43 || v[0] == v[1] {
			t.Errorf("%s %q then %q: want 32 random bytes (43 base64url characters), new each time", what, v[0], v[1])
		}
	}
	if s := NewOAuthState("gh", "/", false); s.Nonce != "" {
		t.Errorf("nonce %q without one asked for", s.Nonce)
	}
}

func TestOpenState(t *testing.T) {
	c := mustCodec(t, []string{testSecret}, stateSalt, FormatAuthJS)
	st := NewOAuthState("corp", "https://app.example.com/after", true)
	sealed, err := c.SealState(st, testNow)
	if err != nil {
		t.Fatal(err)
	}

	got, err := c.OpenState(sealed, "corp", st.State, testNow.Add(time.Minute))
	if err != nil {
		t.Fatalf("OpenState: %v", err)
	}
	if got != st {
		t.Errorf("OpenState = %+v, want %+v", got, st)
	}

	other := mustCodec(t, []string{"another-secret"}, stateSalt, FormatAuthJS)
	session := mustCodec(t, []string{testSecret}, testSalt, FormatAuthJS)
	parts := strings.Split(sealed, ".")
	parts[3] = flipChar(parts[3])
	tampered := strings.Join(parts, ".")
	for _, tc := range []struct {
		name          string
		c             *Codec
		raw, provider string
		gotState      string
		at            time.Time
		want          string
	}{
		{"no cookie", c, "", "corp", st.State, testNow, "no state cookie"},
		{"another provider", c, sealed, "other", st.State, testNow, "state was issued for another provider"},
		{"wrong state", c, sealed, "corp", st.State + "x", testNow, "state does not match"},
		{"no state parameter", c, sealed, "corp", "", testNow, "state does not match"},
		{"expired", c, sealed, "corp", st.State, testNow.Add(StateMaxAge + time.Minute), "state cookie invalid or expired"},
		{"tampered", c, tampered, "corp", st.State, testNow, "state cookie invalid or expired"},
		{"another secret", other, sealed, "corp", st.State, testNow, "state cookie invalid or expired"},
		// The state cookie's key is salted with its name: no session codec opens it.
		{"the session token's codec", session, sealed, "corp", st.State, testNow, "state cookie invalid or expired"},
		{"not a JWE", c, "garbage", "corp", st.State, testNow, "state cookie invalid or expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.c.OpenState(tc.raw, tc.provider, tc.gotState, tc.at)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("OpenState error %v, want one saying %q", err, tc.want)
			}
			if got != (OAuthState{}) {
				t.Errorf("OpenState returned %+v along with the error", got)
			}
		})
	}
}

// A state sealed with no state value (by hand, as an old or forged cookie
// might be) never matches, not even an empty state parameter.
func TestOpenStateEmptyState(t *testing.T) {
	c := mustCodec(t, []string{testSecret}, stateSalt, FormatAuthJS)
	raw, err := c.Encode(map[string]any{"provider": "corp", "code_verifier": "v"}, StateMaxAge, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenState(raw, "corp", "", testNow); err == nil || !strings.Contains(err.Error(), "state does not match") {
		t.Errorf("OpenState error %v, want state does not match", err)
	}
}

func TestSealState(t *testing.T) {
	c := mustCodec(t, []string{testSecret}, stateSalt, FormatAuthJS)
	st := NewOAuthState("gh", "/", false)
	sealed, err := c.SealState(st, testNow)
	if err != nil {
		t.Fatal(err)
	}
	// The claims the end-to-end tests read and forge.
	claims, err := c.Decode(sealed, testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"provider": "gh", "state": st.State, "code_verifier": st.CodeVerifier, "callback_url": "/"}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %q", k, claims[k], v)
		}
	}
	if _, ok := claims["nonce"]; ok {
		t.Error("a nonce claim without a nonce")
	}
	if exp, _ := claims["exp"].(float64); int64(exp) != testNow.Add(StateMaxAge).Unix() {
		t.Errorf("exp %v, want now + StateMaxAge", claims["exp"])
	}

	for _, bad := range []OAuthState{
		{State: "s", CodeVerifier: "v"},
		{Provider: "gh", CodeVerifier: "v"},
		{Provider: "gh", State: "s"},
	} {
		if _, err := c.SealState(bad, testNow); err == nil {
			t.Errorf("SealState(%+v) succeeded, want an error", bad)
		}
	}
}

// flipChar changes the middle character of a base64url string.
func flipChar(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
