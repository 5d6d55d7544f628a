package session

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// An assertion verifies with the published key set and with nothing else; keys
// follow the secrets (same secrets, same keys) and rotation keeps old keys published.
func TestAsserter(t *testing.T) {
	a, err := NewAsserter([]string{"new-secret-0123456789-0123456789", "old-secret-0123456789-0123456789"}, "default")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := a.Sign(map[string]any{"sub": "alice", "email": "alice@example.com"}, time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := a.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want 2 (current and old secret)", len(set.Keys))
	}
	keyfunc := func(s jose.JSONWebKeySet) jwt.Keyfunc {
		return func(tk *jwt.Token) (any, error) {
			kid, _ := tk.Header["kid"].(string)
			keys := s.Key(kid)
			if len(keys) == 0 {
				return nil, jwt.ErrTokenUnverifiable
			}
			return keys[0].Key, nil
		}
	}
	parsed, err := jwt.Parse(tok, keyfunc(set), jwt.WithValidMethods([]string{"EdDSA"}))
	if err != nil {
		t.Fatalf("the assertion does not verify with the published keys: %v", err)
	}
	claims := parsed.Claims.(jwt.MapClaims)
	if claims["sub"] != "alice" || claims["email"] != "alice@example.com" {
		t.Errorf("claims = %v", claims)
	}

	// Another realm (or another secret) has other keys: its set does not verify it.
	other, _ := NewAsserter([]string{"new-secret-0123456789-0123456789"}, "other")
	raw, _ = other.JWKS()
	var otherSet jose.JSONWebKeySet
	_ = json.Unmarshal(raw, &otherSet)
	if _, err := jwt.Parse(tok, keyfunc(otherSet), jwt.WithValidMethods([]string{"EdDSA"})); err == nil {
		t.Error("an assertion verified with another realm's keys")
	}
	// Same secrets, same realm: same keys (instances agree).
	again, _ := NewAsserter([]string{"new-secret-0123456789-0123456789", "old-secret-0123456789-0123456789"}, "default")
	raw2, _ := again.JWKS()
	raw1, _ := a.JWKS()
	if string(raw1) != string(raw2) {
		t.Error("the same secrets gave different keys")
	}
	// Expired assertions are refused by a verifier.
	old, _ := a.Sign(map[string]any{"sub": "alice"}, time.Minute, now.Add(-time.Hour))
	if _, err := jwt.Parse(old, keyfunc(set), jwt.WithValidMethods([]string{"EdDSA"})); err == nil {
		t.Error("an expired assertion verified")
	}
}
