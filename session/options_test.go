package session

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseSameSite(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    http.SameSite
		wantErr string
	}{
		{"", http.SameSiteLaxMode, ""},
		{"lax", http.SameSiteLaxMode, ""},
		{"Strict", http.SameSiteStrictMode, ""},
		{"none", http.SameSiteNoneMode, ""},
		{"sometimes", 0, `same_site "sometimes": want lax, strict or none`},
	} {
		got, err := ParseSameSite(tc.in)
		checkParse(t, "ParseSameSite", tc.in, got, tc.want, err, tc.wantErr)
	}
}

func TestParseCompat(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Format
		wantErr string
	}{
		{"", FormatAuthJS, ""},
		{"next-auth-v4", FormatNextAuthV4, ""},
		{"next-auth-v3", 0, `compat "next-auth-v3": want next-auth-v4`},
		{"NEXT-AUTH-V4", 0, "want next-auth-v4"},
	} {
		got, err := ParseCompat(tc.in)
		checkParse(t, "ParseCompat", tc.in, got, tc.want, err, tc.wantErr)
	}
}

func TestParseStrategy(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Strategy
		wantErr string
	}{
		{"", StrategyJWT, ""},
		{"jwt", StrategyJWT, ""},
		{"database", StrategyDatabase, ""},
		{"cookie", 0, `strategy "cookie": want jwt or database`},
	} {
		got, err := ParseStrategy(tc.in)
		checkParse(t, "ParseStrategy", tc.in, got, tc.want, err, tc.wantErr)
	}
}

func checkParse[T comparable](t *testing.T, fn, in string, got, want T, err error, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s(%q): error %v, want one containing %q", fn, in, err, wantErr)
		}
		return
	}
	if err != nil || got != want {
		t.Errorf("%s(%q) = %v, %v; want %v", fn, in, got, err, want)
	}
}
