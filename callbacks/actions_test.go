package callbacks

import (
	"strings"
	"testing"
)

// TestEveryActionCompiles: each action of the table compiles in its callback
// with arguments of its shape, so the table and Compile cannot drift apart. An
// action added to the table needs a sample here and a case in Compile.
func TestEveryActionCompiles(t *testing.T) {
	samples := map[string][]string{
		"allow":                nil,
		"deny":                 nil,
		"redirect":             {"/request-access"},
		"webhook":              {"http://localhost:9000/hook"},
		"default":              {"allow"},
		"allow_origin":         {"https://*.example.com", "http://localhost:*"},
		"rewrite":              {`base_url + "/welcome"`},
		"set":                  {"role", `"admin"`},
		"unset":                {"picture"},
		"refresh_access_token": nil,
	}
	for _, kind := range callbackKinds {
		for _, a := range Actions(kind) {
			sample, ok := samples[a.Name]
			if !ok {
				t.Errorf("%s %s: no sample arguments in this test", kind, a.Name)
				continue
			}
			if a.Args != AnyArgs && len(sample) != a.Args || a.Args == AnyArgs && len(sample) == 0 {
				t.Errorf("%s %s: the sample has %d argument(s), the table says %d", kind, a.Name, len(sample), a.Args)
				continue
			}
			var cfg Config
			r := rule("12", a.Name, sample, nil)
			switch kind {
			case KindSignIn:
				cfg.SignIn = []Rule{r}
			case KindRedirect:
				cfg.Redirect = []Rule{r}
			case KindJWT:
				cfg.JWT = []Rule{r}
			case KindSession:
				cfg.Session = []Rule{r}
			}
			if _, err := Compile(cfg); err != nil {
				t.Errorf("%s %s: %v", kind, a.Name, err)
			}
		}
	}
}

func TestLookupAction(t *testing.T) {
	for _, tc := range []struct {
		callback, name string
		want           bool
	}{
		{KindSignIn, "default", true},
		{KindSignIn, "set", false},
		{KindRedirect, "allow_origin", true},
		{KindJWT, "refresh_access_token", true},
		{KindSession, "refresh_access_token", false},
		{KindRoute, "allow", false},
		{"signIn", "allow", false},
	} {
		if _, ok := LookupAction(tc.callback, tc.name); ok != tc.want {
			t.Errorf("LookupAction(%q, %q): found %v, want %v", tc.callback, tc.name, ok, tc.want)
		}
	}
	// The table is not the caller's to change.
	a, _ := LookupAction(KindSignIn, "default")
	a.Values[0] = "maybe"
	Actions(KindSignIn)[4].Values[0] = "maybe"
	if b, _ := LookupAction(KindSignIn, "default"); b.Values[0] != "allow" {
		t.Errorf("changing a returned Action changed the table: default %q", b.Values)
	}
}

// TestUnknownActionSaysWhereItBelongs: an action of another callback is named
// with its block, not only refused.
func TestUnknownActionSaysWhereItBelongs(t *testing.T) {
	_, err := Compile(Config{Redirect: []Rule{rule("12", "set", args("a", "b"), nil)}})
	wantErrContains(t, err, "Caddyfile:12: callbacks redirect: set: unknown action: want allow_origin, allow, deny, rewrite or webhook", "set belongs in the jwt or session block")
	_, err = Compile(Config{SignIn: []Rule{rule("12", "permit", nil, nil)}})
	wantErrContains(t, err, "unknown action: want allow, deny, redirect, webhook or default")
	if strings.Contains(err.Error(), "belongs") {
		t.Errorf("error %q names a block for an action no callback has", err)
	}
}

func TestCheckHeaderName(t *testing.T) {
	for _, name := range []string{"X-User", "x_user", "X-Auth-Request-Email"} {
		if err := CheckHeaderName(name); err != nil {
			t.Errorf("CheckHeaderName(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", "X User", "X-User:", "X\tUser", "X-User\r\nX-Admin", "X-User\n"} {
		err := CheckHeaderName(name)
		if err == nil || !strings.Contains(err.Error(), "invalid header name") {
			t.Errorf("CheckHeaderName(%q) = %v, want an invalid header name error", name, err)
		}
	}
}

func TestIsShorthand(t *testing.T) {
	for word, want := range map[string]bool{"email": true, "domain": true, "provider": true, "claim": true, "group": false, "": false} {
		if got := IsShorthand(word); got != want {
			t.Errorf("IsShorthand(%q) = %v, want %v", word, got, want)
		}
	}
}
