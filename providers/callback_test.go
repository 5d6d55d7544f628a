package providers

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAuthorizationResponse(t *testing.T) {
	const issuer = "https://idp.example.com"
	long := strings.Repeat("é", 80) // 160 bytes: the cut falls inside a rune
	for _, tc := range []struct {
		name        string
		params      url.Values
		issuer      string
		issRequired bool
		want        string // the error, "" for the code
	}{
		{"code", url.Values{"code": {"c"}, "state": {"s"}}, issuer, false, ""},
		{"code and the issuer's iss", url.Values{"code": {"c"}, "iss": {issuer}}, issuer, true, ""},
		{"no iss, none promised", url.Values{"code": {"c"}}, issuer, false, ""},
		{"another issuer", url.Values{"code": {"c"}, "iss": {"https://evil.example.com"}}, issuer, false, "another issuer: https://evil.example.com"},
		{"another issuer, promised", url.Values{"code": {"c"}, "iss": {issuer + "/"}}, issuer, true, "another issuer"},
		{"no iss, promised", url.Values{"code": {"c"}}, issuer, true, "without iss"},
		{"empty iss, promised", url.Values{"code": {"c"}, "iss": {""}}, issuer, true, "without iss"},
		{"error", url.Values{"error": {"access_denied"}, "iss": {issuer}}, issuer, true, "provider answered with an error: access_denied"},
		// An error response is refused as such, whatever its iss: the log shows
		// the provider's error code.
		{"error from another issuer", url.Values{"error": {"access_denied"}, "iss": {"https://evil.example.com"}}, issuer, false, "answered with an error: access_denied"},
		{"error without the promised iss", url.Values{"error": {"access_denied"}}, issuer, true, "answered with an error: access_denied"},
		// Plain OAuth 2.0 has no issuer identifier to compare.
		{"plain OAuth, any iss", url.Values{"code": {"c"}, "iss": {"https://evil.example.com"}}, "", false, ""},
		{"plain OAuth, error", url.Values{"error": {"server_error"}}, "", false, "answered with an error: server_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := authorizationResponse(tc.params, tc.issuer, tc.issRequired)
			if tc.want == "" {
				if err != nil || code != "c" {
					t.Errorf("authorizationResponse = %q, %v; want the code", code, err)
				}
				return
			}
			errContains(t, err, tc.want)
			if code != "" {
				t.Errorf("code %q along with the error", code)
			}
		})
	}

	t.Run("long values are cut", func(t *testing.T) {
		for _, params := range []url.Values{{"error": {long}}, {"iss": {long}}} {
			_, err := authorizationResponse(params, issuer, false)
			if err == nil {
				t.Fatalf("%v: no error", params)
			}
			msg := err.Error()
			if !utf8.ValidString(msg) || !strings.HasSuffix(msg, "…") || len(msg) > 160 {
				t.Errorf("error %q: want it valid UTF-8, cut to 100 bytes and marked", msg)
			}
		}
	})
}

// The OIDC provider checks the authorization response itself, before it asks
// the token endpoint: iss against its issuer and its metadata (RFC 9207), and
// error responses.
func TestOIDCCallbackChecksResponse(t *testing.T) {
	for _, tc := range []struct {
		name     string
		promised bool // the metadata has authorization_response_iss_parameter_supported
		params   func(issuer string) url.Values
		want     string // "" for a sign-in
	}{
		{"iss of the issuer", true, func(iss string) url.Values { return url.Values{"code": {testCode}, "iss": {iss}} }, ""},
		{"no iss, none promised", false, func(string) url.Values { return withCode(testCode) }, ""},
		{"iss of another issuer", false, func(string) url.Values {
			return url.Values{"code": {testCode}, "iss": {"https://evil.example.com"}}
		}, "authorization response from another issuer: https://evil.example.com"},
		{"iss of another issuer, promised", true, func(iss string) url.Values {
			return url.Values{"code": {testCode}, "iss": {iss + "/other"}}
		}, "another issuer"},
		{"no iss, promised", true, func(string) url.Values { return withCode(testCode) }, "without iss, which the provider's metadata promises"},
		{"error response", true, func(iss string) url.Values {
			return url.Values{"error": {"access_denied"}, "error_description": {"no"}, "iss": {iss}}
		}, "provider answered with an error: access_denied"},
		// As the end-to-end test forges it: no iss although the metadata promises it.
		{"error response without iss", true, func(string) url.Values {
			return url.Values{"error": {"access_denied"}, "state": {testState}}
		}, "provider answered with an error: access_denied"},
		{"no code", true, func(iss string) url.Values { return url.Values{"iss": {iss}} }, "no authorization code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newFakeOP(t, 0)
			if tc.promised {
				op.meta["authorization_response_iss_parameter_supported"] = true
			}
			p := newOIDCFor(t, t.Context(), op)
			op.idToken(t, nil)
			id, err := p.Callback(t.Context(), testRedirectURL, tc.params(op.URL), op.verifier, testNonce)
			if tc.want == "" {
				if err != nil || id.User["id"] != "alice" {
					t.Fatalf("Callback = %v, %v; want alice signed in", id, err)
				}
				return
			}
			errContains(t, err, tc.want)
			if n := op.hits("/token"); n != 0 {
				t.Errorf("%d token requests for a refused response, want none", n)
			}
		})
	}
}

// A plain OAuth 2.0 provider refuses an error response before it asks the
// token endpoint; without an issuer identifier, iss means nothing to it.
func TestOAuth2CallbackChecksResponse(t *testing.T) {
	f, p := newOAuth2Fake(t, `{"sub":"abc"}`)
	_, err := p.Callback(t.Context(), testRedirectURL, url.Values{"error": {"access_denied"}, "code": {testCode}}, f.verifier, "")
	errContains(t, err, "provider answered with an error: access_denied")
	if n := f.hits("/token"); n != 0 {
		t.Errorf("%d token requests for an error response, want none", n)
	}
	id, err := p.Callback(t.Context(), testRedirectURL, url.Values{"code": {testCode}, "iss": {"https://elsewhere.example.com"}}, f.verifier, "")
	if err != nil || id.User["id"] != "abc" {
		t.Errorf("Callback with an iss = %v, %v; want abc signed in", id, err)
	}
}

// Discovery builds the ID-token verifier once; every callback uses that one.
func TestOIDCVerifierBuiltOnce(t *testing.T) {
	op := newFakeOP(t, 0)
	p := newOIDCFor(t, t.Context(), op)
	op.idToken(t, nil)
	d, err := p.discover(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	if d.verifier == nil {
		t.Fatal("discovery built no ID-token verifier")
	}
	for i := range 3 {
		if _, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), op.verifier, testNonce); err != nil {
			t.Fatalf("callback %d: %v", i, err)
		}
	}
	if again, _ := p.discover(t.Context(), false); again != d || again.verifier != d.verifier {
		t.Error("the discovery result changed after callbacks, want the one verifier")
	}
	if n := op.hits("/keys"); n != 1 {
		t.Errorf("%d key set requests for 3 callbacks, want 1", n)
	}
}
