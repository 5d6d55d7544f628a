package providers

import (
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"github":                true,
		"corp-sso_2":            true,
		"A":                     true,
		strings.Repeat("a", 64): true,
		strings.Repeat("a", 65): false,
		"":                      false,
		"my idp":                false,
		"a/b":                   false,
		"../x":                  false,
		"a.b":                   false,
		"idp?x=1":               false,
		"idp%2F":                false,
		"ünï":                   false,
	} {
		if got := validID(id); got != want {
			t.Errorf("validID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestNewKinds(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no type", Config{}, []string{"missing type"}},
		{"no type, with an id", Config{ID: "corp"}, []string{"missing type"}},
		{"unknown type", Config{Kind: "saml"}, []string{`"saml"`, "unknown type", "oidc, github, google, oauth2, credentials or email"}},
		{"unknown type, with an id", Config{Kind: "ldap", ID: "corp"}, []string{`"corp"`, `unknown type "ldap"`}},
		{"email without a mailer", Config{Kind: "email"}, []string{`"email"`, "missing mailer"}},
		{"email without a sender", Config{Kind: "email", Mailer: "log"}, []string{`"email"`, "missing from"}},
		{"email with a bad mailer", Config{Kind: "email", Mailer: "ftp://x", From: "a@example.com"}, []string{`"email"`, "smtp://"}},
		{"invalid id", Config{Kind: "github", ID: "git hub", ClientID: "c", ClientSecret: "s"}, []string{`"git hub"`, "letters, digits"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(t.Context(), tc.cfg, offline, zap.NewNop())
			if p != nil {
				t.Errorf("New returned a provider: %v", p)
			}
			errContains(t, err, tc.want...)
		})
	}
}
