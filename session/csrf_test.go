package session

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestCSRFIssue(t *testing.T) {
	c := NewCSRF("csrf-secret")
	token, cookieValue := c.Issue()
	if b, err := hex.DecodeString(token); err != nil || len(b) != 32 {
		t.Errorf("token %q is not 32 bytes in hex", token)
	}
	if !strings.HasPrefix(cookieValue, token+"|") {
		t.Errorf("cookie value %q does not start with the token", cookieValue)
	}
	if got, ok := c.FromCookie(cookieValue); !ok || got != token {
		t.Errorf("FromCookie(Issue's cookie) = %q, %v; want %q, true", got, ok, token)
	}
	if !c.Verify(cookieValue, token) {
		t.Error("Verify(Issue's cookie, Issue's token) = false")
	}
	if other, _ := c.Issue(); other == token {
		t.Error("two tokens issued are equal")
	}
}

// Auth.js writes the cookie as token|sha256hex(token+secret); this value was computed with
// node's crypto, so a cookie set by Auth.js with the same secret is accepted.
func TestCSRFAuthJSCookie(t *testing.T) {
	const cookieValue = "0123456789abcdef|50569caf9211b60c416c8aae356fbf734dbf666c40effe2b4944fd21699a9a81"
	c := NewCSRF("csrf-secret")
	if token, ok := c.FromCookie(cookieValue); !ok || token != "0123456789abcdef" {
		t.Errorf("FromCookie = %q, %v; want 0123456789abcdef, true", token, ok)
	}
	if !c.Verify(cookieValue, "0123456789abcdef") {
		t.Error("Verify = false for the cookie's token")
	}
}

func TestCSRFRejects(t *testing.T) {
	c := NewCSRF("csrf-secret")
	token, cookieValue := c.Issue()
	_, hash, _ := strings.Cut(cookieValue, "|")
	otherToken, otherCookie := NewCSRF("other-secret").Issue()

	for name, v := range map[string]string{
		"empty":              "",
		"no separator":       token + hash,
		"token only":         token,
		"token and bar":      token + "|",
		"empty token":        "|" + hash,
		"hash only":          hash,
		"other secret":       otherCookie,
		"token swapped":      otherToken + "|" + hash,
		"hash truncated":     cookieValue[:len(cookieValue)-1],
		"hash in upper case": token + "|" + strings.ToUpper(hash),
		"trailing field":     cookieValue + "|x",
	} {
		if got, ok := c.FromCookie(v); ok {
			t.Errorf("%s: FromCookie(%q) = %q, true; want false", name, v, got)
		}
		if c.Verify(v, token) {
			t.Errorf("%s: Verify(%q, token) = true", name, v)
		}
	}

	for name, submitted := range map[string]string{
		"empty":       "",
		"other token": otherToken,
		"prefix":      token[:10],
		"longer":      token + "0",
		"cookie":      cookieValue,
	} {
		if c.Verify(cookieValue, submitted) {
			t.Errorf("%s: Verify(cookie, %q) = true", name, submitted)
		}
	}
}
