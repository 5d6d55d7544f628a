package session

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// CSRF is Auth.js's double-submit token: the cookie holds "token|sha256hex(token+secret)",
// so only the server can make a cookie value, and a form proves it read the cookie's page
// by submitting the token.
type CSRF struct {
	secret string
}

// NewCSRF returns a CSRF that binds tokens to secret.
func NewCSRF(secret string) *CSRF {
	return &CSRF{secret: secret}
}

// Issue makes a new random (32 bytes, hex) token and its cookie value.
func (c *CSRF) Issue() (token, cookieValue string) {
	token = randomHex(32)
	return token, token + "|" + c.hash(token)
}

// FromCookie verifies the cookie value's hash (constant time) and returns its token.
func (c *CSRF) FromCookie(cookieValue string) (token string, ok bool) {
	token, hash, found := strings.Cut(cookieValue, "|")
	if !found || token == "" {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(hash), []byte(c.hash(token))) != 1 {
		return "", false
	}
	return token, true
}

// Verify reports whether submitted equals the token of a valid cookie value, in constant time.
func (c *CSRF) Verify(cookieValue, submitted string) bool {
	token, ok := c.FromCookie(cookieValue)
	return ok && subtle.ConstantTimeCompare([]byte(token), []byte(submitted)) == 1
}

func (c *CSRF) hash(token string) string {
	sum := sha256.Sum256([]byte(token + c.secret))
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
